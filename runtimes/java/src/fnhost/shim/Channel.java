package fnhost.shim;

import java.io.BufferedInputStream;
import java.io.FileDescriptor;
import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.util.ArrayDeque;

/**
 * The control channel of protos/worker-protocol.md: two inherited pipe fds carrying
 * length-prefixed frames. One thread (the control thread) reads every frame, so end of file is
 * seen even while a handler runs, and passes INIT/INVOKE to the handler thread through a mailbox.
 * Only the handler thread writes, after HELLO.
 */
final class Channel {
    static final int HELLO = 1;
    static final int INIT = 2;
    static final int INIT_OK = 3;
    static final int INIT_ERROR = 4;
    static final int INVOKE = 5;
    static final int RESULT = 6;
    static final int ERROR = 7;
    static final int SPECIALISE = 8;

    static final int MAX_FRAME = 16 * 1024 * 1024;

    /** One frame from the daemon; {@code body} is exactly the frame's body. */
    static final class Frame {
        final int kind;
        final byte[] body;

        Frame(int kind, byte[] body) {
            this.kind = kind;
            this.body = body;
        }
    }

    private final FileOutputStream out;
    private final InputStream in;
    private final ArrayDeque<Frame> mailbox = new ArrayDeque<>();

    private Channel(InputStream in, FileOutputStream out) {
        this.in = in;
        this.out = out;
    }

    /**
     * Adopts the two inherited fds. Without Unsafe (a future JDK) it falls back to reopening them
     * through /proc/self/fd, which works while the worker runs as the daemon's own user.
     */
    static Channel open(int inFd, int outFd) throws IOException {
        FileDescriptor in = Env.adopt(inFd);
        FileDescriptor out = Env.adopt(outFd);
        InputStream is = in != null ? new FileInputStream(in) : new FileInputStream("/proc/self/fd/" + inFd);
        FileOutputStream os = out != null ? new FileOutputStream(out) : new FileOutputStream("/proc/self/fd/" + outFd);
        return new Channel(new BufferedInputStream(is, 1 << 16), os);
    }

    /**
     * The most one read or write syscall moves. The JDK copies every FileInputStream and
     * FileOutputStream transfer above 8 KB through a malloc'd buffer of the full size; bounded
     * pieces keep a 5 MB payload from leaving megabytes of native heap behind in every worker.
     */
    static final int CHUNK = 64 * 1024;

    /** Writes a frame whose body is {@code buf[5 .. len)}; the five header bytes are filled in here. */
    void writeFrame(int kind, byte[] buf, int len) throws IOException {
        int n = len - 4;
        buf[0] = (byte) (n >>> 24);
        buf[1] = (byte) (n >>> 16);
        buf[2] = (byte) (n >>> 8);
        buf[3] = (byte) n;
        buf[4] = (byte) kind;
        for (int off = 0; off < len; off += CHUNK) {
            out.write(buf, off, Math.min(CHUNK, len - off));
        }
    }

    void writeFrame(int kind, byte[] body) throws IOException {
        byte[] buf = new byte[5 + body.length];
        System.arraycopy(body, 0, buf, 5, body.length);
        writeFrame(kind, buf, buf.length);
    }

    /** Reads frames until end of file, then ends the process: the daemon is gone. */
    void readLoop() {
        byte[] head = new byte[5];
        try {
            while (true) {
                if (!readFully(head, 0, 5, true)) {
                    break;
                }
                int length = ((head[0] & 0xFF) << 24) | ((head[1] & 0xFF) << 16) | ((head[2] & 0xFF) << 8) | (head[3] & 0xFF);
                if (length < 1 || length > MAX_FRAME) {
                    broken("frame length " + Integer.toUnsignedString(length) + " out of range");
                }
                int kind = head[4];
                if (kind != INIT && kind != INVOKE && kind != SPECIALISE) {
                    broken("unexpected frame kind " + kind);
                }
                byte[] body = new byte[length - 1];
                if (!readFully(body, 0, body.length, false)) {
                    break;
                }
                post(new Frame(kind, body));
            }
        } catch (IOException e) {
            // A read error on a pipe means the daemon end is unusable: same as end of file.
        }
        Runtime.getRuntime().halt(0);
    }

    private static void broken(String why) {
        System.err.println("fnhost java shim: control channel broken: " + why);
        System.err.flush();
        Runtime.getRuntime().halt(1);
    }

    private boolean readFully(byte[] b, int off, int len, boolean atBoundary) throws IOException {
        int done = 0;
        while (done < len) {
            int n = in.read(b, off + done, Math.min(CHUNK, len - done));
            if (n < 0) {
                if (!atBoundary || done > 0) {
                    System.err.println("fnhost java shim: control channel closed inside a frame");
                }
                return false;
            }
            done += n;
        }
        return true;
    }

    private void post(Frame f) {
        synchronized (mailbox) {
            mailbox.addLast(f);
            mailbox.notifyAll();
        }
    }

    /** The next INIT, SPECIALISE or INVOKE, waiting for it; an interrupt left behind by user code is ignored. */
    Frame take() {
        synchronized (mailbox) {
            while (mailbox.isEmpty()) {
                try {
                    mailbox.wait();
                } catch (InterruptedException e) {
                    // Not a request to stop: only end of file on the channel ends the worker.
                }
            }
            return mailbox.removeFirst();
        }
    }
}
