package fnhost.shim;

import java.nio.charset.StandardCharsets;
import java.util.Map;
import java.util.TimeZone;

/**
 * A stem cell taking its function over (protos/worker-protocol.md, "Stem cells"): SPECIALISE's
 * identity, environment and working directory, before the handler loads as at INIT. Java has no
 * API for any of the three (nor for the C library's environ, where native code and the time zone
 * look), so the calls are made by a small JNI library, native/stem.c, which the prepare step
 * compiles into the cache. Only a cell loads it: runtime.toml's [stem_cell] argv names it in the
 * system property {@value #LIBRARY}, and a spawned worker, started without it, never does.
 */
final class Stem {
    private Stem() {
    }

    static final String LIBRARY = "fnhost.stem.library";

    /** Why the library could not be loaded; null once it is (or before {@link #preload}). */
    private static String unusable = "not loaded";

    /**
     * Loads the library while the cell waits for SPECIALISE, so that its cost is not the
     * function's. Does nothing in a spawned worker. A failure waits for SPECIALISE to report it.
     */
    static void preload() {
        String path = System.getProperty(LIBRARY);
        if (path == null || path.isEmpty()) {
            return;
        }
        try {
            System.load(path);
            unusable = null;
        } catch (LinkageError | RuntimeException e) {
            unusable = path + " could not be loaded (" + e.getMessage()
                    + "); the runtime's prepare step compiles it when a C compiler (cc) is on the daemon's PATH";
        }
    }

    /** Steps 1-3 of SPECIALISE; a failure names the step, and the worker must then exit. */
    static void specialise(Map<?, ?> spec) throws Failure {
        try {
            steps(spec);
        } catch (LinkageError | RuntimeException e) {
            // A library of another shim version than this jar's, say: nothing of the function ran.
            throw new Failure(Failure.SPECIALISE, "SPECIALISE failed: " + Failure.describe(e), Failure.trace(e));
        }
    }

    private static void steps(Map<?, ?> spec) throws Failure {
        if (unusable != null) {
            String path = System.getProperty(LIBRARY);
            throw new Failure(Failure.SPECIALISE, "SPECIALISE failed before step 1 (identity): " + (path == null || path.isEmpty()
                    ? "this worker was not started as a stem cell (no -D" + LIBRARY + "=.../libfnhost-stem.so)" : unusable));
        }
        Object identity = spec.get("identity");
        if (identity != null) {
            long uid = id(identity, "uid");
            long gid = id(identity, "gid");
            if (uid < 0 || gid < 0) {
                throw fail("1 (identity)", "\"identity\" is not {\"uid\": id, \"gid\": id}: " + identity);
            }
            // As uid_t and gid_t: an id over 2^31 passes through an int unchanged.
            check("1 (identity)", identity((int) uid, (int) gid));
            // What the JVM read from the passwd entry at start, as a spawned one does as this uid.
            String[] pw = user((int) uid);
            check("1 (identity)", Env.startupProperty("user.name", "USER_NAME", pw == null ? "?" : pw[0]));
            check("1 (identity)", Env.startupProperty("user.home", "USER_HOME", pw == null ? "?" : pw[1]));
        }
        Object env = spec.get("process_environment");
        if (!(env instanceof Map)) {
            throw fail("2 (environment)", "\"process_environment\" is not an object");
        }
        byte[][] entries = new byte[((Map<?, ?>) env).size()][];
        int i = 0;
        for (Map.Entry<?, ?> e : ((Map<?, ?>) env).entrySet()) {
            if (!(e.getValue() instanceof String)) {
                throw fail("2 (environment)", "the value of " + e.getKey() + " is not a string");
            }
            // UTF-8, as the daemon passes a spawned worker's environment to execve.
            entries[i++] = (e.getKey() + "=" + e.getValue()).getBytes(StandardCharsets.UTF_8);
        }
        check("2 (environment)", environment(entries));
        // TimeZone caches the zone it first read from TZ, and records it in user.timezone, which
        // it then prefers: both go, so the next use reads the new TZ as a fresh JVM would.
        System.clearProperty("user.timezone");
        TimeZone.setDefault(null);
        Object cwd = spec.get("cwd");
        if (!(cwd instanceof String) || ((String) cwd).isEmpty()) {
            throw fail("3 (working directory)", "\"cwd\" is not a path");
        }
        check("3 (working directory)", chdir(((String) cwd).getBytes(StandardCharsets.UTF_8)));
        check("3 (working directory)", Env.workingDirectory((String) cwd));
    }

    /** The id under {@code key}, or -1 if it is not one (-1 itself would mean "unchanged" to setresuid). */
    private static long id(Object identity, String key) {
        Object v = identity instanceof Map ? ((Map<?, ?>) identity).get(key) : null;
        return v instanceof Long && (Long) v >= 0 && (Long) v < 0xFFFFFFFFL ? (Long) v : -1;
    }

    private static void check(String step, String error) throws Failure {
        if (error != null) {
            throw fail(step, error);
        }
    }

    private static Failure fail(String step, String message) {
        return new Failure(Failure.SPECIALISE, "SPECIALISE step " + step + " failed: " + message);
    }

    /** setgroups(0), setresgid, setresuid, checked; null, or what failed with the OS error. */
    private static native String identity(int uid, int gid);

    /** Makes the C environ and System.getenv's map exactly these "NAME=value" entries; re-reads TZ. */
    private static native String environment(byte[][] entries);

    private static native String chdir(byte[] path);

    /** {name, home} of the uid's passwd entry, or null. */
    private static native String[] user(int uid);
}
