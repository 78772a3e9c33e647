package fnhost.shim;

import java.io.OutputStream;

/**
 * A growable byte buffer that keeps room for a frame header at its front, so a RESULT or ERROR
 * body is produced in place and leaves in one write without being copied. It is also the
 * OutputStream a stream handler writes its response into.
 */
final class ByteSink extends OutputStream {
    /** Past this size the buffer is dropped after use, so one 5 MB reply is not held forever. */
    private static final int KEEP_LIMIT = 1 << 20;

    byte[] buf;
    int len;
    /** Bytes at the front reserved for the frame header and request id. */
    int start;

    ByteSink(int capacity) {
        buf = new byte[capacity];
    }

    /** Empties the buffer, reserving {@code prefix} bytes for the header that is filled in later. */
    void reset(int prefix) {
        if (buf.length < prefix) {
            buf = new byte[prefix + 8192];
        }
        start = prefix;
        len = prefix;
    }

    /** Called once a frame is sent: an idle worker should not hold on to its largest reply. */
    void trim() {
        if (buf.length > KEEP_LIMIT) {
            buf = new byte[8192];
            len = 0;
            start = 0;
        }
    }

    int size() {
        return len - start;
    }

    void ensure(int extra) {
        int need = len + extra;
        if (need > buf.length) {
            grow(need);
        }
    }

    private void grow(int need) {
        long cap = Math.max((long) buf.length * 2, need);
        if (cap > Integer.MAX_VALUE - 8) {
            if (need > Integer.MAX_VALUE - 8) {
                throw new OutOfMemoryError("response larger than 2 GB");
            }
            cap = Integer.MAX_VALUE - 8;
        }
        byte[] next = new byte[(int) cap];
        System.arraycopy(buf, 0, next, 0, len);
        buf = next;
    }

    void put(byte b) {
        if (len == buf.length) {
            grow(len + 1);
        }
        buf[len++] = b;
    }

    /** Appends a string known to be ASCII (numbers, literals, fixed keys). */
    void putAscii(String s) {
        int n = s.length();
        ensure(n);
        byte[] b = buf;
        int at = len;
        for (int i = 0; i < n; i++) {
            b[at + i] = (byte) s.charAt(i);
        }
        len = at + n;
    }

    @Override
    public void write(int b) {
        put((byte) b);
    }

    @Override
    public void write(byte[] b, int off, int n) {
        if ((off | n) < 0 || n > b.length - off) {
            throw new IndexOutOfBoundsException();
        }
        ensure(n);
        System.arraycopy(b, off, buf, len, n);
        len += n;
    }
}
