import java.io.File;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.file.FileVisitResult;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.SimpleFileVisitor;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.BasicFileAttributes;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.jar.JarEntry;
import java.util.jar.JarOutputStream;
import java.util.stream.Stream;
import java.util.zip.CRC32;
import java.util.zip.ZipEntry;
import javax.tools.JavaCompiler;
import javax.tools.ToolProvider;

/**
 * fnhost's build step for Java functions, run at deploy by the JDK's source launcher:
 *
 *   java Build.java RUNTIME_DIR CODE_DIR BUILD_DIR HANDLER
 *
 * 1. Compiles the shim (RUNTIME_DIR/src) into BUILD_DIR/fnhost-shim.jar. The runtime folder may
 *    be read-only (an installed wheel), so nothing is written there; the daemon caches the build.
 * 2. If the handler's class exists as source — CODE_DIR/src/main/java, CODE_DIR/src or CODE_DIR
 *    itself, in that order — compiles it into BUILD_DIR/classes. javac follows the source path,
 *    so every class the handler refers to is compiled too, and a source that nothing reaches
 *    (another function's broken file, say) does not fail this function's deploy. Classes loaded
 *    only by name (Class.forName, ServiceLoader) must be reachable or shipped compiled.
 *    A compile error fails the deploy with javac's messages. Handlers shipped compiled (classes
 *    at the root, jars at the root or in lib/, or a fat jar) need no compile step.
 * Only BUILD_DIR is written.
 *
 *   java Build.java --prepare RUNTIME_DIR CACHE_DIR
 *
 * is the runtime's prepare step instead (see {@link Prepare}): the shim's class-data archive.
 *
 * The function's code is untrusted, and nothing of it runs here: both compiles pass -proc:none,
 * so an annotation processor in a jar on the class path (lib/*.jar) is never loaded — javac would
 * otherwise find it through META-INF/services and run it inside this build. Copies never follow
 * a symbolic link: a link to a file inside the code is copied as that file, and any other link
 * fails the build. fnhost runs this as the function's own uid besides (README: Security).
 */
public class Build {
    public static void main(String[] args) throws Exception {
        if (args.length == 3 && args[0].equals("--prepare")) {
            Prepare.run(Path.of(args[1]), Path.of(args[2]));
            return;
        }
        if (args.length < 4) {
            System.err.println("usage: java Build.java RUNTIME_DIR CODE_DIR BUILD_DIR HANDLER, or --prepare RUNTIME_DIR CACHE_DIR");
            System.exit(2);
        }
        Path runtime = Path.of(args[0]);
        Path code = Path.of(args[1]);
        Path build = Path.of(args[2]);
        String handler = args[3];
        Files.createDirectories(build);

        Path shimJar = build.resolve("fnhost-shim.jar");
        compileShim(runtime.resolve("src"), build, shimJar);

        String className = handler.contains("::") ? handler.substring(0, handler.indexOf("::")) : handler;
        String outer = className.contains("$") ? className.substring(0, className.indexOf('$')) : className;
        String rel = outer.replace('.', File.separatorChar) + ".java";
        for (Path root : new Path[] {code.resolve("src/main/java"), code.resolve("src"), code}) {
            Path source = root.resolve(rel);
            if (Files.isRegularFile(source)) {
                compileHandler(code, root, source, build, shimJar);
                return;
            }
        }
        System.out.println("fnhost: no source for " + className + " (looked for " + rel
                + " under src/main/java, src and the code root); the function runs the classes and jars it ships");
    }

    static void compileShim(Path src, Path build, Path jar) throws Exception {
        List<String> sources = new ArrayList<>();
        try (Stream<Path> s = Files.walk(src)) {
            s.filter(p -> p.toString().endsWith(".java")).sorted().forEach(p -> sources.add(p.toString()));
        }
        Path classes = Files.createTempDirectory(build, ".shim-classes");
        try {
            List<String> cmd = new ArrayList<>(List.of(
                    "-d", classes.toString(), "-encoding", "UTF-8", "-g:source,lines", "-proc:none", "-nowarn",
                    // Env uses sun.misc.Unsafe on purpose; this keeps javac from warning about it.
                    "-XDignore.symbol.file",
                    // Plain StringBuilder concatenation: invokedynamic concat costs start-up time.
                    "-XDstringConcat=inline"));
            cmd.addAll(sources);
            if (javac(cmd) != 0) {
                System.err.println("fnhost: compiling the Java shim from " + src + " failed (this is a bug in fnhost or a JDK older than 17)");
                System.exit(1);
            }
            writeJar(classes, jar);
        } finally {
            deleteTree(classes);
        }
    }

    static void compileHandler(Path code, Path root, Path source, Path build, Path shimJar) throws Exception {
        Path classes = build.resolve("classes");
        deleteTree(classes);
        Files.createDirectories(classes);
        StringBuilder cp = new StringBuilder(shimJar.toString());
        cp.append(File.pathSeparator).append(code);
        for (Path dir : new Path[] {code, code.resolve("lib")}) {
            for (Path j : jars(dir)) {
                cp.append(File.pathSeparator).append(j);
            }
        }
        List<String> cmd = new ArrayList<>(List.of(
                "-d", classes.toString(), "-sourcepath", root.toString(), "-cp", cp.toString(),
                "-proc:none", "-encoding", "UTF-8", "-g", "-parameters", "-Xmaxerrs", "20", source.toString()));
        if (javac(cmd) != 0) {
            System.err.println("fnhost: javac could not compile " + code.relativize(source) + " (errors above); the deploy is refused");
            System.exit(1);
        }
        // Maven layout: resources sit beside the sources and belong on the classpath with them.
        Path resources = code.resolve("src/main/resources");
        if (root.equals(code.resolve("src/main/java")) && Files.isDirectory(resources, LinkOption.NOFOLLOW_LINKS)) {
            copyTree(code, resources, classes);
        }
        System.out.println("fnhost: compiled " + code.relativize(source) + " and the sources it uses into " + classes);
    }

    private static List<Path> jars(Path dir) throws IOException {
        List<Path> out = new ArrayList<>();
        if (Files.isDirectory(dir)) {
            try (Stream<Path> s = Files.list(dir)) {
                s.filter(p -> p.toString().endsWith(".jar") && Files.isRegularFile(p)).sorted().forEach(out::add);
            }
        }
        return out;
    }

    /** The JDK's compiler, in this process: a second JVM start would cost about a second. */
    static int javac(List<String> args) {
        JavaCompiler compiler = ToolProvider.getSystemJavaCompiler();
        if (compiler == null) {
            System.err.println("fnhost: this Java runtime has no compiler (jdk.compiler); install a JDK, not a JRE");
            return 1;
        }
        return compiler.run(null, System.out, System.err, args.toArray(new String[0]));
    }

    /** An uncompressed jar: the worker reads its classes at every start, and inflating costs time. */
    static void writeJar(Path classes, Path jar) throws IOException {
        Path tmp = jar.resolveSibling(jar.getFileName() + ".tmp");
        List<Path> files = new ArrayList<>();
        try (Stream<Path> s = Files.walk(classes)) {
            s.filter(Files::isRegularFile).sorted().forEach(files::add);
        }
        try (OutputStream os = Files.newOutputStream(tmp); JarOutputStream out = new JarOutputStream(os)) {
            for (Path f : files) {
                byte[] data = Files.readAllBytes(f);
                JarEntry e = new JarEntry(classes.relativize(f).toString().replace(File.separatorChar, '/'));
                e.setMethod(ZipEntry.STORED);
                e.setSize(data.length);
                e.setCompressedSize(data.length);
                CRC32 crc = new CRC32();
                crc.update(data);
                e.setCrc(crc.getValue());
                e.setTime(0);
                out.putNextEntry(e);
                out.write(data);
                out.closeEntry();
            }
        }
        Files.move(tmp, jar, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    }

    /**
     * Copies FROM into TO without following a symbolic link (the walk does not descend into
     * linked directories, and files are copied with NOFOLLOW_LINKS). A link is copied as the file
     * it names only when that file is a regular one inside CODE; any other link fails the build,
     * naming it: a link to /etc/shadow, say, must not become readable build output.
     */
    private static void copyTree(Path code, Path from, Path to) throws IOException {
        Path realCode = code.toRealPath();
        Files.walkFileTree(from, new SimpleFileVisitor<Path>() {
            @Override
            public FileVisitResult preVisitDirectory(Path dir, BasicFileAttributes attrs) throws IOException {
                Files.createDirectories(to.resolve(from.relativize(dir).toString()));
                return FileVisitResult.CONTINUE;
            }

            @Override
            public FileVisitResult visitFile(Path file, BasicFileAttributes attrs) throws IOException {
                Path target = to.resolve(from.relativize(file).toString());
                Path source = file;
                if (attrs.isSymbolicLink()) {
                    Path real;
                    try {
                        real = file.toRealPath();
                    } catch (IOException e) {
                        real = null;
                    }
                    if (real == null || !real.startsWith(realCode)
                            || !Files.isRegularFile(real, LinkOption.NOFOLLOW_LINKS)) {
                        System.err.println("fnhost: " + code.relativize(file) + " is a symbolic link to "
                                + Files.readSymbolicLink(file) + ", which is not a file inside the function's code;"
                                + " copy the file into the code instead (a build never follows links out of it)");
                        System.exit(1);
                    }
                    source = real;
                } else if (!attrs.isRegularFile()) {
                    return FileVisitResult.CONTINUE; // a FIFO or socket: not a resource
                }
                Files.copy(source, target, StandardCopyOption.REPLACE_EXISTING, LinkOption.NOFOLLOW_LINKS);
                return FileVisitResult.CONTINUE;
            }
        });
    }

    static void deleteTree(Path p) throws IOException {
        if (!Files.exists(p)) {
            return;
        }
        try (Stream<Path> s = Files.walk(p)) {
            for (Path q : (Iterable<Path>) s.sorted(Comparator.reverseOrder())::iterator) {
                Files.delete(q);
            }
        }
    }
}

/**
 * The runtime's prepare step ({@code [build] prepare_argv}): a class-data sharing archive of the
 * shim, built once per host and JDK, that every worker maps instead of loading, parsing and
 * verifying those classes (README.md: Start-up). It runs as the daemon's own user, umask 022, on
 * trusted inputs only: this runtime folder (the shim's sources, the example function it trains
 * on) and the JDK. It writes into CACHE_DIR, which only that user may write:
 *
 * - fnhost-shim.jar: the shim, compiled as every build compiles it. Workers list it first on their
 *   class path, their build's own copy after it: a CDS archive holds application classes only
 *   for the jar path it was made with, and builds live at a path of their own each.
 * - shim.jsa: a dynamic archive (-XX:ArchiveClassesAtExit) on top of the JDK's default one, made
 *   by a worker that serves the example function INIT and a few INVOKEs over its control pipes.
 * - shim.key: the JDK and the sources (shim, this file, the example) the two were made from.
 * - libfnhost-stem.so and libfnhost-stem.key: the stem cell's native half (native/stem.c, see
 *   {@link #stemLibrary}) and the source and JDK it was compiled from.
 * - .prepare.lock: held while this step runs.
 *
 * Each file is replaced by an atomic rename, the archive only after a JVM started with
 * -Xshare:on accepted it (a truncated archive crashes the JVM that maps it); an archive the key
 * calls up to date is checked so too. Prepares of several daemons take turns (a file lock).
 * A JVM refuses an archive made by another JDK build or for another jar (size, mtime), and then
 * runs on the JDK's default archive: an upgrade costs speed until the next prepare, never a worker.
 */
final class Prepare {
    private static final String HANDLER = "hello.Hello::handleRequest";
    private static final byte[] PAYLOAD = "{\"name\":\"Ada\"}".getBytes(java.nio.charset.StandardCharsets.UTF_8);
    private static final int INVOKES = 3;

    private Prepare() {
    }

    static void run(Path runtime, Path cache) throws Exception {
        Files.createDirectories(cache);
        // Root daemons on one host share the cache: one prepare at a time, the others then find
        // it up to date. The lock goes with this process, however it ends.
        try (java.nio.channels.FileChannel lock = java.nio.channels.FileChannel.open(cache.resolve(".prepare.lock"),
                java.nio.file.StandardOpenOption.CREATE, java.nio.file.StandardOpenOption.WRITE)) {
            lock.lock();
            Exception library = null;
            try {
                stemLibrary(runtime, cache);
            } catch (Exception e) {
                library = e; // the archive is made all the same; the step fails afterwards
            }
            prepare(runtime, cache);
            if (library != null) {
                throw library;
            }
        }
    }

    /**
     * {@code libfnhost-stem.so}: what a stem cell (runtime.toml's [stem_cell]) needs to become a
     * function's worker, compiled when the source or the JDK changed and a C compiler ({@code cc})
     * is on PATH. Without a compiler there is none, and each cell answers SPECIALISE with
     * Runtime.SpecialiseError (the daemon then starts that worker another way). Like the archive,
     * it is replaced only by an atomic rename, so a cell never loads a half-written one.
     */
    private static void stemLibrary(Path runtime, Path cache) throws Exception {
        Path source = runtime.resolve("native/stem.c");
        Path library = cache.resolve("libfnhost-stem.so");
        Path keyFile = cache.resolve("libfnhost-stem.key");
        Path home = Path.of(System.getProperty("java.home"));
        java.security.MessageDigest md = java.security.MessageDigest.getInstance("SHA-256");
        md.update(Files.readAllBytes(source));
        String key = home + "\nstem.c sha256 " + java.util.HexFormat.of().formatHex(md.digest()) + "\n";
        if (Files.isRegularFile(library) && Files.isRegularFile(keyFile) && Files.readString(keyFile).equals(key)) {
            return;
        }
        // A library of an older shim beside the new shim's jar would only fail its cells' SPECIALISE.
        Files.deleteIfExists(keyFile);
        Files.deleteIfExists(library);
        String cc = null;
        for (String dir : System.getenv().getOrDefault("PATH", "").split(File.pathSeparator)) {
            if (!dir.isEmpty() && Files.isExecutable(Path.of(dir, "cc"))) {
                cc = Path.of(dir, "cc").toString();
                break;
            }
        }
        if (cc == null) {
            System.out.println("fnhost: no C compiler (cc) on PATH: Java stem cells cannot specialise; workers are spawned");
            return;
        }
        Path made = Files.createTempFile(cache, ".libfnhost-stem", ".so");
        try {
            Process p = new ProcessBuilder(cc, "-O2", "-Wall", "-shared", "-fPIC", "-I" + home.resolve("include"),
                    "-I" + home.resolve("include/linux"), "-o", made.toString(), source.toString()).inheritIO().start();
            if (!p.waitFor(120, java.util.concurrent.TimeUnit.SECONDS)) {
                p.destroyForcibly();
                throw new IOException(cc + " took over 120 s to compile " + source);
            }
            if (p.exitValue() != 0) {
                throw new IOException(cc + " could not compile " + source + " (status " + p.exitValue() + ", output above)");
            }
            made.toFile().setReadable(true, false); // loaded by cells that become other uids
            Files.move(made, library, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
            Path tmp = Files.createTempFile(cache, ".libfnhost-stem", ".key");
            Files.writeString(tmp, key);
            tmp.toFile().setReadable(true, false);
            Files.move(tmp, keyFile, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        } finally {
            Files.deleteIfExists(made);
        }
        System.out.println("fnhost: compiled the Java stem cell library " + library);
    }

    private static void prepare(Path runtime, Path cache) throws Exception {
        Path jar = cache.resolve("fnhost-shim.jar");
        Path archive = cache.resolve("shim.jsa");
        Path keyFile = cache.resolve("shim.key");
        String key = key(runtime);
        if (Files.isRegularFile(jar) && Files.isRegularFile(archive) && Files.isRegularFile(keyFile)
                && Files.readString(keyFile).equals(key)) {
            try {
                verify(archive, jar); // the jar touched since, say: then it is made again
                System.out.println("fnhost: the Java shim's CDS archive in " + cache + " is up to date");
                return;
            } catch (IOException e) {
                System.out.println("fnhost: making the Java shim's CDS archive again: " + e.getMessage());
            }
        }
        // Until new ones are in place, workers use the JDK's archive and their build's jar: never
        // an old shim beside a new build, should this step fail half way.
        Files.deleteIfExists(keyFile);
        Files.deleteIfExists(archive);
        Files.deleteIfExists(jar);
        Path work = Files.createTempDirectory(cache, ".training");
        try {
            Path made = work.resolve("fnhost-shim.jar");
            Build.compileShim(runtime.resolve("src"), work, made);
            Files.move(made, jar, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
            Path example = runtime.resolve("example");
            Build.compileHandler(example, example, example.resolve("hello/Hello.java"), work, jar);
            made = work.resolve("shim.jsa");
            train(jar, made, work);
            verify(made, jar);
            made.toFile().setReadable(true, false); // the JVM writes it 0400; workers run as other uids
            Files.move(made, archive, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
            Path tmp = work.resolve("shim.key");
            Files.writeString(tmp, key);
            Files.move(tmp, keyFile, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        } finally {
            Build.deleteTree(work);
        }
        System.out.println("fnhost: wrote the Java shim's CDS archive " + archive + " (" + Files.size(archive) + " bytes)");
    }

    /**
     * What the archive depends on: this exact JDK (its version, home and modules), the shim's
     * sources, and this file and the example, which make the training run.
     */
    private static String key(Path runtime) throws Exception {
        Path src = runtime.resolve("src");
        java.security.MessageDigest md = java.security.MessageDigest.getInstance("SHA-256");
        Path home = Path.of(System.getProperty("java.home"));
        Path modules = home.resolve("lib/modules");
        String jdk = System.getProperty("java.vm.name") + " " + System.getProperty("java.vm.version") + " " + home
                + " " + (Files.exists(modules) ? Files.size(modules) + "@" + Files.getLastModifiedTime(modules) : "");
        md.update(jdk.getBytes(java.nio.charset.StandardCharsets.UTF_8));
        List<Path> sources = new ArrayList<>();
        try (Stream<Path> s = Files.walk(src)) {
            s.filter(p -> p.toString().endsWith(".java")).sorted().forEach(sources::add);
        }
        sources.add(runtime.resolve("Build.java"));
        sources.add(runtime.resolve("example/hello/Hello.java"));
        for (Path p : sources) {
            md.update(runtime.relativize(p).toString().getBytes(java.nio.charset.StandardCharsets.UTF_8));
            md.update(Files.readAllBytes(p));
        }
        return jdk + "\nshim sha256 " + java.util.HexFormat.of().formatHex(md.digest()) + "\n";
    }

    private static String java() {
        return Path.of(System.getProperty("java.home"), "bin", "java").toString();
    }

    /**
     * Starts the shim as the daemon would, with -XX:ArchiveClassesAtExit, and drives it through
     * HELLO, INIT and a few INVOKEs of the example; closing its input ends it, and the JVM writes
     * the archive on its way out. ProcessBuilder gives a child only fds 0-2, so the control
     * channel is stdin and stderr (FNHOST_CONTROL_FDS=0,2); stdout, the function's log, is dropped.
     */
    private static void train(Path jar, Path archive, Path work) throws Exception {
        Path code = Files.createDirectories(work.resolve("code"));
        ProcessBuilder pb = new ProcessBuilder(java(), "-XX:+UseG1GC", "-XX:-UsePerfData", "-Xshare:auto",
                "-XX:ArchiveClassesAtExit=" + archive, "-Dsun.misc.unsafe.memory.access=allow",
                "-cp", jar.toString(), "fnhost.shim.Main");
        pb.directory(code.toFile());
        pb.redirectOutput(ProcessBuilder.Redirect.DISCARD);
        java.util.Map<String, String> env = pb.environment();
        env.keySet().retainAll(List.of("PATH", "LANG", "HOME", "TMPDIR"));
        env.put("FNHOST_CONTROL_FDS", "0,2");
        env.put("FNHOST_BUILD_DIR", work.toString());
        env.put("TZ", ":UTC");
        Process p = pb.start();
        try (OutputStream in = p.getOutputStream(); java.io.InputStream out = p.getErrorStream()) {
            expect(out, 1, "HELLO");
            String init = "{\"handler\":\"" + HANDLER + "\",\"code_dir\":\"" + code + "\",\"build_dir\":\"" + work
                    + "\",\"function_name\":\"fnhost-cds-training\",\"function_version\":\"$LATEST\",\"memory_mb\":128,"
                    + "\"timeout_s\":60,\"environment\":{}}";
            frame(in, 2, init.getBytes(java.nio.charset.StandardCharsets.UTF_8));
            expect(out, 3, "INIT_OK");
            for (int i = 0; i < INVOKES; i++) {
                byte[] id = ("cds-training-" + i).getBytes(java.nio.charset.StandardCharsets.US_ASCII);
                java.nio.ByteBuffer b = java.nio.ByteBuffer.allocate(1 + id.length + 8 + 4 + PAYLOAD.length);
                b.put((byte) id.length).put(id).putLong(System.currentTimeMillis() + 60_000).putInt(0).put(PAYLOAD);
                frame(in, 5, b.array());
                expect(out, 6, "RESULT");
            }
        } // end of file on its input: the shim exits, and the JVM dumps the archive
        if (!p.waitFor(120, java.util.concurrent.TimeUnit.SECONDS)) {
            p.destroyForcibly();
            throw new IOException("the training worker did not exit within 120 s");
        }
        if (p.exitValue() != 0 || !Files.isRegularFile(archive)) {
            throw new IOException("the training worker exited with status " + p.exitValue() + " and no archive");
        }
    }

    private static void frame(OutputStream out, int kind, byte[] body) throws IOException {
        java.nio.ByteBuffer b = java.nio.ByteBuffer.allocate(5 + body.length);
        b.putInt(body.length + 1).put((byte) kind).put(body);
        out.write(b.array());
        out.flush();
    }

    private static void expect(java.io.InputStream in, int kind, String name) throws IOException {
        byte[] head = in.readNBytes(5);
        if (head.length < 5) {
            throw new IOException("the training worker closed its control channel before " + name);
        }
        int length = java.nio.ByteBuffer.wrap(head, 0, 4).getInt();
        if (length < 1 || length > (1 << 24)) {
            throw new IOException("the training worker sent a frame of " + length + " bytes before " + name);
        }
        byte[] body = in.readNBytes(length - 1);
        if (head[4] != kind) {
            throw new IOException("the training worker answered frame kind " + head[4] + " instead of " + name + ": "
                    + new String(body, java.nio.charset.StandardCharsets.UTF_8));
        }
    }

    /** A JVM that must map the archive (-Xshare:on) starts the shim; the shim, with no control fds, exits 2. */
    private static void verify(Path archive, Path jar) throws Exception {
        ProcessBuilder pb = new ProcessBuilder(java(), "-XX:+UseG1GC", "-XX:-UsePerfData", "-Xshare:on",
                "-XX:SharedArchiveFile=" + archive, "-cp", jar.toString(), "fnhost.shim.Main");
        pb.redirectErrorStream(true);
        pb.environment().remove("FNHOST_CONTROL_FDS");
        Process p = pb.start();
        String output = new String(p.getInputStream().readAllBytes(), java.nio.charset.StandardCharsets.UTF_8);
        if (!p.waitFor(60, java.util.concurrent.TimeUnit.SECONDS)) {
            p.destroyForcibly();
            throw new IOException("checking the new archive took over 60 s");
        }
        if (p.exitValue() != 2) {
            throw new IOException("a JVM could not use the archive (status " + p.exitValue() + "): " + output);
        }
    }
}
