package fnhost.shim;

import java.io.BufferedOutputStream;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.PrintStream;
import java.lang.reflect.Field;
import java.nio.charset.StandardCharsets;
import java.util.Iterator;
import java.util.Map;

/**
 * Process plumbing Java has no API for (adopting inherited fds, editing the environment) and the
 * standard streams, all set up before user code loads.
 */
final class Env {
    private Env() {
    }

    static final String CONTROL_FDS = "FNHOST_CONTROL_FDS";

    private static PrintStream stdout;
    private static PrintStream stderr;

    /**
     * sun.misc.Unsafe, or null on a JDK that no longer has it. Java has no API to adopt an
     * inherited fd or to edit the environment; opening java.io and java.lang to reflection
     * (--add-opens) would do both more politely but costs every start the JVM's archived module
     * graph (~10 ms). JDK 24+ warns about these calls unless the launch sets
     * -Dsun.misc.unsafe.memory.access=allow, as runtime.toml does.
     */
    @SuppressWarnings("removal")
    private static sun.misc.Unsafe unsafe() {
        try {
            Field f = sun.misc.Unsafe.class.getDeclaredField("theUnsafe");
            f.setAccessible(true);
            return (sun.misc.Unsafe) f.get(null);
        } catch (ReflectiveOperationException | RuntimeException | LinkageError e) {
            return null;
        }
    }

    /**
     * A FileDescriptor for an fd this process inherited, or null when the JDK does not allow it.
     * Reopening /proc/self/fd/N instead fails once the daemon runs the worker under its own uid:
     * the pipes belong to the daemon's user, and a reopen checks their permissions.
     */
    @SuppressWarnings("removal")
    static FileDescriptor adopt(int fd) {
        sun.misc.Unsafe u = unsafe();
        if (u == null) {
            return null;
        }
        try {
            FileDescriptor d = new FileDescriptor();
            u.putInt(d, u.objectFieldOffset(FileDescriptor.class.getDeclaredField("fd")), fd);
            return d.valid() ? d : null;
        } catch (ReflectiveOperationException | RuntimeException | LinkageError e) {
            return null;
        }
    }

    /** Drops FNHOST_CONTROL_FDS from the environment user code reads and hands to its children. */
    @SuppressWarnings("removal")
    static void hideControlFds() {
        sun.misc.Unsafe u = unsafe();
        if (u == null) {
            return;
        }
        try {
            Field env = Class.forName("java.lang.ProcessEnvironment").getDeclaredField("theEnvironment");
            Object map = u.getObject(u.staticFieldBase(env), u.staticFieldOffset(env));
            if (map instanceof Map) {
                // Keys are ProcessEnvironment.Variable; their toString is the name.
                for (Iterator<?> it = ((Map<?, ?>) map).keySet().iterator(); it.hasNext();) {
                    if (CONTROL_FDS.equals(String.valueOf(it.next()))) {
                        it.remove();
                    }
                }
            }
        } catch (ReflectiveOperationException | RuntimeException | LinkageError e) {
            // A JDK laid out differently: the variable stays visible, nothing else changes.
        }
    }

    /**
     * Gives a system property that the JVM fixed at start a new value, also in the copy that
     * jdk.internal.util.StaticProperty keeps (what java.io and java.nio read): for a stem cell,
     * which takes its uid and working directory after start. Null, or why it could not.
     */
    @SuppressWarnings("removal")
    static String startupProperty(String name, String field, String value) {
        System.setProperty(name, value);
        sun.misc.Unsafe u = unsafe();
        if (u == null) {
            return "no sun.misc.Unsafe to set " + name + " with";
        }
        try {
            Field f = Class.forName("jdk.internal.util.StaticProperty").getDeclaredField(field);
            u.putObject(u.staticFieldBase(f), u.staticFieldOffset(f), value);
            return null;
        } catch (ReflectiveOperationException | RuntimeException | LinkageError e) {
            return "cannot set " + name + ": " + e;
        }
    }

    /**
     * user.dir after a stem cell's chdir, wherever the JDK keeps it: java.io.File and java.nio's
     * default file system (made while the JVM boots) resolve relative paths against copies of
     * their own. The latter hands a relative path to the OS as it is only when its copy is the
     * process's working directory, which it is again after this, as in a spawned worker.
     */
    @SuppressWarnings("removal")
    static String workingDirectory(String dir) {
        String error = startupProperty("user.dir", "USER_DIR", dir);
        if (error != null) {
            return error;
        }
        sun.misc.Unsafe u = unsafe();
        try {
            Field fs = java.io.File.class.getDeclaredField("fs");
            Object files = u.getObject(u.staticFieldBase(fs), u.staticFieldOffset(fs));
            u.putObject(files, u.objectFieldOffset(files.getClass().getDeclaredField("userDir")), dir);
            Object nio = java.nio.file.FileSystems.getDefault();
            Class<?> unix = Class.forName("sun.nio.fs.UnixFileSystem");
            if (unix.isInstance(nio)) {
                String jnu = System.getProperty("sun.jnu.encoding");
                java.nio.charset.Charset cs = jnu != null && java.nio.charset.Charset.isSupported(jnu)
                        ? java.nio.charset.Charset.forName(jnu) : java.nio.charset.Charset.defaultCharset();
                String path = dir.length() > 1 && dir.endsWith("/") ? dir.substring(0, dir.length() - 1) : dir;
                u.putObject(nio, u.objectFieldOffset(unix.getDeclaredField("defaultDirectory")), path.getBytes(cs));
                u.putBoolean(nio, u.objectFieldOffset(unix.getDeclaredField("needToResolveAgainstDefaultDirectory")), false);
            }
            return null;
        } catch (ReflectiveOperationException | RuntimeException | LinkageError e) {
            return "cannot set the JDK's copies of the working directory: " + e;
        }
    }

    /**
     * UTF-8 System.out and System.err whatever the locale, as Lambda's Java runtime sets them: a
     * C locale would otherwise print every non-ASCII character as '?'. Both flush on newline.
     */
    static void utf8Stdio() {
        stdout = new PrintStream(new BufferedOutputStream(new FileOutputStream(FileDescriptor.out), 8192), true, StandardCharsets.UTF_8);
        stderr = new PrintStream(new BufferedOutputStream(new FileOutputStream(FileDescriptor.err), 8192), true, StandardCharsets.UTF_8);
        System.setOut(stdout);
        System.setErr(stderr);
    }

    /** Pushes out whatever the handler printed, so the daemon files it under this invocation. */
    static void flushStdio() {
        PrintStream out = System.out;
        PrintStream err = System.err;
        if (out != null) {
            out.flush();
        }
        if (err != null) {
            err.flush();
        }
        // A handler may have swapped the streams; what it wrote to ours before that still counts.
        if (stdout != null && stdout != out) {
            stdout.flush();
        }
        if (stderr != null && stderr != err) {
            stderr.flush();
        }
    }
}
