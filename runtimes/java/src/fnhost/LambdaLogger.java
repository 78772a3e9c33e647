package fnhost;

/** The logger of {@link Context#getLogger()}: each call writes one entry to the function's log. */
public interface LambdaLogger {
    /** Writes the message to stdout, adding a newline when it does not end with one. */
    void log(String message);

    void log(byte[] message);
}
