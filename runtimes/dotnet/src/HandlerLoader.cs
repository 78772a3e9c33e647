// From the handler string `Assembly::Namespace.Class::Method` to a ready Invoker, classifying
// every failure under the Runtime.* name the worker protocol gives it.
using System;
using System.Collections.Generic;
using System.IO;
using System.Reflection;
using System.Runtime.CompilerServices;

namespace Fnhost.Runtime
{
    internal static class HandlerLoader
    {
        private static string[] probeDirs = new string[0];

        public static Invoker Load(string handler, string buildDir, string codeDir)
        {
            string[] parts = handler.Split(new[] { "::" }, StringSplitOptions.None);
            if (parts.Length != 3 || parts[0].Length == 0 || parts[1].Length == 0 || parts[2].Length == 0
                || parts[0].IndexOfAny(new[] { '/', '\\' }) >= 0)
                throw new InitFailure("Runtime.MalformedHandlerName",
                    "Bad handler '" + handler + "': expected Assembly::Namespace.Class::Method, e.g. MyFunction::MyFunction.Function::Handler");
            string assemblyName = parts[0], typeName = parts[1], methodName = parts[2];

            probeDirs = buildDir == codeDir ? new[] { codeDir } : new[] { buildDir, codeDir };
            AppDomain.CurrentDomain.AssemblyResolve += Resolve;
            return Bind(LoadAssembly(assemblyName), assemblyName, typeName, methodName);
        }

        // The handler's type and method in its loaded assembly, made ready to call.
        private static Invoker Bind(Assembly assembly, string assemblyName, string typeName, string methodName)
        {
            Type type;
            try
            {
                type = assembly.GetType(typeName, false);
            }
            catch (Exception e)
            {
                throw LoadFailure(e, typeName);
            }
            if (type == null)
                throw new InitFailure("Runtime.HandlerNotFound",
                    "Unable to find type '" + typeName + "' in assembly '" + assemblyName + "' (" + assembly.Location + "). "
                    + "Public types there: " + List(PublicTypes(assembly)));

            // The static constructor is the C# counterpart of a module's top-level code: run it
            // now, so its failure is an init error and not the first invocation's.
            try
            {
                RuntimeHelpers.RunClassConstructor(type.TypeHandle);
            }
            catch (Exception e)
            {
                throw InitError(e, typeName + " (static initialisation)");
            }

            MethodInfo method = FindMethod(type, methodName);
            object instance = null;
            if (!method.IsStatic)
            {
                if (type.IsAbstract || !type.IsValueType && type.GetConstructor(Type.EmptyTypes) == null)
                    throw new InitFailure("Runtime.HandlerNotFound",
                        "Handler method " + typeName + "::" + methodName + " is an instance method, so " + typeName
                        + " needs a public parameterless constructor (or make the method static)");
                // One instance per worker, made at init, as Lambda does.
                try
                {
                    instance = Activator.CreateInstance(type);
                }
                catch (Exception e)
                {
                    throw InitError(e, typeName + " (constructor)");
                }
            }
            return new Invoker(method, instance);
        }

        /// <summary>
        /// A stem cell's rehearsal of Load (WarmUp.cs), on this assembly and a handler of its own:
        /// the probe, the load (of the assembly already loaded), the bind. Changes nothing Load
        /// leaves behind (the probe directories, the resolve handler).
        /// </summary>
        internal static Invoker WarmUp(string typeName, string methodName)
        {
            Assembly self = typeof(HandlerLoader).Assembly;
            string dir = Path.GetDirectoryName(self.Location);
            string name = self.GetName().Name;
            // Only the very file already loaded: LoadFrom hands back the same assembly.
            string path = Probe(new[] { dir }, name);
            if (path != self.Location || Assembly.LoadFrom(path) != self)
                return null;
            ResolveEventHandler resolve = Resolve;
            AppDomain.CurrentDomain.AssemblyResolve += resolve;
            AppDomain.CurrentDomain.AssemblyResolve -= resolve;
            return Bind(self, name, typeName, methodName);
        }

        private static Assembly LoadAssembly(string name)
        {
            string path = Probe(probeDirs, name);
            if (path == null)
                throw new InitFailure("Runtime.ImportModuleError",
                    "Could not find assembly '" + name + "': looked for " + name + ".dll in " + string.Join(" and ", probeDirs)
                    + ". Assemblies there: " + List(AssemblyFiles()));
            try
            {
                return Assembly.LoadFrom(path);
            }
            catch (Exception e)
            {
                throw new InitFailure("Runtime.ImportModuleError",
                    "Could not load assembly '" + name + "' from " + path + ": " + e.GetType().FullName + ": " + e.Message, e);
            }
        }

        private static string Probe(string[] dirs, string name)
        {
            foreach (string dir in dirs)
                foreach (string ext in new[] { ".dll", ".exe" })
                {
                    string path = Path.Combine(dir, name + ext);
                    if (File.Exists(path))
                        return path;
                }
            return null;
        }

        // Dependencies of the user's assembly live beside it (its build output or its folder);
        // code compiled against Fnhost.Runtime binds to this very assembly.
        private static Assembly Resolve(object sender, ResolveEventArgs args)
        {
            string name = new AssemblyName(args.Name).Name;
            Assembly self = typeof(HandlerLoader).Assembly;
            if (name == self.GetName().Name)
                return self;
            string path = Probe(probeDirs, name);
            return path == null ? null : Assembly.LoadFrom(path);
        }

        private static MethodInfo FindMethod(Type type, string name)
        {
            const BindingFlags all = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static;
            var candidates = new List<MethodInfo>();
            MethodInfo hidden = null;
            try
            {
                foreach (MethodInfo m in type.GetMethods(all))
                {
                    if (m.Name != name)
                        continue;
                    if (m.IsPublic)
                        candidates.Add(m);
                    else
                        hidden = m;
                }
            }
            catch (Exception e)
            {
                throw LoadFailure(e, type.FullName + " (its methods)");
            }
            if (candidates.Count == 1)
                return candidates[0];
            string where = type.FullName + "::" + name;
            if (candidates.Count > 1)
                throw new InitFailure("Runtime.HandlerNotFound",
                    "Handler method " + where + " is overloaded (" + candidates.Count + " public methods); give the handler a unique name");
            if (hidden != null)
                throw new InitFailure("Runtime.HandlerNotFound", "Handler method " + where + " is not public");
            var names = new List<string>();
            foreach (MethodInfo m in type.GetMethods(BindingFlags.Public | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly))
                if (!m.IsSpecialName && !names.Contains(m.Name))
                    names.Add(m.Name);
            throw new InitFailure("Runtime.HandlerNotFound",
                "Unable to find method '" + name + "' in type '" + type.FullName + "'. Public methods there: " + List(names));
        }

        private static InitFailure InitError(Exception e, string what)
        {
            Exception root = ErrorJson.Root(e);
            if (ErrorJson.IsLoadFailure(root))
                return LoadFailure(root, what);
            return new InitFailure("Runtime.InitError",
                "Init error in " + what + ": " + root.GetType().FullName + ": " + root.Message, root);
        }

        private static InitFailure LoadFailure(Exception e, string what)
        {
            Exception root = ErrorJson.Root(e);
            if (!ErrorJson.IsLoadFailure(root))
                return InitError(root, what);
            return new InitFailure("Runtime.ImportModuleError",
                "Could not load an assembly needed by " + what + ": " + root.GetType().FullName + ": " + root.Message, root);
        }

        private static List<string> PublicTypes(Assembly assembly)
        {
            var names = new List<string>();
            Type[] types;
            try
            {
                types = assembly.GetExportedTypes();
            }
            catch (Exception)
            {
                return names;
            }
            foreach (Type t in types)
                names.Add(t.FullName);
            return names;
        }

        private static List<string> AssemblyFiles()
        {
            var names = new List<string>();
            string self = Path.GetFileName(typeof(HandlerLoader).Assembly.Location);
            foreach (string dir in probeDirs)
            {
                try
                {
                    foreach (string f in Directory.GetFiles(dir, "*.dll"))
                        if (Path.GetFileName(f) != self && !names.Contains(Path.GetFileName(f)))
                            names.Add(Path.GetFileName(f));
                }
                catch (Exception)
                {
                }
            }
            return names;
        }

        private static string List(List<string> names)
        {
            if (names.Count == 0)
                return "none";
            names.Sort(StringComparer.Ordinal);
            const int max = 20;
            string shown = string.Join(", ", names.GetRange(0, Math.Min(max, names.Count)));
            return names.Count > max ? shown + ", … (" + (names.Count - max) + " more)" : shown;
        }
    }
}
