// How a plain class maps to a JSON object, worked out once per type: public properties and
// fields, named as declared unless an attribute renames them. Attributes are matched by type
// name (System.Text.Json's JsonPropertyName/JsonIgnore, Newtonsoft's JsonProperty/JsonIgnore,
// DataContract's DataMember/IgnoreDataMember) so user code can keep them without this shim, or
// Mono, shipping those libraries.
using System;
using System.Collections.Generic;
using System.Reflection;

namespace Fnhost.Runtime
{
    internal sealed class JsonMember
    {
        public string Name;
        public Type Type;
        public PropertyInfo Property;
        public FieldInfo Field;
        public bool CanRead;
        public bool CanWrite;

        public object Get(object target)
        {
            return Property != null ? Property.GetValue(target, null) : Field.GetValue(target);
        }

        public void Set(object target, object value)
        {
            if (Property != null)
                Property.SetValue(target, value, null);
            else
                Field.SetValue(target, value);
        }
    }

    internal sealed class TypeMembers
    {
        private static readonly Dictionary<Type, TypeMembers> Cache = new Dictionary<Type, TypeMembers>();

        public readonly JsonMember[] Members;
        /// <summary>Settable members by name, ignoring case, as Lambda's serializer reads them.</summary>
        public readonly Dictionary<string, JsonMember> Writable;
        /// <summary>Set when the type has no parameterless constructor but one whose parameters name members.</summary>
        public readonly ConstructorInfo Constructor;
        public readonly ParameterInfo[] ConstructorParameters;

        public static TypeMembers Of(Type type)
        {
            lock (Cache)
            {
                TypeMembers members;
                if (!Cache.TryGetValue(type, out members))
                {
                    members = new TypeMembers(type);
                    Cache[type] = members;
                }
                return members;
            }
        }

        private TypeMembers(Type type)
        {
            var list = new List<JsonMember>();
            Writable = new Dictionary<string, JsonMember>(StringComparer.OrdinalIgnoreCase);
            foreach (PropertyInfo p in type.GetProperties(BindingFlags.Public | BindingFlags.Instance))
            {
                if (p.GetIndexParameters().Length != 0)
                    continue;
                string name;
                if (!JsonName(p, out name))
                    continue;
                MethodInfo getter = p.GetGetMethod(), setter = p.GetSetMethod();
                Add(list, new JsonMember
                {
                    Name = name, Type = p.PropertyType, Property = p,
                    CanRead = getter != null, CanWrite = setter != null,
                });
            }
            foreach (FieldInfo f in type.GetFields(BindingFlags.Public | BindingFlags.Instance))
            {
                string name;
                if (!JsonName(f, out name))
                    continue;
                Add(list, new JsonMember
                {
                    Name = name, Type = f.FieldType, Field = f,
                    CanRead = true, CanWrite = !f.IsInitOnly,
                });
            }
            Members = list.ToArray();

            if (!type.IsValueType && !type.IsAbstract && type.GetConstructor(Type.EmptyTypes) == null)
            {
                // Immutable types (records, get-only properties): bind JSON members to the
                // parameters of the single public constructor, matching names ignoring case.
                ConstructorInfo[] ctors = type.GetConstructors();
                if (ctors.Length == 1)
                {
                    Constructor = ctors[0];
                    ConstructorParameters = Constructor.GetParameters();
                }
            }
        }

        private void Add(List<JsonMember> list, JsonMember m)
        {
            list.Add(m);
            if (m.CanWrite && !Writable.ContainsKey(m.Name))
                Writable[m.Name] = m;
        }

        /// <summary>False when the member is marked to be left out of JSON.</summary>
        private static bool JsonName(MemberInfo member, out string name)
        {
            name = member.Name;
            IList<CustomAttributeData> attributes;
            try
            {
                attributes = member.GetCustomAttributesData();
            }
            catch (Exception)
            {
                return true; // an attribute's assembly is missing: fall back to the plain name
            }
            foreach (CustomAttributeData a in attributes)
            {
                string attr;
                try
                {
                    attr = a.Constructor.DeclaringType.Name;
                }
                catch (Exception)
                {
                    continue;
                }
                switch (attr)
                {
                    case "JsonIgnoreAttribute":
                    case "IgnoreDataMemberAttribute":
                        if (!IgnoresOnlyConditionally(a))
                            return false;
                        break;
                    case "JsonPropertyNameAttribute":
                    case "JsonPropertyAttribute":
                    case "DataMemberAttribute":
                        string given = NameArgument(a);
                        if (!string.IsNullOrEmpty(given))
                            name = given;
                        break;
                }
            }
            return true;
        }

        // System.Text.Json's [JsonIgnore(Condition = WhenWritingNull)] and friends keep the member.
        private static bool IgnoresOnlyConditionally(CustomAttributeData a)
        {
            foreach (CustomAttributeNamedArgument arg in a.NamedArguments)
                if (arg.MemberName == "Condition" && Convert.ToInt32(arg.TypedValue.Value) != 1)
                    return true;
            return false;
        }

        private static string NameArgument(CustomAttributeData a)
        {
            foreach (CustomAttributeTypedArgument arg in a.ConstructorArguments)
                if (arg.Value is string)
                    return (string)arg.Value;
            foreach (CustomAttributeNamedArgument arg in a.NamedArguments)
                if ((arg.MemberName == "Name" || arg.MemberName == "PropertyName") && arg.TypedValue.Value is string)
                    return (string)arg.TypedValue.Value;
            return null;
        }
    }
}
