package fnhost.shim;

import java.io.File;
import java.lang.reflect.Constructor;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.net.MalformedURLException;
import java.net.URL;
import java.net.URLClassLoader;
import java.security.CodeSource;
import java.security.PermissionCollection;
import java.security.Permissions;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.TreeSet;

/**
 * Finds the handler named by {@code package.Class::method} (or {@code package.Class}, meaning
 * handleRequest) the way Lambda's Java runtime does, and turns every way that can fail into the
 * INIT_ERROR type and a message naming what was looked for and what was found.
 */
final class HandlerLoader {
    private HandlerLoader() {
    }

    /**
     * The function's classpath, as on Lambda: compiled sources from the build, the code
     * directory itself (classes at its root), then its jars and lib/ jars in name order.
     */
    static List<File> classPath(File codeDir, File buildDir) {
        List<File> cp = new ArrayList<>();
        if (buildDir != null) {
            File classes = new File(buildDir, "classes");
            if (classes.isDirectory()) {
                cp.add(classes);
            }
        }
        cp.add(codeDir);
        addJars(cp, codeDir);
        addJars(cp, new File(codeDir, "lib"));
        String layers = System.getenv("FNHOST_LAYERS_DIR");
        if (layers != null && !layers.isEmpty()) {
            addJars(cp, new File(layers, "java/lib")); // Lambda's /opt/java/lib, after the function's own
        }
        return cp;
    }

    private static void addJars(List<File> cp, File dir) {
        String[] names = dir.list();
        if (names == null) {
            return;
        }
        Arrays.sort(names);
        for (String n : names) {
            if (n.endsWith(".jar") || n.endsWith(".zip")) {
                File f = new File(dir, n);
                if (f.isFile()) {
                    cp.add(f);
                }
            }
        }
    }

    static ClassLoader loaderFor(List<File> cp) {
        URL[] urls = new URL[cp.size()];
        for (int i = 0; i < urls.length; i++) {
            try {
                urls[i] = cp.get(i).toURI().toURL();
            } catch (MalformedURLException e) {
                throw new IllegalStateException(e);
            }
        }
        // Unnamed: a named loader would prefix every frame of a stack trace with its name.
        return new URLClassLoader(urls, HandlerLoader.class.getClassLoader()) {
            /**
             * No per-class permissions: there is no security manager to consult them, and
             * computing the default FilePermission loads and parses the JDK's security
             * properties, ~8 ms of every cold start.
             */
            @Override
            protected PermissionCollection getPermissions(CodeSource codesource) {
                return new Permissions();
            }
        };
    }

    private static String describe(List<File> cp) {
        StringBuilder sb = new StringBuilder();
        for (File f : cp) {
            if (sb.length() > 0) {
                sb.append(", ");
            }
            sb.append(f.getPath());
        }
        return sb.toString();
    }

    /**
     * package.Class or package.Class::method, in ASCII identifiers ($ allowed, for nested
     * classes) — runtime.toml's handler_pattern. Checked by hand: java.util.regex costs ~14 ms of
     * lambda bootstrapping on a cold JVM.
     */
    static boolean wellFormed(String h) {
        if (h == null) {
            return false;
        }
        int sep = h.indexOf("::");
        String cls = sep < 0 ? h : h.substring(0, sep);
        if (sep >= 0 && !identifier(h.substring(sep + 2))) {
            return false;
        }
        int start = 0;
        while (true) {
            int dot = cls.indexOf('.', start);
            if (!identifier(cls.substring(start, dot < 0 ? cls.length() : dot))) {
                return false;
            }
            if (dot < 0) {
                return true;
            }
            start = dot + 1;
        }
    }

    private static boolean identifier(String s) {
        if (s.isEmpty()) {
            return false;
        }
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            boolean letter = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' || c == '$';
            if (!letter && (i == 0 || c < '0' || c > '9')) {
                return false;
            }
        }
        return true;
    }

    /** Loads, initialises and, for an instance method, constructs the handler. */
    static Invoker load(String handler, ClassLoader loader, List<File> cp) throws Failure {
        if (!wellFormed(handler)) {
            throw new Failure(Failure.MALFORMED, "Bad handler '" + handler
                    + "': expected package.Class::method or package.Class (meaning handleRequest), e.g. example.Hello::handleRequest");
        }
        int sep = handler.indexOf("::");
        String className = sep < 0 ? handler : handler.substring(0, sep);
        String methodName = sep < 0 ? "handleRequest" : handler.substring(sep + 2);

        Class<?> cls = loadClass(className, loader, cp);
        Method method = pickMethod(cls, methodName, sep < 0);
        int[] plan = Invoker.plan(method);
        Object instance = Modifier.isStatic(method.getModifiers()) ? null : construct(cls, methodName);
        method.trySetAccessible();
        AwsBridge aws = null;
        Class<?>[] types = method.getParameterTypes();
        for (int i = 0; i < plan.length; i++) {
            if (plan[i] == Invoker.AWS_CONTEXT) {
                aws = AwsBridge.forContextType(types[i]);
            }
        }
        return new Invoker(cls, method, instance, plan, aws);
    }

    private static Class<?> loadClass(String className, ClassLoader loader, List<File> cp) throws Failure {
        try {
            return Class.forName(className, true, loader);
        } catch (ClassNotFoundException e) {
            throw new Failure(Failure.IMPORT, "Class " + className + " not found: looked in " + describe(cp)
                    + " (classes at the root of the code, jars at its root and in lib/, and the build's compiled sources)");
        } catch (ExceptionInInitializerError e) {
            Throwable cause = e.getCause() == null ? e : e.getCause();
            throw new Failure(Failure.INIT, "Static initialisation of " + className + " threw " + Failure.describe(cause),
                    Failure.trace(cause));
        } catch (UnsupportedClassVersionError e) {
            throw new Failure(Failure.IMPORT, "Class " + className + " was compiled for a newer Java than this worker's "
                    + System.getProperty("java.version") + ": " + e.getMessage());
        } catch (NoClassDefFoundError e) {
            throw new Failure(Failure.IMPORT, "Class " + className + " could not be loaded: it needs "
                    + String.valueOf(e.getMessage()).replace('/', '.') + ", which is not on the classpath (" + describe(cp) + ")",
                    Failure.trace(e));
        } catch (LinkageError e) {
            throw new Failure(Failure.IMPORT, "Class " + className + " could not be loaded: " + Failure.describe(e), Failure.trace(e));
        }
    }

    /**
     * Lambda's choice among overloads: non-bridge first, then the longest signature, where a
     * trailing Context counts one extra; the first whose parameters form a supported shape wins.
     */
    private static Method pickMethod(Class<?> cls, String name, boolean implied) throws Failure {
        Method[] all;
        try {
            all = cls.getMethods();
        } catch (NoClassDefFoundError e) {
            throw new Failure(Failure.IMPORT, "Methods of " + cls.getName() + " could not be loaded: they need "
                    + String.valueOf(e.getMessage()).replace('/', '.') + ", which is not on the classpath");
        }
        List<Method> named = new ArrayList<>();
        for (Method m : all) {
            if (m.getName().equals(name)) {
                named.add(m);
            }
        }
        named.sort(new Comparator<Method>() {
            @Override
            public int compare(Method a, Method b) {
                if (a.isBridge() != b.isBridge()) {
                    return a.isBridge() ? 1 : -1;
                }
                return Integer.compare(weight(b), weight(a));
            }
        });
        for (Method m : named) {
            if (Invoker.plan(m) != null) {
                return m;
            }
        }
        if (!named.isEmpty()) {
            StringBuilder sigs = new StringBuilder();
            for (Method m : named) {
                sigs.append(sigs.length() > 0 ? "; " : "").append(m.toGenericString());
            }
            throw new Failure(Failure.NOT_FOUND, "No public method " + name + " of " + cls.getName()
                    + " has a supported signature; found: " + sigs
                    + ". Supported: (Event[, Context]), (InputStream, OutputStream[, Context]), (InputStream|OutputStream[, Context]), (Context), ()");
        }
        TreeSet<String> names = new TreeSet<>();
        for (Method m : all) {
            if (m.getDeclaringClass() != Object.class) {
                names.add(m.getName());
            }
        }
        String found = names.isEmpty() ? "it has none" : "it has " + String.join(", ", names);
        if (implied) {
            throw new Failure(Failure.NOT_FOUND, "Handler " + cls.getName() + " names no method, so it needs a public handleRequest method "
                    + "(RequestHandler or RequestStreamHandler), but " + found + "; name one with " + cls.getName() + "::method");
        }
        throw new Failure(Failure.NOT_FOUND, "Class " + cls.getName() + " has no public method named " + name + ": " + found);
    }

    private static int weight(Method m) {
        Class<?>[] p = m.getParameterTypes();
        int w = p.length;
        if (w > 0 && Invoker.isContext(Invoker.classify(p[w - 1]))) {
            w++;
        }
        return w;
    }

    private static Object construct(Class<?> cls, String methodName) throws Failure {
        if (cls.getEnclosingClass() != null && !Modifier.isStatic(cls.getModifiers())) {
            throw new Failure(Failure.NOT_FOUND, "Class " + cls.getName()
                    + " is a non-static inner class and cannot be instantiated to call " + methodName + "; make it static");
        }
        if (Modifier.isAbstract(cls.getModifiers())) {
            throw new Failure(Failure.NOT_FOUND, "Class " + cls.getName() + " is abstract, so its instance method "
                    + methodName + " cannot be called; make the method static or name a concrete class");
        }
        Constructor<?> k;
        try {
            k = cls.getDeclaredConstructor();
        } catch (NoSuchMethodException e) {
            throw new Failure(Failure.NOT_FOUND, "Class " + cls.getName() + " has no zero-argument constructor, needed to call its instance method "
                    + methodName + "; add one or make the method static");
        }
        k.trySetAccessible();
        try {
            return k.newInstance();
        } catch (InvocationTargetException e) {
            Throwable cause = e.getCause() == null ? e : e.getCause();
            throw new Failure(Failure.INIT, "Constructor of " + cls.getName() + " threw " + Failure.describe(cause), Failure.trace(cause));
        } catch (ExceptionInInitializerError e) {
            Throwable cause = e.getCause() == null ? e : e.getCause();
            throw new Failure(Failure.INIT, "Initialisation for " + cls.getName() + " threw " + Failure.describe(cause), Failure.trace(cause));
        } catch (ReflectiveOperationException e) {
            throw new Failure(Failure.INIT, "Cannot create " + cls.getName() + ": " + e);
        }
    }
}
