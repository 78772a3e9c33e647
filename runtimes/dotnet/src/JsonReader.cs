// Strict RFC 8259 parsing straight from the payload's UTF-8 bytes into plain .NET values:
// object → Dictionary<string, object> (member order kept), array → List<object>, string,
// bool, null, and numbers as long (integers that fit), decimal (larger integers that fit) or double.
// Mono's profile here has no System.Runtime.Serialization or System.Text.Json, hence our own.
using System;
using System.Collections.Generic;
using System.Globalization;
using System.Text;

namespace Fnhost.Runtime
{
    internal sealed class JsonException : Exception
    {
        public JsonException(string message) : base(message) { }
    }

    internal sealed class JsonReader
    {
        private const int MaxDepth = 1000;
        private static readonly UTF8Encoding StrictUtf8 = new UTF8Encoding(false, true);

        private readonly byte[] b;
        private readonly int origin;
        private readonly int end;
        private int pos;
        private int depth;
        private StringBuilder scratch;

        private JsonReader(byte[] data, int offset, int count)
        {
            b = data;
            origin = pos = offset;
            end = offset + count;
        }

        public static object Parse(byte[] data, int offset, int count)
        {
            var r = new JsonReader(data, offset, count);
            // Tolerate a UTF-8 byte-order mark, as System.Text.Json does.
            if (count >= 3 && data[offset] == 0xEF && data[offset + 1] == 0xBB && data[offset + 2] == 0xBF)
                r.pos += 3;
            r.SkipSpace();
            object value = r.ParseValue();
            r.SkipSpace();
            if (r.pos != r.end)
                throw r.Error("unexpected data after the JSON value");
            return value;
        }

        private JsonException Error(string what)
        {
            return new JsonException(what + " at byte " + (pos - origin));
        }

        private void SkipSpace()
        {
            while (pos < end)
            {
                byte c = b[pos];
                if (c != ' ' && c != '\n' && c != '\r' && c != '\t')
                    return;
                pos++;
            }
        }

        private object ParseValue()
        {
            if (pos >= end)
                throw Error("unexpected end of input");
            switch (b[pos])
            {
                case (byte)'{': return ParseObject();
                case (byte)'[': return ParseArray();
                case (byte)'"': return ParseString();
                case (byte)'t': Literal("true"); return true;
                case (byte)'f': Literal("false"); return false;
                case (byte)'n': Literal("null"); return null;
                default:
                    byte c = b[pos];
                    if (c == '-' || (c >= '0' && c <= '9'))
                        return ParseNumber();
                    throw Error("unexpected character '" + (char)c + "'");
            }
        }

        private void Literal(string word)
        {
            if (end - pos < word.Length)
                throw Error("invalid literal");
            for (int i = 0; i < word.Length; i++)
                if (b[pos + i] != word[i])
                    throw Error("invalid literal");
            pos += word.Length;
        }

        private void Enter()
        {
            if (++depth > MaxDepth)
                throw Error("nesting deeper than " + MaxDepth);
            pos++;
            SkipSpace();
        }

        private Dictionary<string, object> ParseObject()
        {
            Enter();
            var obj = new Dictionary<string, object>();
            if (pos < end && b[pos] == '}')
            {
                pos++;
                depth--;
                return obj;
            }
            while (true)
            {
                if (pos >= end || b[pos] != '"')
                    throw Error("expected a member name");
                string key = ParseString();
                SkipSpace();
                if (pos >= end || b[pos] != ':')
                    throw Error("expected ':'");
                pos++;
                SkipSpace();
                obj[key] = ParseValue(); // a repeated name keeps the last value, like most parsers
                SkipSpace();
                if (pos >= end)
                    throw Error("unterminated object");
                byte c = b[pos++];
                if (c == '}')
                    break;
                if (c != ',')
                    throw Error("expected ',' or '}'");
                SkipSpace();
            }
            depth--;
            return obj;
        }

        private List<object> ParseArray()
        {
            Enter();
            var list = new List<object>();
            if (pos < end && b[pos] == ']')
            {
                pos++;
                depth--;
                return list;
            }
            while (true)
            {
                list.Add(ParseValue());
                SkipSpace();
                if (pos >= end)
                    throw Error("unterminated array");
                byte c = b[pos++];
                if (c == ']')
                    break;
                if (c != ',')
                    throw Error("expected ',' or ']'");
                SkipSpace();
            }
            depth--;
            return list;
        }

        private string ParseString()
        {
            int start = ++pos;
            while (pos < end)
            {
                byte c = b[pos];
                if (c == '"')
                {
                    string s = Decode(start, pos - start);
                    pos++;
                    return s;
                }
                if (c == '\\' || c < 0x20)
                    break;
                pos++;
            }
            return ParseEscapedString(start);
        }

        private string Decode(int start, int count)
        {
            try
            {
                return StrictUtf8.GetString(b, start, count);
            }
            catch (ArgumentException)
            {
                throw Error("invalid UTF-8 in string");
            }
        }

        private string ParseEscapedString(int start)
        {
            var sb = scratch ?? (scratch = new StringBuilder());
            sb.Length = 0;
            int run = start;
            while (true)
            {
                if (pos >= end)
                    throw Error("unterminated string");
                byte c = b[pos];
                if (c == '"')
                {
                    sb.Append(Decode(run, pos - run));
                    pos++;
                    return sb.ToString();
                }
                if (c < 0x20)
                    throw Error("control character in string");
                if (c != '\\')
                {
                    pos++;
                    continue;
                }
                sb.Append(Decode(run, pos - run));
                if (++pos >= end)
                    throw Error("unterminated escape");
                switch (b[pos++])
                {
                    case (byte)'"': sb.Append('"'); break;
                    case (byte)'\\': sb.Append('\\'); break;
                    case (byte)'/': sb.Append('/'); break;
                    case (byte)'b': sb.Append('\b'); break;
                    case (byte)'f': sb.Append('\f'); break;
                    case (byte)'n': sb.Append('\n'); break;
                    case (byte)'r': sb.Append('\r'); break;
                    case (byte)'t': sb.Append('\t'); break;
                    case (byte)'u': sb.Append(Hex4()); break;
                    default: throw Error("invalid escape");
                }
                run = pos;
            }
        }

        private char Hex4()
        {
            if (end - pos < 4)
                throw Error("truncated \\u escape");
            int v = 0;
            for (int i = 0; i < 4; i++)
            {
                int c = b[pos++], d;
                if (c >= '0' && c <= '9') d = c - '0';
                else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
                else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
                else throw Error("invalid \\u escape");
                v = v * 16 + d;
            }
            return (char)v;
        }

        private object ParseNumber()
        {
            int first = pos;
            if (b[pos] == '-')
                pos++;
            if (pos >= end)
                throw Error("invalid number");
            if (b[pos] == '0')
                pos++;
            else if (!Digits())
                throw Error("invalid number");
            bool integral = true;
            if (pos < end && b[pos] == '.')
            {
                integral = false;
                pos++;
                if (!Digits())
                    throw Error("invalid number");
            }
            if (pos < end && (b[pos] == 'e' || b[pos] == 'E'))
            {
                integral = false;
                pos++;
                if (pos < end && (b[pos] == '+' || b[pos] == '-'))
                    pos++;
                if (!Digits())
                    throw Error("invalid number");
            }
            int len = pos - first;
            if (integral && len <= 18)
            {
                long v = 0;
                int i = first;
                bool neg = b[i] == '-';
                if (neg)
                    i++;
                for (; i < pos; i++)
                    v = v * 10 + (b[i] - '0');
                return neg ? -v : v;
            }
            string text = Encoding.ASCII.GetString(b, first, len);
            if (integral)
            {
                long l;
                if (long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out l))
                    return l;
                decimal m;
                if (decimal.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out m))
                    return m;
            }
            double d;
            // .NET Framework and Mono report overflow by failing, .NET Core by returning infinity.
            if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out d) || double.IsInfinity(d))
                throw Error("number out of range");
            return d;
        }

        private bool Digits()
        {
            int start = pos;
            while (pos < end && b[pos] >= '0' && b[pos] <= '9')
                pos++;
            return pos > start;
        }
    }
}
