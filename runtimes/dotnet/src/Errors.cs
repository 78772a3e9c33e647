// Lambda's error JSON ({"errorType","errorMessage","stackTrace"}) and the failures that become it.
using System;
using System.Collections.Generic;
using System.IO;
using System.Reflection;

namespace Fnhost.Runtime
{
    /// <summary>Loading the handler failed; becomes INIT_ERROR.</summary>
    internal sealed class InitFailure : Exception
    {
        public readonly string ErrorType;
        public readonly Exception Cause;

        public InitFailure(string errorType, string message, Exception cause = null) : base(message)
        {
            ErrorType = errorType;
            Cause = cause;
        }
    }

    /// <summary>A platform-side failure of one invocation (Runtime.UnmarshalError, …); becomes ERROR.</summary>
    internal sealed class InvokeFailure : Exception
    {
        public readonly string ErrorType;

        public InvokeFailure(string errorType, string message) : base(message)
        {
            ErrorType = errorType;
        }
    }

    /// <summary>The user's handler threw <see cref="Inner"/>; carries it past the shim's own frames.</summary>
    internal sealed class HandlerException : Exception
    {
        public readonly Exception Inner;

        public HandlerException(Exception inner) : base(inner.Message)
        {
            Inner = inner;
        }
    }

    internal static class ErrorJson
    {
        // An error must always fit in its frame, however long the exception's message.
        private const int MaxMessage = 64 * 1024;
        private const int MaxFrames = 256;

        public static void Write(FrameBuffer o, string errorType, string message, Exception stackOf)
        {
            message = message ?? "";
            if (message.Length > MaxMessage)
                message = message.Substring(0, MaxMessage) + "… (" + (message.Length - MaxMessage) + " more characters)";
            o.AppendAscii("{\"errorType\":");
            JsonWriter.WriteString(errorType, o);
            o.AppendAscii(",\"errorMessage\":");
            JsonWriter.WriteString(message, o);
            o.AppendAscii(",\"stackTrace\":[");
            if (stackOf != null)
            {
                List<string> lines = StackLines(stackOf);
                for (int i = 0; i < lines.Count && i < MaxFrames; i++)
                {
                    if (i > 0)
                        o.Append((byte)',');
                    JsonWriter.WriteString(lines[i], o);
                }
            }
            o.AppendAscii("]}");
        }

        /// <summary>
        /// The stack trace's lines, without the outermost frames that belong to this shim, the
        /// reflection call into the handler or the task awaiter: the user's frames are what remain.
        /// </summary>
        public static List<string> StackLines(Exception e)
        {
            var lines = new List<string>();
            string trace;
            try
            {
                trace = e.StackTrace;
            }
            catch (Exception)
            {
                trace = null;
            }
            if (string.IsNullOrEmpty(trace))
                return lines;
            foreach (string raw in trace.Split('\n'))
            {
                string line = raw.Trim();
                if (line.Length > 0)
                    lines.Add(line);
            }
            int keep = lines.Count;
            while (keep > 0 && IsPlatformFrame(lines[keep - 1]))
                keep--;
            if (keep > 0) // a trace made only of platform frames is still better than none
                lines.RemoveRange(keep, lines.Count - keep);
            return lines;
        }

        private static bool IsPlatformFrame(string line)
        {
            return line.StartsWith("at Fnhost.Runtime.", StringComparison.Ordinal)
                || line.StartsWith("at System.", StringComparison.Ordinal)
                || line.StartsWith("at (wrapper", StringComparison.Ordinal)
                || line.StartsWith("---", StringComparison.Ordinal);
        }

        /// <summary>
        /// Unwraps reflection's and the class loader's wrappers to the exception the user's code
        /// (or the loader, for a missing dependency) actually raised.
        /// </summary>
        public static Exception Root(Exception e)
        {
            while (true)
            {
                if ((e is System.Reflection.TargetInvocationException || e is TypeInitializationException) && e.InnerException != null)
                {
                    e = e.InnerException;
                    continue;
                }
                var agg = e as AggregateException;
                if (agg != null && agg.InnerExceptions.Count == 1)
                {
                    e = agg.InnerExceptions[0];
                    continue;
                }
                return e;
            }
        }

        /// <summary>An assembly (or a type in one) the code needs cannot be found or loaded.</summary>
        public static bool IsLoadFailure(Exception e)
        {
            if (e is FileLoadException || e is BadImageFormatException || e is TypeLoadException)
                return true;
            var missing = e as FileNotFoundException;
            if (missing == null)
                return false;
            // A missing reference names the assembly in full; an explicit Assembly.Load fails
            // inside the loader. Any other FileNotFoundException is the user's own file.
            if (missing.FileName != null && missing.FileName.Contains("Version="))
                return true;
            MethodBase thrower = missing.TargetSite;
            string where = thrower == null || thrower.DeclaringType == null ? "" : thrower.DeclaringType.FullName;
            return where == "System.AppDomain" || where.StartsWith("System.Reflection.", StringComparison.Ordinal)
                || where.StartsWith("System.Runtime.Loader.", StringComparison.Ordinal)
                || missing.Message.StartsWith("Could not load file or assembly", StringComparison.Ordinal);
        }
    }
}
