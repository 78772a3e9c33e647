package fnhost.shim;

import java.util.ArrayList;
import java.util.List;

/**
 * Lambda's error JSON {"errorType","errorMessage","stackTrace"}. For a handler's own exception the
 * type is the exception's fully qualified class name and the trace lists its frames as
 * StackTraceElement prints them, cut where the shim's own plumbing begins — what Lambda's Java
 * runtime reports.
 */
final class Failure extends Exception {
    private static final long serialVersionUID = 1L;

    static final String IMPORT = "Runtime.ImportModuleError";
    static final String SYNTAX = "Runtime.UserCodeSyntaxError";
    static final String NOT_FOUND = "Runtime.HandlerNotFound";
    static final String MALFORMED = "Runtime.MalformedHandlerName";
    static final String INIT = "Runtime.InitError";
    static final String UNMARSHAL = "Runtime.UnmarshalError";
    static final String MARSHAL = "Runtime.MarshalError";
    /** The daemon's name for a worker over its memory limit; the shim uses it for heap exhaustion. */
    static final String OUT_OF_MEMORY = "Runtime.OutOfMemory";
    /** A stem cell could not take its function's identity, environment or working directory (Stem). */
    static final String SPECIALISE = "Runtime.SpecialiseError";

    final String type;
    final String[] trace;

    Failure(String type, String message) {
        this(type, message, new String[0]);
    }

    Failure(String type, String message, String[] trace) {
        super(message, null, false, false);
        this.type = type;
        this.trace = trace;
    }

    /** The failure a thrown exception stands for, as Lambda's Java runtime reports it. */
    static Failure of(Throwable t) {
        String msg = t.getLocalizedMessage();
        return new Failure(t.getClass().getName(), msg == null ? t.getClass().getName() : msg, trace(t));
    }

    /** The user's frames of {@code t}: everything above the first frame of the shim and the reflection that led to it. */
    static String[] trace(Throwable t) {
        StackTraceElement[] st = t.getStackTrace();
        int k = st.length;
        for (int i = 0; i < st.length; i++) {
            if (st[i].getClassName().startsWith("fnhost.shim.")) {
                k = i;
                break;
            }
        }
        while (k > 0 && isPlumbing(st[k - 1])) {
            k--;
        }
        if (k == 0) {
            k = st.length;
        }
        String[] out = new String[k];
        for (int i = 0; i < k; i++) {
            out[i] = st[i].toString();
        }
        return out;
    }

    private static boolean isPlumbing(StackTraceElement e) {
        String c = e.getClassName();
        return c.startsWith("jdk.internal.reflect.")
                || c.startsWith("java.lang.reflect.")
                || c.startsWith("java.lang.invoke.")
                || (c.equals("java.lang.Class") && (e.getMethodName().startsWith("forName") || e.getMethodName().equals("newInstance")));
    }

    /** "type: message" of a throwable and its causes, for messages that must name the original type. */
    static String describe(Throwable t) {
        List<String> parts = new ArrayList<>();
        for (Throwable c = t; c != null && parts.size() < 5; c = c.getCause() == c ? null : c.getCause()) {
            String m = c.getLocalizedMessage();
            parts.add(m == null ? c.getClass().getName() : c.getClass().getName() + ": " + m);
        }
        return String.join("; caused by ", parts);
    }

    /** Writes the error JSON after the {@code prefix} bytes reserved in {@code sink}. */
    void writeTo(ByteSink sink, int prefix) {
        sink.reset(prefix);
        JsonWriter w = new JsonWriter(sink);
        sink.putAscii("{\"errorType\":");
        w.string(type);
        sink.putAscii(",\"errorMessage\":");
        w.string(getMessage() == null ? "" : getMessage());
        sink.putAscii(",\"stackTrace\":[");
        for (int i = 0; i < trace.length; i++) {
            if (i > 0) {
                sink.put((byte) ',');
            }
            w.string(trace[i]);
        }
        sink.putAscii("]}");
    }
}
