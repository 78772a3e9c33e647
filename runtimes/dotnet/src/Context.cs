// The public face of the shim: what a handler compiled against Fnhost.Runtime sees.
//
// The names copy Amazon.Lambda.Core (ILambdaContext, ILambdaLogger, LambdaLogger) so Lambda code
// ports by changing `using Amazon.Lambda.Core;` to `using Fnhost;`. Code that keeps Amazon's
// interface gets a generated adapter instead (ContextProxy.cs).
using System;
using System.Collections.Generic;

namespace Fnhost
{
    public interface ILambdaLogger
    {
        void Log(string message);
        void LogLine(string message);
    }

    public interface ILambdaContext
    {
        string AwsRequestId { get; }
        string FunctionName { get; }
        string FunctionVersion { get; }
        string InvokedFunctionArn { get; }
        string LogGroupName { get; }
        string LogStreamName { get; }
        int MemoryLimitInMB { get; }
        TimeSpan RemainingTime { get; }
        ILambdaLogger Logger { get; }
        /// <summary>What the caller passed as Invoke's ClientContext; null when it passed none.</summary>
        IClientContext ClientContext { get; }
    }

    /// <summary>
    /// Lambda's client context, as Amazon.Lambda.Core's IClientContext. A value that is not a
    /// JSON string in Custom or Environment arrives as its JSON text.
    /// </summary>
    public interface IClientContext
    {
        IDictionary<string, string> Environment { get; }
        IClientApplication Client { get; }
        IDictionary<string, string> Custom { get; }
    }

    /// <summary>The app that called, as Amazon.Lambda.Core's IClientApplication.</summary>
    public interface IClientApplication
    {
        string AppPackageName { get; }
        string AppTitle { get; }
        string AppVersionCode { get; }
        string AppVersionName { get; }
        string InstallationId { get; }
    }

    /// <summary>Lambda's static logger: writes to the function's log (the worker's stdout).</summary>
    public static class LambdaLogger
    {
        public static void Log(string message)
        {
            Console.Out.Write(message);
        }
    }

    public sealed class ConsoleLambdaLogger : ILambdaLogger
    {
        internal static readonly ConsoleLambdaLogger Instance = new ConsoleLambdaLogger();

        private ConsoleLambdaLogger() { }

        public void Log(string message)
        {
            Console.Out.Write(message);
        }

        public void LogLine(string message)
        {
            Console.Out.WriteLine(message);
        }
    }

    /// <summary>
    /// One invocation's context. Public (and sealed) because generated adapters for foreign
    /// ILambdaContext interfaces live in a dynamic assembly and call it directly.
    /// </summary>
    public sealed class LambdaContext : ILambdaContext
    {
        private readonly Runtime.FunctionInfo function;
        private readonly long deadlineMs;
        private readonly string invokedArn;

        internal LambdaContext(Runtime.FunctionInfo function, string requestId, long deadlineMs,
                               IClientContext clientContext, string invokedArn)
        {
            this.function = function;
            AwsRequestId = requestId;
            this.deadlineMs = deadlineMs;
            ClientContext = clientContext;
            this.invokedArn = invokedArn;
        }

        public string AwsRequestId { get; private set; }
        public IClientContext ClientContext { get; private set; }
        public string FunctionName { get { return function.Name; } }
        public string FunctionVersion { get { return function.Version; } }
        public string InvokedFunctionArn { get { return invokedArn ?? function.Arn; } }
        public string LogGroupName { get { return function.LogGroupName; } }
        public string LogStreamName { get { return function.LogStreamName; } }
        public int MemoryLimitInMB { get { return function.MemoryMb; } }
        public ILambdaLogger Logger { get { return ConsoleLambdaLogger.Instance; } }

        /// <summary>Time left before the daemon's deadline for this invocation, never negative.</summary>
        public TimeSpan RemainingTime
        {
            get
            {
                long left = deadlineMs - DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
                return TimeSpan.FromMilliseconds(left > 0 ? left : 0);
            }
        }
    }
}
