// A stem cell's warm-up (runtimes/dotnet/README.md, "Stem cells"). A cell waits for its function,
// and on Mono a first SPECIALISE used to spend most of its time compiling (JIT) the shim's code
// and the class library's wrappers and generic instances it uses, and initialising their classes
// and the console. While nothing has come, the cell rehearses SPECIALISE, a handler's load and one
// invocation with the shim's own stand-ins (the handler below, a SPECIALISE and an INVOKE of its
// own). It touches nothing a function can see: it runs none of the function's code, writes no
// file, nothing to the control pipe, stdout or stderr, changes no variable, directory or identity
// (those calls are only compiled), and leaves no handler, thread or assembly behind. It runs on the
// main thread in short steps, and before each step it polls the control pipe: a frame (SPECIALISE,
// or INIT) ends it, so it delays that frame by one step at most; end of file is the EOF watcher's,
// as at any time. A failure just ends the rehearsal.
using System;
using System.Collections.Generic;
using System.IO;
using System.Reflection;
using System.Text;

namespace Fnhost.Runtime
{
    internal static class WarmUp
    {
        /// <summary>
        /// On Mono (the .NET variant compiles in tiers and is not measured here), in a stem cell:
        /// started without a function (no _HANDLER; a spawned worker has one and gets INIT at once).
        /// </summary>
        public static bool Wanted()
        {
            return Environment.GetEnvironmentVariable("_HANDLER") == null && Type.GetType("Mono.Runtime") != null;
        }

        private const string Spec = "{\"handler\":\"Fnhost.Runtime::Fnhost.Runtime.WarmUpHandler::Handler\","
            + "\"code_dir\":\"/\",\"function_name\":\"warm-up\",\"function_version\":\"$LATEST\",\"memory_mb\":128,"
            + "\"timeout_s\":3,\"log_group_name\":\"/aws/lambda/warm-up\",\"log_stream_name\":\"2000/01/01/[$LATEST]0\","
            + "\"environment\":{},\"identity\":{\"uid\":1,\"gid\":1},"
            + "\"process_environment\":{\"PATH\":\"/usr/bin:/bin\",\"LANG\":\"C.UTF-8\",\"TZ\":\":UTC\",\"EMPTY\":\"\"},"
            + "\"cwd\":\"/\",\"ratio\":0.5,\"flags\":[true,false,null],\"escaped\":\"a\\\"b\\\\c\\n\\u00e9\\ud83d\\ude00\"}";

        private const string Event = "{\"name\":\"warm-up\",\"count\":3,\"ratio\":1.5,\"enabled\":true,"
            + "\"tags\":[\"a\",\"b\"],\"inner\":{\"name\":\"x\",\"count\":1},"
            + "\"extra\":{\"k\":\"v\"},\"items\":[{\"name\":\"y\",\"count\":2}],\"missing\":null}";

        private const string ClientContext = "{\"invoked_function_arn\":\"arn:aws:lambda:local:000000000000:function:warm-up\","
            + "\"client_context\":{\"client\":{\"app_title\":\"t\"},\"custom\":{\"k\":\"v\",\"n\":1},\"env\":{\"e\":\"v\"}}}";

        /// <summary>Runs the rehearsal until it ends or <paramref name="channel"/> has a frame waiting.</summary>
        public static void Run(Channel channel)
        {
            var state = new State();
            var steps = new Action[]
            {
                // What every function's SPECIALISE and first INVOKE run comes first.
                state.Parse,
                state.Specialise,
                state.Load,
                state.InvokeHandler,
                state.Console,
                state.Compile,
                state.Invoke,
                state.Members,
                state.InvokePoco,
                state.InvokeFailing,
            };
            foreach (Action step in steps)
            {
                if (channel.FrameWaiting())
                    return;
                try
                {
                    step();
                }
                catch (Exception)
                {
                    return;
                }
            }
        }

        private sealed class State
        {
            private Dictionary<string, object> spec;
            private FunctionInfo function;
            private Invoker handler;
            private readonly FrameBuffer frame = new FrameBuffer();

            public void Parse()
            {
                byte[] body = Encoding.UTF8.GetBytes(Spec);
                spec = Program.ParseInit(new Frame { Kind = Kind.Specialise, Body = body });
                function = Program.ReadInit(spec);
            }

            public void Specialise()
            {
                Fnhost.Runtime.Specialise.WarmUp(spec);
            }

            public void Load()
            {
                handler = HandlerLoader.WarmUp(typeof(WarmUpHandler).FullName, "Handler");
            }

            public void InvokeHandler()
            {
                Invoke(handler, Event, ClientContext);
            }

            public void Invoke()
            {
                Invoke(HandlerLoader.WarmUp(typeof(WarmUpHandler).FullName, "Text"), "\"warm-up\"", null);
                Invoke(HandlerLoader.WarmUp(typeof(WarmUpHandler).FullName, "Raw"), Event, null);
            }

            public void Members()
            {
                TypeMembers.Of(typeof(WarmUpHandler.Input));
            }

            public void InvokePoco()
            {
                Invoke(HandlerLoader.WarmUp(typeof(WarmUpHandler).FullName, "Poco"), Event, null);
            }

            public void InvokeFailing()
            {
                Invoke(HandlerLoader.WarmUp(typeof(WarmUpHandler).FullName, "Fail"), "{}", null);
            }

            public void Console()
            {
                // Creates Console.Out and Console.Error (the locale that picks their encoding is
                // a cell's start-up variable, the function's too); both are empty: nothing is
                // written. Not when stdin and stdout are terminals: Mono's console would then read
                // TERM, a variable of the function's environment, not yet there.
                if (Native.IsTerminal(0) && Native.IsTerminal(1))
                    return;
                Program.FlushStd();
            }

            // Compiled, never called: the rest of the main loop, and Mono's calls behind SPECIALISE's
            // chdir and a handler's first log line (MonoIO, Mono's own internal class: without
            // it, nothing is done).
            public void Compile()
            {
                Compile(typeof(Program), "Serve", "SendStream", "SendError");
                Type io = typeof(object).Assembly.GetType("System.IO.MonoIO");
                if (io != null)
                    Compile(io, "SetCurrentDirectory", "Write");
            }

            private static void Compile(Type type, params string[] names)
            {
                const BindingFlags all = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static | BindingFlags.Instance | BindingFlags.DeclaredOnly;
                foreach (MethodInfo m in type.GetMethods(all))
                    if (Array.IndexOf(names, m.Name) >= 0)
                        Compile(m);
            }

            private static void Compile(MethodInfo m)
            {
                if (m != null && !m.IsAbstract && !m.ContainsGenericParameters)
                    m.MethodHandle.GetFunctionPointer();
            }

            // As Program.Serve does with an INVOKE, into a frame of its own that is never sent.
            private void Invoke(Invoker invoker, string payload, string context)
            {
                if (invoker == null)
                    throw new InvalidOperationException("no warm-up handler");
                byte[] id = Encoding.ASCII.GetBytes("warm-up");
                byte[] c = context == null ? new byte[0] : Encoding.UTF8.GetBytes(context);
                byte[] p = Encoding.UTF8.GetBytes(payload);
                var body = new byte[1 + id.Length + 12 + c.Length + p.Length];
                body[0] = (byte)id.Length;
                Buffer.BlockCopy(id, 0, body, 1, id.Length);
                int header = 1 + id.Length + 12;
                body[header - 1] = (byte)c.Length;
                Buffer.BlockCopy(c, 0, body, header, c.Length);
                Buffer.BlockCopy(p, 0, body, header + c.Length, p.Length);
                int offset = header + c.Length;

                IClientContext clientContext = null;
                string arn = null;
                if (c.Length > 0)
                    InvokeContext.Parse(body, header, c.Length, out clientContext, out arn);
                var lambdaContext = new Fnhost.LambdaContext(function, Encoding.ASCII.GetString(body, 1, id.Length),
                    DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() + 3000, clientContext, arn);
                try
                {
                    object result = invoker.Invoke(body, offset, body.Length - offset, lambdaContext);
                    var stream = result as Stream;
                    frame.StartReply(Kind.Result, body);
                    if (stream != null)
                    {
                        ArraySegment<byte> data;
                        ((MemoryStream)stream).TryGetBuffer(out data);
                        frame.Append(data.Array, data.Offset, data.Count);
                    }
                    else
                    {
                        JsonWriter.Write(result, frame);
                    }
                }
                catch (HandlerException e)
                {
                    frame.StartReply(Kind.Error, body);
                    ErrorJson.Write(frame, e.Inner.GetType().FullName, e.Inner.Message, e.Inner);
                }
                frame.SealHeader();
            }
        }
    }

    /// <summary>The warm-up's stand-in for a function's handler class (never a function's own).</summary>
    internal sealed class WarmUpHandler
    {
        public sealed class Item
        {
            public string Name { get; set; }
            public int Count;
        }

        public sealed class Input
        {
            public string Name { get; set; }
            public long Count { get; set; }
            public double Ratio { get; set; }
            public bool Enabled { get; set; }
            public List<string> Tags { get; set; }
            public Item Inner { get; set; }
            public Dictionary<string, string> Extra { get; set; }
            public Item[] Items { get; set; }
            public int? Missing { get; set; }
        }

        public Dictionary<string, object> Handler(Dictionary<string, object> input, Fnhost.ILambdaContext context)
        {
            return new Dictionary<string, object>
            {
                { "message", "Hello, " + input["name"] + "!" },
                { "request_id", context.AwsRequestId },
                { "function", context.FunctionName },
                { "remaining_ms", (long)context.RemainingTime.TotalMilliseconds },
                { "logger", context.Logger != null },
                { "count", input["count"] },
                { "ratio", input["ratio"] },
                { "tags", input["tags"] },
                { "inner", input["inner"] },
                { "none", null },
            };
        }

        public string Text(string input, Fnhost.ILambdaContext context)
        {
            return input + context.InvokedFunctionArn;
        }

        public Stream Raw(Stream input)
        {
            var copy = new MemoryStream();
            input.CopyTo(copy);
            copy.Position = 0;
            return copy;
        }

        public Input Poco(Input input)
        {
            input.Count += input.Items.Length + input.Tags.Count + input.Extra.Count;
            return input;
        }

        public void Fail(Dictionary<string, object> input)
        {
            throw new InvalidOperationException("warm-up");
        }
    }
}
