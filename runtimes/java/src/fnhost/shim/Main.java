package fnhost.shim;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;

/**
 * The fnhost worker for Java (protos/worker-protocol.md). HELLO goes out before anything of the
 * user's is touched, and before most of the shim is loaded: this class stays small so that the
 * JVM verifies little before it runs. The main thread then becomes the control thread reading
 * frames (and ending the process at end of file), while a {@link Worker} thread named "main"
 * runs INIT and the invocations.
 */
public final class Main {
    private Main() {
    }

    public static void main(String[] args) {
        String fds = System.getenv(Env.CONTROL_FDS);
        int comma = fds == null ? -1 : fds.indexOf(',');
        if (comma < 0) {
            System.err.println("fnhost java shim: " + Env.CONTROL_FDS + " is not set to \"<in>,<out>\"; the fnhost daemon starts this program");
            System.exit(2);
        }
        Channel ch;
        try {
            ch = Channel.open(Integer.parseInt(fds.substring(0, comma).trim()), Integer.parseInt(fds.substring(comma + 1).trim()));
            String hello = "{\"protocol\":3,\"runtime\":\"java\",\"runtime_version\":\"" + System.getProperty("java.version")
                    + "\",\"pid\":" + pid() + "}";
            ch.writeFrame(Channel.HELLO, hello.getBytes(StandardCharsets.UTF_8));
        } catch (IOException | NumberFormatException e) {
            System.err.println("fnhost java shim: cannot use the control fds " + fds + ": " + e);
            System.exit(2);
            return;
        }
        Thread.currentThread().setName("fnhost-control");
        Thread handler = new Thread(null, new Worker(ch), "main", Worker.STACK);
        handler.start();
        ch.readLoop();
    }

    /**
     * This process's id from /proc/self. ProcessHandle.current() would start the JDK's process
     * reaper machinery (executors, lambdas), which costs the HELLO milliseconds.
     */
    private static long pid() throws IOException {
        try {
            return Long.parseLong(new File("/proc/self").getCanonicalFile().getName());
        } catch (NumberFormatException e) {
            return ProcessHandle.current().pid();
        }
    }
}
