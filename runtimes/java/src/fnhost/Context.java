package fnhost;

/**
 * What a handler learns about its invocation, for handlers that do not bring AWS's
 * aws-lambda-java-core library. The getters have the names and types of
 * {@code com.amazonaws.services.lambda.runtime.Context}, so moving a handler between the two is
 * a change of import. A handler taking AWS's Context gets an implementation of that interface.
 */
public interface Context {
    /** The id of this invocation, as the caller of Invoke sees it. */
    String getAwsRequestId();

    String getLogGroupName();

    String getLogStreamName();

    String getFunctionName();

    /** The version that was invoked; fnhost runs {@code $LATEST}. */
    String getFunctionVersion();

    /**
     * The ARN the caller named the function by, with the qualifier it used
     * (arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]).
     */
    String getInvokedFunctionArn();

    /** What the caller passed as its ClientContext, or null when it passed none. */
    ClientContext getClientContext();

    /** Milliseconds left before the invocation's deadline, never negative. */
    int getRemainingTimeInMillis();

    int getMemoryLimitInMB();

    /** A logger whose lines go to the function's log (the worker's stdout). */
    LambdaLogger getLogger();
}
