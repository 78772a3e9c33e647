package fnhost.shim;

import fnhost.LambdaLogger;

/** The fnhost.Context of one invocation: the function's fixed facts plus its request id and deadline. */
final class InvocationContext implements fnhost.Context {
    /** What INIT says about the function; the same for every invocation of this worker. */
    static final class Function {
        final String name;
        final String version;
        final int memoryMb;
        final String logGroup;
        final String logStream;
        final String arn;

        Function(String name, String version, int memoryMb, String logGroup, String logStream, String arn) {
            this.name = name;
            this.version = version;
            this.memoryMb = memoryMb;
            this.logGroup = logGroup;
            this.logStream = logStream;
            if (arn != null && !arn.isEmpty()) {
                this.arn = arn; // INIT's: the daemon knows the region and account
                return;
            }
            String region = System.getenv("AWS_REGION");
            if (region == null || region.isEmpty()) {
                region = System.getenv("AWS_DEFAULT_REGION");
            }
            if (region == null || region.isEmpty()) {
                region = "us-east-1";
            }
            this.arn = "arn:aws:lambda:" + region + ":000000000000:function:" + name;
        }
    }

    /** Writes log entries to stdout, one line at least per call, as the function's log expects lines. */
    static final class StdoutLogger implements LambdaLogger {
        static final StdoutLogger INSTANCE = new StdoutLogger();

        @Override
        public void log(String message) {
            String m = String.valueOf(message);
            System.out.print(m.endsWith("\n") ? m : m + "\n");
        }

        @Override
        public void log(byte[] message) {
            if (message == null) {
                log("null");
                return;
            }
            java.io.PrintStream out = System.out;
            synchronized (out) {
                out.write(message, 0, message.length);
                if (message.length == 0 || message[message.length - 1] != '\n') {
                    out.write('\n');
                }
            }
        }
    }

    final Function fn;
    final String requestId;
    final long deadlineMs;
    /** INVOKE's context, or null when the invocation carried none. */
    final InvokeContext invoked;

    InvocationContext(Function fn, String requestId, long deadlineMs, InvokeContext invoked) {
        this.fn = fn;
        this.requestId = requestId;
        this.deadlineMs = deadlineMs;
        this.invoked = invoked;
    }

    @Override
    public String getAwsRequestId() {
        return requestId;
    }

    @Override
    public String getLogGroupName() {
        return fn.logGroup;
    }

    @Override
    public String getLogStreamName() {
        return fn.logStream;
    }

    @Override
    public String getFunctionName() {
        return fn.name;
    }

    @Override
    public String getFunctionVersion() {
        return fn.version;
    }

    @Override
    public String getInvokedFunctionArn() {
        return invoked != null && invoked.arn != null ? invoked.arn : fn.arn;
    }

    @Override
    public fnhost.ClientContext getClientContext() {
        return invoked == null ? null : invoked.clientContext;
    }

    @Override
    public int getRemainingTimeInMillis() {
        long left = deadlineMs - System.currentTimeMillis();
        return left <= 0 ? 0 : (int) Math.min(left, Integer.MAX_VALUE);
    }

    @Override
    public int getMemoryLimitInMB() {
        return fn.memoryMb;
    }

    @Override
    public LambdaLogger getLogger() {
        return StdoutLogger.INSTANCE;
    }

    @Override
    public String toString() {
        return "Context{requestId=" + requestId + ", function=" + fn.name + "}";
    }
}
