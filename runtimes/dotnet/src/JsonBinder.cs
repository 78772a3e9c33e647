// Parsed JSON (JsonReader's plain values) turned into the type a handler's parameter declares:
// POCOs, records, collections, dictionaries, primitives, enums, dates. Member names match
// ignoring case and unknown members are skipped, as Lambda's default serializer does.
using System;
using System.Collections;
using System.Collections.Generic;
using System.Globalization;
using System.Reflection;

namespace Fnhost.Runtime
{
    internal static class JsonBinder
    {
        private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

        /// <summary>Converts <paramref name="value"/> to <paramref name="target"/>; throws JsonException naming the path.</summary>
        public static object Bind(object value, Type target)
        {
            return Convert(value, target, "$");
        }

        private static object Convert(object value, Type target, string path)
        {
            if (value == null)
            {
                if (target.IsValueType && Nullable.GetUnderlyingType(target) == null)
                    throw Mismatch(path, target, value);
                return null;
            }
            if (target == typeof(object) || target.IsInstanceOfType(value))
                return value;
            Type underlying = Nullable.GetUnderlyingType(target);
            if (underlying != null)
                target = underlying;
            try
            {
                if (target.IsEnum)
                    return Enum(value, target, path);
                switch (Type.GetTypeCode(target))
                {
                    case TypeCode.String:
                        if (value is string) return value;
                        throw Mismatch(path, target, value);
                    case TypeCode.Boolean:
                        if (value is bool) return value;
                        throw Mismatch(path, target, value);
                    case TypeCode.Char:
                        var cs = value as string;
                        if (cs != null && cs.Length == 1) return cs[0];
                        throw Mismatch(path, target, value);
                    case TypeCode.SByte: case TypeCode.Byte: case TypeCode.Int16: case TypeCode.UInt16:
                    case TypeCode.Int32: case TypeCode.UInt32: case TypeCode.Int64: case TypeCode.UInt64:
                        if (value is long || value is decimal)
                            return System.Convert.ChangeType(value, target, Inv);
                        throw Mismatch(path, target, value);
                    case TypeCode.Single: case TypeCode.Double: case TypeCode.Decimal:
                        if (value is long || value is decimal || value is double)
                            return System.Convert.ChangeType(value, target, Inv);
                        throw Mismatch(path, target, value);
                    case TypeCode.DateTime:
                        return DateTime.Parse(Text(value, target, path), Inv, DateTimeStyles.RoundtripKind);
                }
                if (target == typeof(DateTimeOffset))
                    return DateTimeOffset.Parse(Text(value, target, path), Inv, DateTimeStyles.RoundtripKind);
                if (target == typeof(Guid))
                    return Guid.Parse(Text(value, target, path));
                if (target == typeof(TimeSpan))
                    return TimeSpan.Parse(Text(value, target, path), Inv);
                if (target == typeof(Uri))
                    return new Uri(Text(value, target, path), UriKind.RelativeOrAbsolute);
                if (target == typeof(byte[]))
                    return System.Convert.FromBase64String(Text(value, target, path));
            }
            catch (FormatException e)
            {
                throw new JsonException(path + ": " + e.Message);
            }
            catch (OverflowException)
            {
                throw new JsonException(path + ": " + value + " does not fit in " + target.Name);
            }

            var list = value as List<object>;
            if (list != null)
                return Sequence(list, target, path);
            var obj = value as Dictionary<string, object>;
            if (obj != null)
                return Object(obj, target, path);
            throw Mismatch(path, target, value);
        }

        private static JsonException Mismatch(string path, Type target, object value)
        {
            string got = value == null ? "null" : value is string ? "a string" : value is bool ? "a boolean"
                : value is List<object> ? "an array" : value is Dictionary<string, object> ? "an object" : "a number";
            return new JsonException(path + ": cannot convert " + got + " to " + Name(target));
        }

        /// <summary>A type as C# spells it (List&lt;Fixtures.Line&gt;), for messages.</summary>
        public static string Name(Type t)
        {
            Type underlying = Nullable.GetUnderlyingType(t);
            if (underlying != null)
                return Name(underlying) + "?";
            if (t.IsArray)
                return Name(t.GetElementType()) + "[]";
            if (!t.IsGenericType)
                return t.FullName ?? t.Name;
            string name = t.GetGenericTypeDefinition().FullName;
            int tick = name.IndexOf('`');
            if (tick > 0)
                name = name.Substring(0, tick);
            var args = new System.Text.StringBuilder();
            foreach (Type a in t.GetGenericArguments())
                args.Append(args.Length == 0 ? "" : ", ").Append(Name(a));
            return (name.StartsWith("System.Collections.Generic.", StringComparison.Ordinal) ? name.Substring(27) : name) + "<" + args + ">";
        }

        private static string Text(object value, Type target, string path)
        {
            var s = value as string;
            if (s == null)
                throw Mismatch(path, target, value);
            return s;
        }

        private static object Enum(object value, Type target, string path)
        {
            var s = value as string;
            if (s != null)
            {
                try
                {
                    return System.Enum.Parse(target, s, true);
                }
                catch (ArgumentException)
                {
                    throw new JsonException(path + ": '" + s + "' is not a value of " + Name(target));
                }
            }
            if (value is long)
                return System.Enum.ToObject(target, (long)value);
            throw Mismatch(path, target, value);
        }

        private static object Sequence(List<object> list, Type target, string path)
        {
            if (target.IsArray)
            {
                Type element = target.GetElementType();
                Array array = Array.CreateInstance(element, list.Count);
                for (int i = 0; i < list.Count; i++)
                    array.SetValue(Convert(list[i], element, path + "[" + i + "]"), i);
                return array;
            }
            Type item = ElementType(target);
            if (item == null)
                throw Mismatch(path, target, list);
            if (item == typeof(object) && target.IsAssignableFrom(typeof(List<object>)))
                return list;
            object collection;
            if (target.IsInterface || target.IsAbstract)
            {
                Type concrete = typeof(List<>).MakeGenericType(item);
                if (!target.IsAssignableFrom(concrete))
                    throw Mismatch(path, target, list);
                collection = Activator.CreateInstance(concrete);
            }
            else
            {
                collection = Activator.CreateInstance(target);
            }
            MethodInfo add = typeof(ICollection<>).MakeGenericType(item).GetMethod("Add");
            var args = new object[1];
            for (int i = 0; i < list.Count; i++)
            {
                args[0] = Convert(list[i], item, path + "[" + i + "]");
                add.Invoke(collection, args);
            }
            return collection;
        }

        private static Type ElementType(Type target)
        {
            if (target.IsGenericType && target.GetGenericTypeDefinition() == typeof(IEnumerable<>))
                return target.GetGenericArguments()[0];
            foreach (Type i in target.GetInterfaces())
                if (i.IsGenericType && i.GetGenericTypeDefinition() == typeof(ICollection<>))
                    return i.GetGenericArguments()[0];
            if (target.IsInterface && target.IsGenericType)
            {
                Type def = target.GetGenericTypeDefinition();
                if (def == typeof(IReadOnlyList<>) || def == typeof(IReadOnlyCollection<>) || def == typeof(ICollection<>) || def == typeof(IList<>))
                    return target.GetGenericArguments()[0];
            }
            if (target == typeof(IEnumerable) || target == typeof(IList) || target == typeof(ICollection) || target == typeof(ArrayList))
                return typeof(object);
            return null;
        }

        private static object Object(Dictionary<string, object> obj, Type target, string path)
        {
            Type[] kv = DictionaryTypes(target);
            if (kv != null)
                return Dictionary(obj, target, kv[0], kv[1], path);
            if (target.IsInterface || target.IsAbstract || target.IsPrimitive || target == typeof(string))
                throw Mismatch(path, target, obj);
            return Poco(obj, target, path);
        }

        private static Type[] DictionaryTypes(Type target)
        {
            if (target == typeof(IDictionary) || target == typeof(Hashtable))
                return new[] { typeof(string), typeof(object) };
            if (target.IsInterface && target.IsGenericType)
            {
                Type def = target.GetGenericTypeDefinition();
                if (def == typeof(IDictionary<,>) || def == typeof(IReadOnlyDictionary<,>))
                    return target.GetGenericArguments();
            }
            foreach (Type i in target.GetInterfaces())
                if (i.IsGenericType && i.GetGenericTypeDefinition() == typeof(IDictionary<,>))
                    return i.GetGenericArguments();
            return null;
        }

        private static object Dictionary(Dictionary<string, object> obj, Type target, Type key, Type value, string path)
        {
            if (key == typeof(string) && value == typeof(object) && target.IsInstanceOfType(obj))
                return obj;
            Type concrete = target.IsInterface || target.IsAbstract
                ? typeof(Dictionary<,>).MakeGenericType(key, value) : target;
            var result = (IDictionary)Activator.CreateInstance(concrete);
            foreach (KeyValuePair<string, object> member in obj)
            {
                string at = path + "." + member.Key;
                object k = key == typeof(string) ? member.Key
                    : key.IsEnum ? Enum(member.Key, key, at)
                    : System.Convert.ChangeType(member.Key, key, Inv);
                result[k] = Convert(member.Value, value, at);
            }
            return result;
        }

        private static object Poco(Dictionary<string, object> obj, Type target, string path)
        {
            TypeMembers members = TypeMembers.Of(target);
            object instance;
            if (members.Constructor != null)
            {
                ParameterInfo[] ps = members.ConstructorParameters;
                var args = new object[ps.Length];
                var byName = new Dictionary<string, object>(obj, StringComparer.OrdinalIgnoreCase);
                for (int i = 0; i < ps.Length; i++)
                {
                    object raw;
                    if (byName.TryGetValue(ps[i].Name, out raw))
                        args[i] = Convert(raw, ps[i].ParameterType, path + "." + ps[i].Name);
                    else
                        args[i] = ps[i].HasDefaultValue ? ps[i].DefaultValue
                            : ps[i].ParameterType.IsValueType ? Activator.CreateInstance(ps[i].ParameterType) : null;
                }
                instance = members.Constructor.Invoke(args);
            }
            else
            {
                try
                {
                    instance = Activator.CreateInstance(target);
                }
                catch (MissingMethodException)
                {
                    throw new JsonException(path + ": " + Name(target) + " has no public parameterless constructor");
                }
            }
            foreach (KeyValuePair<string, object> member in obj)
            {
                JsonMember m;
                if (members.Writable.TryGetValue(member.Key, out m))
                    m.Set(instance, Convert(member.Value, m.Type, path + "." + member.Key));
            }
            return instance;
        }
    }
}
