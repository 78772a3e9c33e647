package fnhost.shim;

import java.io.ByteArrayInputStream;
import java.io.InputStream;
import java.io.OutputStream;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.ParameterizedType;
import java.lang.reflect.Type;
import java.lang.reflect.TypeVariable;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * A resolved handler method and how to call it: which argument each parameter receives (the
 * raw event stream, the response stream, a context, or the event parsed from JSON and bound to
 * the parameter's type) and whether the response is the bytes written to the OutputStream or the
 * serialised return value.
 */
final class Invoker {
    static final int IN = 0;
    static final int OUT = 1;
    static final int CONTEXT = 2;
    static final int AWS_CONTEXT = 3;
    static final int EVENT = 4;

    final Method method;
    final Object instance;
    final int[] params;
    final Type eventType;
    final boolean streamsOut;
    final boolean returnsVoid;
    final AwsBridge aws;

    Invoker(Class<?> handlerClass, Method method, Object instance, int[] params, AwsBridge aws) {
        this.method = method;
        this.instance = instance;
        this.params = params;
        this.aws = aws;
        Type ev = null;
        boolean out = false;
        for (int i = 0; i < params.length; i++) {
            if (params[i] == EVENT) {
                Method declared = method.isBridge() ? bridged(method, handlerClass) : method;
                ev = resolve(declared.getGenericParameterTypes()[i], handlerClass);
            } else if (params[i] == OUT) {
                out = true;
            }
        }
        this.eventType = ev;
        this.streamsOut = out;
        Class<?> r = method.getReturnType();
        this.returnsVoid = r == void.class || r == Void.class;
    }

    /**
     * The method a visibility bridge stands for: javac gives a public class a bridge for each
     * public method it inherits from a package-private base, and the bridge has lost the
     * generic parameter types.
     */
    private static Method bridged(Method bridge, Class<?> handlerClass) {
        for (Class<?> k = handlerClass; k != null; k = k.getSuperclass()) {
            for (Method m : k.getDeclaredMethods()) {
                if (!m.isBridge() && m.getName().equals(bridge.getName())
                        && Arrays.equals(m.getParameterTypes(), bridge.getParameterTypes())) {
                    return m;
                }
            }
        }
        return bridge;
    }

    /**
     * The event type of a method inherited from a generic base class, e.g. I of
     * {@code abstract class Base<I> implements RequestHandler<I, String>} when the handler class
     * extends {@code Base<Order>}: followed down the superclass chain to the argument given.
     */
    static Type resolve(Type t, Class<?> handlerClass) {
        if (!(t instanceof TypeVariable) || !(((TypeVariable<?>) t).getGenericDeclaration() instanceof Class)) {
            return t;
        }
        Class<?> declaring = (Class<?>) ((TypeVariable<?>) t).getGenericDeclaration();
        List<Class<?>> chain = new ArrayList<>();
        for (Class<?> k = handlerClass; k != null && k != declaring; k = k.getSuperclass()) {
            chain.add(k);
        }
        // Bind from the top of the chain down, so a variable passed through several levels resolves.
        Map<TypeVariable<?>, Type> bound = new HashMap<>();
        for (int i = chain.size() - 1; i >= 0; i--) {
            Type sup = chain.get(i).getGenericSuperclass();
            if (sup instanceof ParameterizedType) {
                TypeVariable<?>[] vars = ((Class<?>) ((ParameterizedType) sup).getRawType()).getTypeParameters();
                Type[] args = ((ParameterizedType) sup).getActualTypeArguments();
                for (int j = 0; j < vars.length && j < args.length; j++) {
                    bound.put(vars[j], args[j]);
                }
            }
        }
        Type r = t;
        for (int guard = 0; r instanceof TypeVariable && bound.containsKey(r) && guard < 64; guard++) {
            r = bound.get(r);
        }
        return r;
    }

    /** Thrown for the handler's own exception, carrying it for the ERROR frame. */
    static final class HandlerThrew extends Exception {
        private static final long serialVersionUID = 1L;

        HandlerThrew(Throwable cause) {
            super(null, cause, false, false);
        }
    }

    /**
     * Calls the handler for one event. Writes a stream handler's output into {@code sink} and
     * returns {@code sink}; otherwise returns the handler's return value (null for void).
     */
    Object call(byte[] body, int off, int len, InvocationContext ctx, ByteSink sink) throws Failure, HandlerThrew {
        Object[] args = new Object[params.length];
        for (int i = 0; i < params.length; i++) {
            switch (params[i]) {
                case IN:
                    args[i] = new ByteArrayInputStream(body, off, len);
                    break;
                case OUT:
                    args[i] = sink;
                    break;
                case CONTEXT:
                    args[i] = ctx;
                    break;
                case AWS_CONTEXT:
                    args[i] = aws.context(ctx);
                    break;
                default:
                    args[i] = event(body, off, len);
            }
        }
        Object result;
        try {
            result = method.invoke(instance, args);
        } catch (InvocationTargetException e) {
            throw new HandlerThrew(e.getCause() == null ? e : e.getCause());
        } catch (IllegalAccessException e) {
            throw new HandlerThrew(e);
        }
        return streamsOut ? sink : result;
    }

    private Object event(byte[] body, int off, int len) throws Failure {
        Object parsed;
        try {
            parsed = Json.parse(body, off, len);
        } catch (Json.SyntaxError e) {
            throw new Failure(Failure.UNMARSHAL, "event is not valid JSON: " + e.getMessage());
        }
        try {
            return Bind.convert(parsed, eventType);
        } catch (StackOverflowError e) {
            throw new Failure(Failure.UNMARSHAL, "event nested too deeply to bind to " + eventType.getTypeName());
        }
    }

    /** The kind of argument a parameter of type {@code t} receives, or -1 when it fits no shape slot. */
    static int classify(Class<?> t) {
        if (t == InputStream.class) {
            return IN;
        }
        if (t == OutputStream.class) {
            return OUT;
        }
        if (t == fnhost.Context.class) {
            return CONTEXT;
        }
        if (t.getName().equals(AwsBridge.CONTEXT)) {
            return AWS_CONTEXT;
        }
        return EVENT;
    }

    static boolean isContext(int kind) {
        return kind == CONTEXT || kind == AWS_CONTEXT;
    }

    /**
     * The argument plan of a method if its parameters form a shape Lambda's Java runtime accepts,
     * else null: (), (X), (X, Context), (InputStream, OutputStream[, Context]),
     * (InputStream, Context), (OutputStream, Context), where X is an event type or one stream.
     */
    static int[] plan(Method m) {
        Class<?>[] p = m.getParameterTypes();
        int[] k = new int[p.length];
        for (int i = 0; i < p.length; i++) {
            k[i] = classify(p[i]);
        }
        switch (k.length) {
            case 0:
            case 1:
                return k;
            case 2:
                if (k[0] == IN && k[1] == OUT) {
                    return k;
                }
                if (isContext(k[1]) && !isContext(k[0])) {
                    return k;
                }
                return null;
            case 3:
                return k[0] == IN && k[1] == OUT && isContext(k[2]) ? k : null;
            default:
                return null;
        }
    }
}
