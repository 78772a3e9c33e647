// Adapters that let a handler declare a context interface this shim was not compiled against —
// typically Amazon.Lambda.Core.ILambdaContext, shipped in the function's own folder, or a copy of
// it declared in the user's code. The adapter is generated once per interface at init: each
// abstract member forwards to the LambdaContext member of the same name and signature; members
// with no counterpart return null/default (properties such as Identity, ClientContext) or throw
// NotSupportedException (methods). Interface results the shim spells differently (Logger) get
// an adapter of their own.
using System;
using System.Collections.Generic;
using System.Reflection;
using System.Reflection.Emit;

namespace Fnhost.Runtime
{
    internal static class ContextProxy
    {
        private const int MaxNesting = 4;
        private static readonly Dictionary<string, ConstructorInfo> Built = new Dictionary<string, ConstructorInfo>();
        private static ModuleBuilder module;

        /// <summary>True when <paramref name="t"/> looks like a Lambda context type we should adapt to.</summary>
        public static bool IsForeignContext(Type t)
        {
            return t.IsInterface && t.Name == "ILambdaContext" && !t.IsAssignableFrom(typeof(Fnhost.LambdaContext));
        }

        /// <summary>A constructor taking a LambdaContext and giving an object that implements <paramref name="iface"/>.</summary>
        public static ConstructorInfo For(Type iface)
        {
            return Adapter(iface, typeof(Fnhost.LambdaContext), 0);
        }

        private static ConstructorInfo Adapter(Type iface, Type targetType, int nesting)
        {
            string key = iface.AssemblyQualifiedName + "|" + targetType.FullName;
            ConstructorInfo ctor;
            if (Built.TryGetValue(key, out ctor))
                return ctor;
            if (!(iface.IsPublic || iface.IsNestedPublic) || iface.ContainsGenericParameters)
                throw new NotSupportedException(iface.FullName + " must be a public, non-generic interface for fnhost to implement it");
            if (module == null)
            {
                AssemblyBuilder assembly = AssemblyBuilder.DefineDynamicAssembly(
                    new AssemblyName("Fnhost.Generated"), AssemblyBuilderAccess.Run);
                module = assembly.DefineDynamicModule("Fnhost.Generated");
            }
            TypeBuilder tb = module.DefineType(
                "Fnhost.Generated." + iface.Name + "Adapter" + Built.Count,
                TypeAttributes.Public | TypeAttributes.Sealed | TypeAttributes.Class,
                typeof(object), new[] { iface });
            FieldBuilder target = tb.DefineField("target", targetType, FieldAttributes.Private | FieldAttributes.InitOnly);

            ConstructorBuilder cb = tb.DefineConstructor(MethodAttributes.Public, CallingConventions.Standard, new[] { targetType });
            ILGenerator il = cb.GetILGenerator();
            il.Emit(OpCodes.Ldarg_0);
            il.Emit(OpCodes.Call, typeof(object).GetConstructor(Type.EmptyTypes));
            il.Emit(OpCodes.Ldarg_0);
            il.Emit(OpCodes.Ldarg_1);
            il.Emit(OpCodes.Stfld, target);
            il.Emit(OpCodes.Ret);

            foreach (MethodInfo m in AbstractMethods(iface))
                Implement(tb, target, targetType, m, nesting);

            ctor = tb.CreateType().GetConstructor(new[] { targetType });
            Built[key] = ctor;
            return ctor;
        }

        private static IEnumerable<MethodInfo> AbstractMethods(Type iface)
        {
            var all = new List<Type> { iface };
            all.AddRange(iface.GetInterfaces());
            foreach (Type t in all)
                foreach (MethodInfo m in t.GetMethods())
                    if (m.IsAbstract && !m.IsStatic) // default interface methods keep their bodies
                        yield return m;
        }

        private static void Implement(TypeBuilder tb, FieldInfo target, Type targetType, MethodInfo m, int nesting)
        {
            if (m.IsGenericMethodDefinition)
                throw new NotSupportedException(m.DeclaringType.FullName + "." + m.Name + " is generic; fnhost cannot implement it");
            ParameterInfo[] ps = m.GetParameters();
            var types = new Type[ps.Length];
            for (int i = 0; i < ps.Length; i++)
                types[i] = ps[i].ParameterType;
            MethodBuilder mb = tb.DefineMethod(
                m.DeclaringType.FullName + "." + m.Name,
                MethodAttributes.Private | MethodAttributes.HideBySig | MethodAttributes.NewSlot
                    | MethodAttributes.Virtual | MethodAttributes.Final,
                m.ReturnType, types);
            ILGenerator il = mb.GetILGenerator();
            MethodInfo forward = FindForward(targetType, m.Name, types);
            Type ret = m.ReturnType;

            if (forward != null && (ret == forward.ReturnType || !ret.IsValueType && !forward.ReturnType.IsValueType && ret.IsAssignableFrom(forward.ReturnType)))
            {
                EmitForwardCall(il, target, forward, ps.Length);
                il.Emit(OpCodes.Ret);
            }
            else if (forward != null && ret.IsInterface && !forward.ReturnType.IsValueType && nesting < MaxNesting)
            {
                ConstructorInfo wrap = Adapter(ret, forward.ReturnType, nesting + 1);
                LocalBuilder result = il.DeclareLocal(forward.ReturnType);
                Label notNull = il.DefineLabel();
                EmitForwardCall(il, target, forward, ps.Length);
                il.Emit(OpCodes.Stloc, result);
                il.Emit(OpCodes.Ldloc, result);
                il.Emit(OpCodes.Brtrue_S, notNull);
                il.Emit(OpCodes.Ldnull);
                il.Emit(OpCodes.Ret);
                il.MarkLabel(notNull);
                il.Emit(OpCodes.Ldloc, result);
                il.Emit(OpCodes.Newobj, wrap);
                il.Emit(OpCodes.Ret);
            }
            else if (m.IsSpecialName && m.Name.StartsWith("get_", StringComparison.Ordinal) && ps.Length == 0)
            {
                // A property fnhost has no value for (Identity, ClientContext, …): its default.
                if (ret.IsValueType)
                {
                    LocalBuilder value = il.DeclareLocal(ret);
                    il.Emit(OpCodes.Ldloca, value);
                    il.Emit(OpCodes.Initobj, ret);
                    il.Emit(OpCodes.Ldloc, value);
                }
                else
                {
                    il.Emit(OpCodes.Ldnull);
                }
                il.Emit(OpCodes.Ret);
            }
            else
            {
                il.Emit(OpCodes.Ldstr, "fnhost does not implement " + m.DeclaringType.FullName + "." + m.Name);
                il.Emit(OpCodes.Newobj, typeof(NotSupportedException).GetConstructor(new[] { typeof(string) }));
                il.Emit(OpCodes.Throw);
            }
            tb.DefineMethodOverride(mb, m);
        }

        private static MethodInfo FindForward(Type targetType, string name, Type[] types)
        {
            MethodInfo found = targetType.GetMethod(name, BindingFlags.Public | BindingFlags.Instance, null, types, null);
            if (found == null && targetType.IsInterface)
                foreach (Type i in targetType.GetInterfaces())
                    if ((found = i.GetMethod(name, types)) != null)
                        break;
            return found;
        }

        private static void EmitForwardCall(ILGenerator il, FieldInfo target, MethodInfo forward, int argCount)
        {
            il.Emit(OpCodes.Ldarg_0);
            il.Emit(OpCodes.Ldfld, target);
            for (int i = 1; i <= argCount; i++)
                il.Emit(OpCodes.Ldarg, (short)i);
            il.Emit(OpCodes.Callvirt, forward);
        }
    }
}
