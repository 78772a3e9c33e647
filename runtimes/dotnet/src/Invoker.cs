// One handler method and how to call it: the signature is examined once, at init, so an
// invocation only converts its payload and calls.
//
// Shapes (Lambda's .NET rules: zero, one or two parameters, the second being the context):
//   input     Stream (the raw payload), string (a JSON string, as Lambda's serializer reads it),
//             or any other type, bound from the parsed JSON (JsonBinder)
//   context   Fnhost.ILambdaContext / LambdaContext / object, or any interface named
//             ILambdaContext (adapted, ContextProxy.cs); may also be the only parameter
//   result    void / Task → null; Stream → its bytes as they are; Task<T> → awaited;
//             anything else → JSON (JsonWriter)
using System;
using System.IO;
using System.Reflection;
using System.Threading.Tasks;

namespace Fnhost.Runtime
{
    internal sealed class Invoker
    {
        private enum Input { None, Stream, String, Json }

        private readonly MethodInfo method;
        private readonly object instance;
        private readonly int arity;
        private readonly Input input = Input.None;
        private readonly Type inputType;
        private readonly int contextIndex = -1;
        private readonly ConstructorInfo contextAdapter;
        private readonly PropertyInfo taskResult;
        private readonly bool returnsPlainTask;

        public Invoker(MethodInfo method, object instance)
        {
            this.method = method;
            this.instance = instance;
            ParameterInfo[] ps = method.GetParameters();
            arity = ps.Length;
            string where = method.DeclaringType.FullName + "::" + method.Name;
            if (method.ContainsGenericParameters)
                throw Unsupported(where, "is generic");
            if (arity > 2)
                throw Unsupported(where, "takes " + arity + " parameters; a handler takes (input) or (input, context)");
            foreach (ParameterInfo p in ps)
                if (p.ParameterType.IsByRef || p.ParameterType.IsPointer)
                    throw Unsupported(where, "has a ref, out or pointer parameter '" + p.Name + "'");

            // A lone parameter is the input unless its type can only be a context.
            if (arity == 2 || arity == 1 && ps[0].ParameterType != typeof(object) && IsContext(ps[0].ParameterType))
            {
                contextIndex = arity - 1;
                Type ct = ps[contextIndex].ParameterType;
                if (!IsContext(ct))
                    throw Unsupported(where, "takes a second parameter of type " + JsonBinder.Name(ct) + "; it must be the context (Fnhost.ILambdaContext)");
                if (!ct.IsAssignableFrom(typeof(Fnhost.LambdaContext)))
                {
                    try
                    {
                        contextAdapter = ContextProxy.For(ct);
                    }
                    catch (Exception e)
                    {
                        throw Unsupported(where, "takes a context of type " + ct.FullName + " that fnhost cannot provide: " + e.Message);
                    }
                }
            }
            if (contextIndex != 0 && arity > 0)
            {
                inputType = ps[0].ParameterType;
                // Stream (or a base of MemoryStream that is itself a stream); object means parsed JSON.
                if (typeof(Stream).IsAssignableFrom(inputType) && inputType.IsAssignableFrom(typeof(MemoryStream)))
                    input = Input.Stream;
                else if (inputType == typeof(string))
                    input = Input.String;
                else
                    input = Input.Json;
            }

            Type ret = method.ReturnType;
            if (ret.IsGenericType && ret.GetGenericTypeDefinition() == typeof(Task<>))
                taskResult = ret.GetProperty("Result");
            else if (ret == typeof(Task))
                returnsPlainTask = true;
        }

        private static bool IsContext(Type t)
        {
            return t == typeof(object) || t.IsAssignableFrom(typeof(Fnhost.LambdaContext)) || ContextProxy.IsForeignContext(t);
        }

        private static InitFailure Unsupported(string where, string why)
        {
            return new InitFailure("Runtime.HandlerNotFound", "Handler method " + where + " " + why);
        }

        /// <summary>
        /// Calls the handler; returns its result (a Stream to pass through, or a value to write as JSON).
        /// Throws InvokeFailure for a payload that does not fit the parameter, HandlerException for
        /// the handler's own exception.
        /// </summary>
        public object Invoke(byte[] body, int offset, int count, Fnhost.LambdaContext context)
        {
            var args = arity == 0 ? null : new object[arity];
            if (contextIndex >= 0)
                args[contextIndex] = contextAdapter == null ? context : contextAdapter.Invoke(new object[] { context });
            switch (input)
            {
                case Input.Stream:
                    args[0] = new MemoryStream(body, offset, count, false, true);
                    break;
                case Input.String:
                    args[0] = ReadString(body, offset, count);
                    break;
                case Input.Json:
                    args[0] = ReadJson(body, offset, count);
                    break;
            }

            object result;
            try
            {
                result = method.Invoke(instance, args);
            }
            catch (TargetInvocationException e)
            {
                throw new HandlerException(e.InnerException ?? e);
            }
            var task = result as Task;
            if (task == null)
                return result;
            try
            {
                task.GetAwaiter().GetResult();
            }
            catch (Exception e)
            {
                throw new HandlerException(e);
            }
            if (taskResult != null)
                return taskResult.GetValue(task, null);
            return returnsPlainTask ? null : ResultOfUntypedTask(task);
        }

        private object ReadString(byte[] body, int offset, int count)
        {
            object value;
            try
            {
                value = JsonReader.Parse(body, offset, count);
            }
            catch (JsonException e)
            {
                throw Unmarshal(e.Message);
            }
            if (value != null && !(value is string))
                throw Unmarshal("the handler takes a string, so the event must be a JSON string, "
                    + "for example \"Hello World\" with its quotes");
            return value;
        }

        private object ReadJson(byte[] body, int offset, int count)
        {
            try
            {
                return JsonBinder.Bind(JsonReader.Parse(body, offset, count), inputType);
            }
            catch (JsonException e)
            {
                throw Unmarshal(e.Message);
            }
            catch (TargetInvocationException e)
            {
                Exception inner = e.InnerException ?? e;
                throw Unmarshal("constructing " + JsonBinder.Name(inputType) + " threw " + inner.GetType().FullName + ": " + inner.Message);
            }
        }

        private InvokeFailure Unmarshal(string why)
        {
            return new InvokeFailure("Runtime.UnmarshalError",
                "Unable to unmarshal input as " + JsonBinder.Name(inputType) + ": " + why);
        }

        // A handler declared as returning object (or a Task subclass) handed back a Task.
        private static object ResultOfUntypedTask(Task task)
        {
            for (Type t = task.GetType(); t != null && t != typeof(Task); t = t.BaseType)
            {
                if (t.IsGenericType && t.GetGenericTypeDefinition() == typeof(Task<>))
                {
                    // async Task methods return Task<VoidTaskResult> on .NET: no value.
                    if (t.GetGenericArguments()[0].Name == "VoidTaskResult")
                        return null;
                    return t.GetProperty("Result").GetValue(task, null);
                }
            }
            return null;
        }
    }
}
