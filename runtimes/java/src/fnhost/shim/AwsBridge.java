package fnhost.shim;

import java.lang.reflect.Field;
import java.lang.reflect.InvocationHandler;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.lang.reflect.Proxy;

/**
 * Serves handlers written against AWS's aws-lambda-java-core when the function brings that jar.
 * The shim is not compiled against it: the interfaces are looked up in the function's class
 * loader and implemented with java.lang.reflect.Proxy, so any version of the library works and
 * methods added by later versions fall back to their default bodies (or null/0).
 */
final class AwsBridge {
    static final String CONTEXT = "com.amazonaws.services.lambda.runtime.Context";
    static final String LOGGER = "com.amazonaws.services.lambda.runtime.LambdaLogger";
    private static final String RUNTIME = "com.amazonaws.services.lambda.runtime.LambdaRuntime";

    private final Class<?>[] contextIface;
    private final Object logger;

    private AwsBridge(Class<?> context, Object logger) {
        this.contextIface = new Class<?>[] {context};
        this.logger = logger;
    }

    /** The bridge for the AWS Context type a handler names, sharing that type's class loader. */
    static AwsBridge forContextType(Class<?> contextType) {
        ClassLoader loader = contextType.getClassLoader();
        Object logger = null;
        try {
            Class<?> loggerType = Class.forName(LOGGER, false, loader);
            logger = Proxy.newProxyInstance(loader, new Class<?>[] {loggerType}, new LoggerHandler());
            installRuntimeLogger(loader, loggerType, logger);
        } catch (ClassNotFoundException | LinkageError e) {
            // A library too old to have LambdaLogger: getLogger() then answers null.
        }
        return new AwsBridge(contextType, logger);
    }

    /** LambdaRuntime.getLogger() should log like context.getLogger(), as on Lambda. */
    private static void installRuntimeLogger(ClassLoader loader, Class<?> loggerType, Object logger) {
        try {
            Class<?> rt = Class.forName(RUNTIME, true, loader);
            Field f = rt.getDeclaredField("logger");
            if (Modifier.isStatic(f.getModifiers()) && f.getType() == loggerType && f.trySetAccessible()) {
                f.set(null, logger);
            }
        } catch (ReflectiveOperationException | LinkageError | RuntimeException e) {
            // LambdaRuntime absent or shaped differently: its own default logger stays.
        }
    }

    Object context(InvocationContext c) {
        return Proxy.newProxyInstance(contextIface[0].getClassLoader(), contextIface, new ContextHandler(c, logger));
    }

    private static Object objectMethod(Object proxy, Method m, Object[] args, String text) {
        switch (m.getName()) {
            case "equals":
                return proxy == args[0];
            case "hashCode":
                return System.identityHashCode(proxy);
            default:
                return text;
        }
    }

    private static boolean isObjectMethod(Method m) {
        String n = m.getName();
        int k = m.getParameterCount();
        return (k == 0 && (n.equals("hashCode") || n.equals("toString"))) || (k == 1 && n.equals("equals"));
    }

    /** What an unknown abstract method answers: nothing, typed. */
    private static Object none(Class<?> r) {
        if (!r.isPrimitive() || r == void.class) {
            return null;
        }
        if (r == boolean.class) {
            return Boolean.FALSE;
        }
        if (r == char.class) {
            return '\0';
        }
        if (r == long.class) {
            return 0L;
        }
        if (r == double.class) {
            return 0.0;
        }
        if (r == float.class) {
            return 0.0f;
        }
        if (r == short.class) {
            return (short) 0;
        }
        if (r == byte.class) {
            return (byte) 0;
        }
        return 0;
    }

    private static final class ContextHandler implements InvocationHandler {
        private final InvocationContext c;
        private final Object logger;

        ContextHandler(InvocationContext c, Object logger) {
            this.c = c;
            this.logger = logger;
        }

        @Override
        public Object invoke(Object proxy, Method m, Object[] args) throws Throwable {
            if (isObjectMethod(m)) {
                return objectMethod(proxy, m, args, c.toString());
            }
            if (m.getParameterCount() == 0) {
                switch (m.getName()) {
                    case "getAwsRequestId":
                        return c.getAwsRequestId();
                    case "getLogGroupName":
                        return c.getLogGroupName();
                    case "getLogStreamName":
                        return c.getLogStreamName();
                    case "getFunctionName":
                        return c.getFunctionName();
                    case "getFunctionVersion":
                        return c.getFunctionVersion();
                    case "getInvokedFunctionArn":
                        return c.getInvokedFunctionArn();
                    case "getRemainingTimeInMillis":
                        return c.getRemainingTimeInMillis();
                    case "getMemoryLimitInMB":
                        return c.getMemoryLimitInMB();
                    case "getLogger":
                        return logger;
                    case "getClientContext":
                        return mirror(m.getReturnType(), c.getClientContext());
                    default:
                        break;
                }
            }
            if (m.isDefault()) {
                return InvocationHandler.invokeDefault(proxy, m, args);
            }
            // getIdentity and whatever a newer library adds: fnhost has none.
            return none(m.getReturnType());
        }
    }

    /**
     * AWS's {@code iface} (ClientContext, Client) answered by fnhost's own {@code value}, whose
     * interfaces have the same getters; null stays null.
     */
    static Object mirror(Class<?> iface, Object value) {
        if (value == null || !iface.isInterface()) {
            return iface.isInstance(value) ? value : null;
        }
        return Proxy.newProxyInstance(iface.getClassLoader(), new Class<?>[] {iface}, new MirrorHandler(value));
    }

    private static final class MirrorHandler implements InvocationHandler {
        private final Object value;

        MirrorHandler(Object value) {
            this.value = value;
        }

        @Override
        public Object invoke(Object proxy, Method m, Object[] args) throws Throwable {
            if (isObjectMethod(m)) {
                return objectMethod(proxy, m, args, value.toString());
            }
            if (m.getParameterCount() == 0) {
                // Through fnhost's public interface: the implementing classes are the shim's own.
                for (Class<?> own : value.getClass().getInterfaces()) {
                    Method getter;
                    try {
                        getter = own.getMethod(m.getName());
                    } catch (NoSuchMethodException e) {
                        continue;
                    }
                    Object v = getter.invoke(value);
                    Class<?> r = m.getReturnType();
                    return v != null && r.isInterface() && !r.isInstance(v) ? mirror(r, v) : v;
                }
            }
            if (m.isDefault()) {
                return InvocationHandler.invokeDefault(proxy, m, args);
            }
            return none(m.getReturnType());
        }
    }

    private static final class LoggerHandler implements InvocationHandler {
        @Override
        public Object invoke(Object proxy, Method m, Object[] args) throws Throwable {
            if (isObjectMethod(m)) {
                return objectMethod(proxy, m, args, "fnhost LambdaLogger");
            }
            if (m.getName().equals("log") && args != null && args.length >= 1) {
                // log(message, level) of newer libraries lands here too: fnhost writes every level.
                Object msg = args[0];
                if (msg instanceof byte[]) {
                    InvocationContext.StdoutLogger.INSTANCE.log((byte[]) msg);
                } else {
                    InvocationContext.StdoutLogger.INSTANCE.log(String.valueOf(msg));
                }
                return null;
            }
            if (m.isDefault()) {
                return InvocationHandler.invokeDefault(proxy, m, args);
            }
            return none(m.getReturnType());
        }
    }
}
