// A handler's result (any .NET value) written as UTF-8 JSON straight into the reply frame.
// Choices follow System.Text.Json, which Lambda's .NET serializer uses: members as declared,
// enums as numbers, byte[] as base64, dates in ISO 8601.
using System;
using System.Collections;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Reflection;

namespace Fnhost.Runtime
{
    /// <summary>The value cannot be represented in JSON; reported as Runtime.MarshalError.</summary>
    internal sealed class MarshalException : Exception
    {
        private const int MaxSegments = 32;
        private readonly string reason;
        private string path = "";
        private int segments;

        public MarshalException(string reason) : base(reason)
        {
            this.reason = reason;
        }

        public override string Message
        {
            get { return path.Length == 0 ? reason : "at $" + path + ": " + reason; }
        }

        /// <summary>Adds the member or index the failure sits under, as the exception unwinds.</summary>
        public MarshalException Under(string segment)
        {
            if (++segments <= MaxSegments)
                path = segment + path;
            else if (segments == MaxSegments + 1)
                path = "…" + path; // a cycle's path says nothing more after a few turns
            return this;
        }
    }

    internal sealed class JsonWriter
    {
        private const int MaxDepth = 1000;
        private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;
        private static readonly byte[] Hex = { (byte)'0', (byte)'1', (byte)'2', (byte)'3', (byte)'4', (byte)'5', (byte)'6', (byte)'7', (byte)'8', (byte)'9', (byte)'a', (byte)'b', (byte)'c', (byte)'d', (byte)'e', (byte)'f' };

        private readonly FrameBuffer o;

        private JsonWriter(FrameBuffer output)
        {
            o = output;
        }

        public static void Write(object value, FrameBuffer output)
        {
            new JsonWriter(output).Value(value, 0);
        }

        /// <summary>Appends <paramref name="s"/> as a quoted JSON string.</summary>
        public static void WriteString(string s, FrameBuffer output)
        {
            new JsonWriter(output).String(s);
        }

        private void Value(object v, int depth)
        {
            if (v == null)
            {
                o.AppendAscii("null");
                return;
            }
            if (depth > MaxDepth)
                throw new MarshalException("nested deeper than " + MaxDepth + " levels (a reference cycle?)");
            Type t = v.GetType();
            switch (Type.GetTypeCode(t))
            {
                case TypeCode.String: String((string)v); return;
                case TypeCode.Boolean: o.AppendAscii((bool)v ? "true" : "false"); return;
                case TypeCode.Char: String(v.ToString()); return;
                case TypeCode.SByte:
                case TypeCode.Int16:
                case TypeCode.Int32:
                case TypeCode.Int64:
                    o.AppendAscii(Convert.ToInt64(v, Inv).ToString(Inv)); return; // enums too
                case TypeCode.Byte:
                case TypeCode.UInt16:
                case TypeCode.UInt32:
                case TypeCode.UInt64:
                    o.AppendAscii(Convert.ToUInt64(v, Inv).ToString(Inv)); return;
                case TypeCode.Single: Float((float)v, ((float)v).ToString("R", Inv)); return;
                case TypeCode.Double: Float((double)v, ((double)v).ToString("R", Inv)); return;
                case TypeCode.Decimal: o.AppendAscii(((decimal)v).ToString(Inv)); return;
                case TypeCode.DateTime: String(((DateTime)v).ToString("yyyy-MM-dd'T'HH:mm:ss.FFFFFFFK", Inv)); return;
                case TypeCode.DBNull: o.AppendAscii("null"); return;
            }
            if (t.FullName == "System.Numerics.BigInteger")
            {
                o.AppendAscii(v.ToString());
                return;
            }
            if (v is Guid || v is Uri || v is Version)
            {
                String(v.ToString());
                return;
            }
            if (v is DateTimeOffset)
            {
                String(((DateTimeOffset)v).ToString("yyyy-MM-dd'T'HH:mm:ss.FFFFFFFzzz", Inv));
                return;
            }
            if (v is TimeSpan)
            {
                String(((TimeSpan)v).ToString("c", Inv));
                return;
            }
            var bytes = v as byte[];
            if (bytes != null)
            {
                String(Convert.ToBase64String(bytes));
                return;
            }
            var stream = v as MemoryStream;
            if (stream != null)
            {
                String(Convert.ToBase64String(stream.ToArray()));
                return;
            }
            var generic = v as IDictionary<string, object>;
            if (generic != null)
            {
                Object(generic, depth);
                return;
            }
            var dict = v as IDictionary;
            if (dict != null)
            {
                Object(dict, depth);
                return;
            }
            var seq = v as IEnumerable;
            if (seq != null)
            {
                PropertyInfo key, value;
                if (KeyValueShape(t, out key, out value))
                    Object(seq, key, value, depth);
                else
                    Array(seq, depth);
                return;
            }
            if (v is Delegate || v is MemberInfo || v is Assembly || v is IntPtr || v is UIntPtr
                || v is System.Threading.Tasks.Task || v is Stream)
                throw new MarshalException("a " + t.FullName + " cannot be written as JSON");
            Poco(v, t, depth);
        }

        private void Float(double d, string text)
        {
            if (double.IsNaN(d) || double.IsInfinity(d))
                throw new MarshalException(text + " is not a JSON number");
            o.AppendAscii(text);
        }

        private void Object(IDictionary<string, object> d, int depth)
        {
            o.Append((byte)'{');
            bool first = true;
            foreach (KeyValuePair<string, object> kv in d)
                Member(kv.Key, kv.Value, ref first, depth);
            o.Append((byte)'}');
        }

        private void Object(IDictionary d, int depth)
        {
            o.Append((byte)'{');
            bool first = true;
            foreach (DictionaryEntry kv in d)
                Member(Convert.ToString(kv.Key, Inv), kv.Value, ref first, depth);
            o.Append((byte)'}');
        }

        private void Object(IEnumerable pairs, PropertyInfo key, PropertyInfo value, int depth)
        {
            o.Append((byte)'{');
            bool first = true;
            foreach (object kv in pairs)
                Member(Convert.ToString(key.GetValue(kv, null), Inv), value.GetValue(kv, null), ref first, depth);
            o.Append((byte)'}');
        }

        // Dictionaries that implement only the generic read-only interface (ReadOnlyDictionary
        // views, immutable maps) enumerate KeyValuePair<K, V>.
        private static bool KeyValueShape(Type t, out PropertyInfo key, out PropertyInfo value)
        {
            key = value = null;
            foreach (Type i in t.GetInterfaces())
            {
                if (!i.IsGenericType || i.GetGenericTypeDefinition() != typeof(IReadOnlyDictionary<,>))
                    continue;
                Type pair = typeof(KeyValuePair<,>).MakeGenericType(i.GetGenericArguments());
                key = pair.GetProperty("Key");
                value = pair.GetProperty("Value");
                return true;
            }
            return false;
        }

        private void Array(IEnumerable seq, int depth)
        {
            o.Append((byte)'[');
            int index = 0;
            foreach (object item in seq)
            {
                if (index != 0)
                    o.Append((byte)',');
                try
                {
                    Value(item, depth + 1);
                }
                catch (MarshalException e)
                {
                    throw e.Under("[" + index + "]");
                }
                index++;
            }
            o.Append((byte)']');
        }

        private void Poco(object v, Type t, int depth)
        {
            o.Append((byte)'{');
            bool first = true;
            foreach (JsonMember m in TypeMembers.Of(t).Members)
            {
                if (!m.CanRead)
                    continue;
                object value;
                try
                {
                    value = m.Get(v);
                }
                catch (TargetInvocationException e)
                {
                    Exception inner = e.InnerException ?? e;
                    throw new MarshalException("the getter threw " + inner.GetType().FullName + ": " + inner.Message).Under("." + m.Name);
                }
                Member(m.Name, value, ref first, depth);
            }
            o.Append((byte)'}');
        }

        private void Member(string name, object value, ref bool first, int depth)
        {
            if (!first)
                o.Append((byte)',');
            first = false;
            String(name);
            o.Append((byte)':');
            try
            {
                Value(value, depth + 1);
            }
            catch (MarshalException e)
            {
                throw e.Under("." + name);
            }
        }

        private void String(string s)
        {
            o.Reserve(2);
            o.Data[o.Length++] = (byte)'"';
            int i = 0;
            while (i < s.Length)
            {
                // Reserve a chunk at a time for the worst case (6-byte escapes), plus room for a
                // surrogate pair straddling the chunk's end, so a large string never reserves
                // six times its size at once.
                int limit = Math.Min(s.Length, i + 4096);
                o.Reserve((limit - i) * 6 + 8);
                byte[] d = o.Data;
                int n = o.Length;
                for (; i < limit; i++)
                {
                    char c = s[i];
                    if (c >= 0x20 && c < 0x80)
                    {
                        if (c == '"' || c == '\\')
                            d[n++] = (byte)'\\';
                        d[n++] = (byte)c;
                    }
                    else if (c < 0x20)
                    {
                        n = Escape(d, n, c);
                    }
                    else if (c < 0x800)
                    {
                        d[n++] = (byte)(0xC0 | c >> 6);
                        d[n++] = (byte)(0x80 | c & 0x3F);
                    }
                    else if (char.IsHighSurrogate(c) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]))
                    {
                        int cp = char.ConvertToUtf32(c, s[++i]);
                        d[n++] = (byte)(0xF0 | cp >> 18);
                        d[n++] = (byte)(0x80 | (cp >> 12) & 0x3F);
                        d[n++] = (byte)(0x80 | (cp >> 6) & 0x3F);
                        d[n++] = (byte)(0x80 | cp & 0x3F);
                    }
                    else if (char.IsSurrogate(c))
                    {
                        // A lone surrogate has no UTF-8 form; JSON can still carry it escaped.
                        n = Escape(d, n, c);
                    }
                    else
                    {
                        d[n++] = (byte)(0xE0 | c >> 12);
                        d[n++] = (byte)(0x80 | (c >> 6) & 0x3F);
                        d[n++] = (byte)(0x80 | c & 0x3F);
                    }
                }
                o.Length = n;
            }
            o.Reserve(1);
            o.Data[o.Length++] = (byte)'"';
        }

        private static int Escape(byte[] d, int n, char c)
        {
            d[n++] = (byte)'\\';
            switch (c)
            {
                case '\n': d[n++] = (byte)'n'; return n;
                case '\r': d[n++] = (byte)'r'; return n;
                case '\t': d[n++] = (byte)'t'; return n;
                case '\b': d[n++] = (byte)'b'; return n;
                case '\f': d[n++] = (byte)'f'; return n;
            }
            d[n++] = (byte)'u';
            d[n++] = Hex[c >> 12];
            d[n++] = Hex[(c >> 8) & 0xF];
            d[n++] = Hex[(c >> 4) & 0xF];
            d[n++] = Hex[c & 0xF];
            return n;
        }
    }
}
