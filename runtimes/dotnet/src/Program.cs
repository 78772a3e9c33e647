// fnhost's C# worker: speaks protos/worker-protocol.md and runs one Lambda-style handler.
// Standard library only; builds with mcs (Mono) and with the .NET SDK alike.
using System;
using System.Collections.Generic;
using System.IO;
using System.Text;

namespace Fnhost.Runtime
{
    /// <summary>The function's fixed facts, from INIT; shared by every invocation's context.</summary>
    internal sealed class FunctionInfo
    {
        public string Name, Version, Arn, LogGroupName, LogStreamName, Handler, CodeDir;
        public int MemoryMb;
    }

    internal static class Program
    {
        private const string ControlFdsVariable = "FNHOST_CONTROL_FDS";

        private static int Main()
        {
            int inFd, outFd;
            if (!ParseFds(Environment.GetEnvironmentVariable(ControlFdsVariable), out inFd, out outFd))
            {
                Console.Error.WriteLine("fnhost: " + ControlFdsVariable + " must be \"<in>,<out>\"; this program is started by the fnhost daemon");
                return 2;
            }
            var channel = new Channel(inFd, outFd);
            var frame = new FrameBuffer();
            frame.Start(Kind.Hello);
            // The version comes from the build (BuildInfo.cs, generated): asking Mono at run
            // time takes reflection, milliseconds before HELLO can go out.
            string version = BuildInfo.RuntimeVersion ?? ".NET " + Environment.Version;
            frame.AppendAscii("{\"protocol\":3,\"runtime\":\"dotnet\",\"runtime_version\":\"" + version
                + "\",\"pid\":" + Native.ProcessId() + "}");
            channel.Write(frame);

            // Nothing of the protocol may leak to the user's code or to processes it starts.
            Environment.SetEnvironmentVariable(ControlFdsVariable, null);
            Native.SetCloseOnExec(inFd);
            Native.SetCloseOnExec(outFd);
            UseUtf8Console();
            channel.WatchForDaemonExit();
            // A stem cell rehearses what SPECIALISE and the first INVOKE will run while it waits
            // (WarmUp.cs); the first frame to arrive ends the rehearsal.
            if (WarmUp.Wanted())
                WarmUp.Run(channel);

            // A spawned worker gets INIT; a stem cell (started before its function was known) waits
            // here, silent, for SPECIALISE, and takes the function's identity, environment and
            // working directory before INIT's work reads any of them.
            Frame init = channel.Read();
            if (init.Kind != Kind.Init && init.Kind != Kind.Specialise)
                return Broken("expected INIT or SPECIALISE, got frame kind " + init.Kind);
            FunctionInfo function;
            Invoker invoker;
            try
            {
                Dictionary<string, object> fields = ParseInit(init);
                if (init.Kind == Kind.Specialise)
                    Specialise.Apply(fields);
                function = ReadInit(fields);
                invoker = HandlerLoader.Load(function.Handler, BuildDir(function), function.CodeDir);
            }
            catch (InitFailure f)
            {
                FlushStd();
                frame.Start(Kind.InitError);
                ErrorJson.Write(frame, f.ErrorType, f.Message, f.Cause);
                channel.Write(frame);
                Native.HardExit(1);
                return 1;
            }
            FlushStd();
            frame.Start(Kind.InitOk);
            channel.Write(frame);
            Serve(channel, frame, function, invoker);
            return 0;
        }

        private static void Serve(Channel channel, FrameBuffer frame, FunctionInfo function, Invoker invoker)
        {
            while (true)
            {
                Frame f = channel.Read();
                if (f.Kind != Kind.Invoke)
                {
                    Broken("expected INVOKE, got frame kind " + f.Kind);
                    return;
                }
                byte[] body = f.Body;
                int idLen = body.Length > 0 ? body[0] : 0;
                int header = 1 + idLen + 12;
                if (body.Length < header)
                {
                    Broken("INVOKE frame shorter than its header");
                    return;
                }
                long deadline = 0;
                for (int i = 1 + idLen; i < 9 + idLen; i++)
                    deadline = deadline << 8 | body[i];
                long contextLength = 0;
                for (int i = 9 + idLen; i < header; i++)
                    contextLength = contextLength << 8 | body[i];
                if (body.Length - header < contextLength)
                {
                    Broken("INVOKE context runs past the end of the frame");
                    return;
                }
                int payload = header + (int)contextLength;

                try
                {
                    IClientContext clientContext = null;
                    string arn = null;
                    if (contextLength > 0)
                        InvokeContext.Parse(body, header, (int)contextLength, out clientContext, out arn);
                    var context = new Fnhost.LambdaContext(function, Encoding.ASCII.GetString(body, 1, idLen), deadline,
                                                           clientContext, arn);
                    object result = invoker.Invoke(body, payload, body.Length - payload, context);
                    var stream = result as Stream;
                    if (stream != null)
                    {
                        SendStream(channel, frame, body, stream);
                        continue;
                    }
                    frame.StartReply(Kind.Result, body);
                    JsonWriter.Write(result, frame);
                    FlushStd();
                    channel.Write(frame);
                }
                catch (HandlerException e)
                {
                    SendError(channel, frame, body, e.Inner.GetType().FullName, e.Inner.Message, e.Inner);
                }
                catch (InvokeFailure e)
                {
                    SendError(channel, frame, body, e.ErrorType, e.Message, null);
                }
                catch (MarshalException e)
                {
                    SendError(channel, frame, body, "Runtime.MarshalError", "Unable to marshal response: " + e.Message, null);
                }
                catch (FrameTooLargeException e)
                {
                    SendError(channel, frame, body, "Function.ResponseSizeTooLarge", e.Message, null);
                }
                catch (Exception e)
                {
                    // Reading a returned Stream, or a collection's enumerator, threw: user code.
                    SendError(channel, frame, body, e.GetType().FullName, e.Message, e);
                }
            }
        }

        // A returned Stream goes out as it is, from its current position (as Lambda reads it),
        // and without a copy when it is a MemoryStream over a reachable buffer.
        private static void SendStream(Channel channel, FrameBuffer frame, byte[] invokeBody, Stream stream)
        {
            ArraySegment<byte> data;
            using (stream)
            {
                var memory = stream as MemoryStream;
                if (memory != null && memory.TryGetBuffer(out data))
                {
                    int skip = (int)Math.Min(memory.Position, data.Count);
                    data = new ArraySegment<byte>(data.Array, data.Offset + skip, data.Count - skip);
                }
                else
                {
                    var copy = new MemoryStream();
                    stream.CopyTo(copy);
                    data = new ArraySegment<byte>(copy.GetBuffer(), 0, (int)copy.Length);
                }
            }
            frame.StartReply(Kind.Result, invokeBody);
            FlushStd();
            channel.Write(frame, data.Array, data.Offset, data.Count);
        }

        private static void SendError(Channel channel, FrameBuffer frame, byte[] invokeBody, string type, string message, Exception stackOf)
        {
            FlushStd();
            frame.StartReply(Kind.Error, invokeBody);
            ErrorJson.Write(frame, type, message, stackOf);
            channel.Write(frame);
        }

        internal static Dictionary<string, object> ParseInit(Frame frame)
        {
            string what = frame.Kind == Kind.Specialise ? "SPECIALISE" : "INIT";
            string errorType = frame.Kind == Kind.Specialise ? "Runtime.SpecialiseError" : "Runtime.InitError";
            Dictionary<string, object> init;
            try
            {
                init = JsonReader.Parse(frame.Body, 0, frame.Body.Length) as Dictionary<string, object>;
            }
            catch (JsonException e)
            {
                throw new InitFailure(errorType, what + " frame is not JSON: " + e.Message);
            }
            if (init == null)
                throw new InitFailure(errorType, what + " frame is not a JSON object");
            return init;
        }

        internal static FunctionInfo ReadInit(Dictionary<string, object> init)
        {
            var env = Get(init, "environment") as Dictionary<string, object>;
            // The worker was started with these variables already; only differences are applied,
            // because .NET's SetEnvironmentVariable(name, "") deletes a variable that should exist empty.
            if (env != null)
                foreach (KeyValuePair<string, object> kv in env)
                {
                    string value = kv.Value == null ? null : Convert.ToString(kv.Value, System.Globalization.CultureInfo.InvariantCulture);
                    if (Environment.GetEnvironmentVariable(kv.Key) != value && !string.IsNullOrEmpty(value))
                        Environment.SetEnvironmentVariable(kv.Key, value);
                }
            var f = new FunctionInfo
            {
                Handler = Text(init, "handler") ?? "",
                CodeDir = Text(init, "code_dir") ?? Environment.CurrentDirectory,
                Name = Text(init, "function_name") ?? "",
                Version = Text(init, "function_version") ?? "$LATEST",
                LogGroupName = Text(init, "log_group_name") ?? "",
                LogStreamName = Text(init, "log_stream_name") ?? "",
            };
            object memory = Get(init, "memory_mb");
            f.MemoryMb = memory is long ? (int)(long)memory : 0;
            string region = Environment.GetEnvironmentVariable("AWS_REGION");
            f.Arn = Text(init, "invoked_function_arn")
                ?? "arn:aws:lambda:" + (string.IsNullOrEmpty(region) ? "local" : region) + ":000000000000:function:" + f.Name;
            return f;
        }

        private static object Get(Dictionary<string, object> d, string key)
        {
            object v;
            return d.TryGetValue(key, out v) ? v : null;
        }

        private static string Text(Dictionary<string, object> d, string key)
        {
            return Get(d, key) as string;
        }

        private static string BuildDir(FunctionInfo f)
        {
            string dir = Environment.GetEnvironmentVariable("FNHOST_BUILD_DIR");
            return string.IsNullOrEmpty(dir) ? f.CodeDir : dir;
        }

        private static bool ParseFds(string value, out int inFd, out int outFd)
        {
            inFd = outFd = -1;
            if (value == null)
                return false;
            string[] parts = value.Split(',');
            return parts.Length == 2 && int.TryParse(parts[0], out inFd) && int.TryParse(parts[1], out outFd);
        }

        // Mono picks the console's encoding from the locale and falls back to ASCII ("é" → "?")
        // under LANG=C; payloads are UTF-8, so logs are too. Setting the encoding replaces the
        // writers, so it happens before user code can hold them. The locale is read from the
        // environment because asking Console costs its whole initialisation (~7 ms on Mono),
        // which a UTF-8 locale leaves to the first flush.
        private static void UseUtf8Console()
        {
            if (LocaleIsUtf8())
                return;
            try
            {
                Console.OutputEncoding = new UTF8Encoding(false);
            }
            catch (Exception)
            {
            }
        }

        private static bool LocaleIsUtf8()
        {
            foreach (string name in new[] { "LC_ALL", "LC_CTYPE", "LANG" })
            {
                string value = Environment.GetEnvironmentVariable(name);
                if (string.IsNullOrEmpty(value))
                    continue;
                value = value.ToUpperInvariant();
                return value.Contains("UTF-8") || value.Contains("UTF8");
            }
            return false;
        }

        // User code writes through Console's writers; the daemon attributes output to an
        // invocation by what arrives before RESULT/ERROR, so nothing may still sit in a buffer.
        internal static void FlushStd()
        {
            try
            {
                Console.Out.Flush();
                Console.Error.Flush();
            }
            catch (Exception)
            {
            }
        }

        private static int Broken(string why)
        {
            Console.Error.WriteLine("fnhost: control channel broken: " + why);
            Native.HardExit(1);
            return 1;
        }
    }
}
