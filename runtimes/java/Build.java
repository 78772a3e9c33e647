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
 * The function's code is untrusted, and nothing of it runs here: both compiles pass -proc:none,
 * so an annotation processor in a jar on the class path (lib/*.jar) is never loaded — javac would
 * otherwise find it through META-INF/services and run it inside this build. Copies never follow
 * a symbolic link: a link to a file inside the code is copied as that file, and any other link
 * fails the build. fnhost runs this as the function's own uid besides (README: Security).
 */
public class Build {
    public static void main(String[] args) throws Exception {
        if (args.length < 4) {
            System.err.println("usage: java Build.java RUNTIME_DIR CODE_DIR BUILD_DIR HANDLER");
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

    private static void compileShim(Path src, Path build, Path jar) throws Exception {
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

    private static void compileHandler(Path code, Path root, Path source, Path build, Path shimJar) throws Exception {
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
    private static int javac(List<String> args) {
        JavaCompiler compiler = ToolProvider.getSystemJavaCompiler();
        if (compiler == null) {
            System.err.println("fnhost: this Java runtime has no compiler (jdk.compiler); install a JDK, not a JRE");
            return 1;
        }
        return compiler.run(null, System.out, System.err, args.toArray(new String[0]));
    }

    /** An uncompressed jar: the worker reads its classes at every start, and inflating costs time. */
    private static void writeJar(Path classes, Path jar) throws IOException {
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

    private static void deleteTree(Path p) throws IOException {
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
