package fnhost.shim;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;

/**
 * The handler thread: takes INIT and INVOKE frames from the control thread, loads the handler,
 * calls it and answers. It runs with a large stack, so deep JSON and deep user recursion fit.
 */
final class Worker implements Runnable {
    /** Reserved, not committed: pages are only used as the stack grows into them. */
    static final long STACK = 256L << 20;

    private final Channel channel;
    private final ByteSink sink = new ByteSink(8192);
    private final JsonWriter writer = new JsonWriter(sink);
    private final ByteSink errors = new ByteSink(1024);
    private InvocationContext.Function function;
    private Invoker invoker;

    Worker(Channel channel) {
        this.channel = channel;
    }

    @Override
    public void run() {
        try {
            Env.hideControlFds();
            Env.utf8Stdio();
            Stem.preload();
            while (true) {
                // A handler may leave its thread interrupted; the next one should not start so.
                Thread.interrupted();
                Channel.Frame f = channel.take();
                if (f.kind == Channel.INIT || f.kind == Channel.SPECIALISE) {
                    init(f.body, f.kind == Channel.SPECIALISE);
                } else if (invoker == null) {
                    System.err.println("fnhost java shim: INVOKE before a successful INIT");
                    exit(1);
                } else {
                    invoke(f.body);
                }
            }
        } catch (Throwable t) {
            System.err.println("fnhost java shim: internal failure");
            t.printStackTrace();
            exit(1);
        }
    }

    private static void exit(int status) {
        Env.flushStdio();
        Runtime.getRuntime().halt(status);
    }

    private static String text(Map<?, ?> m, String key, String envName, String fallback) {
        Object v = m.get(key);
        if (v instanceof String && !((String) v).isEmpty()) {
            return (String) v;
        }
        String e = envName == null ? null : System.getenv(envName);
        return e != null && !e.isEmpty() ? e : fallback;
    }

    /**
     * INIT, or a stem cell's SPECIALISE: the same, once the cell has become the function's worker
     * (Stem); everything below then reads the function's environment, not the cell's.
     */
    private void init(byte[] body, boolean specialise) throws IOException {
        if (invoker != null) {
            System.err.println("fnhost java shim: a second INIT");
            exit(1);
        }
        try {
            Object parsed;
            try {
                parsed = Json.parse(body);
            } catch (Json.SyntaxError e) {
                throw new Failure(specialise ? Failure.SPECIALISE : Failure.INIT,
                        (specialise ? "SPECIALISE" : "INIT") + " frame is not JSON: " + e.getMessage());
            }
            Map<?, ?> m = parsed instanceof Map ? (Map<?, ?>) parsed : Map.of();
            if (specialise) {
                Stem.specialise(m);
            }
            String handler = text(m, "handler", "_HANDLER", null);
            String codeDir = text(m, "code_dir", "LAMBDA_TASK_ROOT", System.getProperty("user.dir"));
            String name = text(m, "function_name", "AWS_LAMBDA_FUNCTION_NAME", "");
            Object mem = m.get("memory_mb");
            int memoryMb = mem instanceof Number ? ((Number) mem).intValue() : parseInt(System.getenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"));
            function = new InvocationContext.Function(name,
                    text(m, "function_version", "AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"), memoryMb,
                    text(m, "log_group_name", "AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/" + name),
                    text(m, "log_stream_name", "AWS_LAMBDA_LOG_STREAM_NAME", ""),
                    m.get("invoked_function_arn") instanceof String ? (String) m.get("invoked_function_arn") : null);
            String build = System.getenv("FNHOST_BUILD_DIR");
            List<File> cp = HandlerLoader.classPath(new File(codeDir), build == null || build.isEmpty() ? null : new File(build));
            ClassLoader loader = HandlerLoader.loaderFor(cp);
            Thread.currentThread().setContextClassLoader(loader);
            invoker = HandlerLoader.load(handler, loader, cp);
        } catch (Failure f) {
            fail(f);
            return;
        } catch (Throwable t) {
            fail(new Failure(Failure.INIT, "Loading the handler threw " + Failure.describe(t), Failure.trace(t)));
            return;
        }
        Env.flushStdio();
        channel.writeFrame(Channel.INIT_OK, new byte[0]);
    }

    /** Reports an init failure and ends the worker, as the protocol asks. */
    private void fail(Failure f) throws IOException {
        f.writeTo(errors, 5);
        Env.flushStdio();
        channel.writeFrame(Channel.INIT_ERROR, errors.buf, errors.len);
        exit(1);
    }

    private static int parseInt(String s) {
        try {
            return s == null ? 0 : Integer.parseInt(s.trim());
        } catch (NumberFormatException e) {
            return 0;
        }
    }

    private void invoke(byte[] body) throws IOException {
        int idLen = body[0] & 0xFF;
        long deadline = 0;
        for (int i = 1 + idLen; i < 9 + idLen; i++) {
            deadline = (deadline << 8) | (body[i] & 0xFF);
        }
        long contextLen = 0;
        for (int i = 9 + idLen; i < 13 + idLen; i++) {
            contextLen = (contextLen << 8) | (body[i] & 0xFF);
        }
        if (13 + idLen + contextLen > body.length) {
            System.err.println("fnhost java shim: INVOKE context runs past the end of the frame");
            exit(1);
        }
        int off = 13 + idLen + (int) contextLen;
        String id = new String(body, 1, idLen, StandardCharsets.ISO_8859_1);
        int prefix = 6 + idLen;
        Failure failure;
        try {
            InvocationContext ctx = new InvocationContext(function, id, deadline,
                    contextLen == 0 ? null : InvokeContext.parse(body, 13 + idLen, (int) contextLen));
            sink.reset(prefix);
            Object r = invoker.call(body, off, body.length - off, ctx, sink);
            failure = invoker.streamsOut ? null : serialise(invoker.returnsVoid ? null : r, prefix);
        } catch (Failure f) {
            failure = f;
        } catch (Invoker.HandlerThrew e) {
            // The worker serves on even after an Error such as OutOfMemoryError, which Lambda's
            // runtime would retire it for: protocol v1 cannot say "last reply", and a worker
            // exiting just after its reply fails the next invocation sent to it.
            Throwable t = e.getCause();
            failure = t instanceof OutOfMemoryError ? outOfMemory((OutOfMemoryError) t) : Failure.of(t);
        } catch (OutOfMemoryError e) {
            failure = outOfMemory(e);
        } catch (RuntimeException e) {
            // The shim's own plumbing around the call (a context proxy, say): still this call's error.
            failure = Failure.of(e);
        }
        if (failure == null) {
            reply(Channel.RESULT, sink, body, idLen);
        } else {
            failure.writeTo(errors, prefix);
            reply(Channel.ERROR, errors, body, idLen);
        }
        sink.trim();
    }

    /** Writes the result into {@code sink}; the failure to report instead, or null. */
    private Failure serialise(Object result, int prefix) {
        try {
            sink.reset(prefix);
            writer.writeTop(result);
            return null;
        } catch (JsonWriter.MarshalException e) {
            return new Failure(Failure.MARSHAL, "Unable to serialise the response: " + e.getMessage());
        } catch (RuntimeException e) {
            // toString or an iterator of a user type failed while the result was written.
            return new Failure(Failure.MARSHAL, "Unable to serialise the response: " + Failure.describe(e), Failure.trace(e));
        }
    }

    /**
     * The heap is the part of the function's memory the JVM manages; running out of it is the
     * function running out of memory, reported as the daemon reports a worker killed for memory.
     */
    private Failure outOfMemory(OutOfMemoryError e) {
        long heapMb = Runtime.getRuntime().maxMemory() >> 20;
        return new Failure(Failure.OUT_OF_MEMORY, "java.lang.OutOfMemoryError: " + e.getMessage() + " (heap limit " + heapMb
                + " MB of the function's " + function.memoryMb + " MB)", Failure.trace(e));
    }

    private void reply(int kind, ByteSink out, byte[] invoke, int idLen) throws IOException {
        byte[] b = out.buf;
        b[5] = (byte) idLen;
        System.arraycopy(invoke, 1, b, 6, idLen);
        Env.flushStdio();
        if (out.len - 4 > Channel.MAX_FRAME) {
            Failure big = new Failure(Failure.MARSHAL, "Response of " + (out.len - 6 - idLen) + " bytes exceeds the protocol's 16 MiB frame limit");
            big.writeTo(errors, 6 + idLen);
            reply(Channel.ERROR, errors, invoke, idLen);
            return;
        }
        channel.writeFrame(kind, b, out.len);
    }
}
