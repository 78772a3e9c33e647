package fnhost.shim;

import java.lang.reflect.Array;
import java.math.BigDecimal;
import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.util.Base64;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.RandomAccess;

/**
 * Serialises a handler's result as UTF-8 JSON into a ByteSink. Handles what the parser produces
 * plus the Java values a handler commonly returns: boxed primitives, BigInteger/BigDecimal,
 * arrays, Collections, Iterables, Optionals, enums (by name), byte[] (base64, as Jackson does),
 * java.time/UUID/URI values (by toString) and POJOs or records (see {@link Beans}).
 */
final class JsonWriter {
    /** A value with no JSON form; the message names the path inside the result. */
    static final class MarshalException extends Exception {
        private static final long serialVersionUID = 1L;
        final String path;
        final String reason;

        MarshalException(String path, String reason) {
            super(reason);
            this.path = path;
            this.reason = reason;
        }

        MarshalException under(String segment) {
            return new MarshalException(segment + path, reason);
        }

        @Override
        public String getMessage() {
            return "result at $" + path + ": " + reason;
        }
    }

    private static final byte[] HEX = "0123456789abcdef".getBytes(StandardCharsets.ISO_8859_1);

    private final ByteSink out;
    private final char[] chars = new char[8192];

    JsonWriter(ByteSink out) {
        this.out = out;
    }

    /** Writes {@code v}; a cyclic or absurdly deep value is reported instead of crashing. */
    void writeTop(Object v) throws MarshalException {
        try {
            write(v);
        } catch (StackOverflowError e) {
            throw new MarshalException("", "nested too deeply (is the value cyclic?)");
        }
    }

    /** Deeper than this is a cyclic value in practice; stop before the stack or heap runs out. */
    private static final int MAX_DEPTH = 1000;
    private int depth;

    void write(Object v) throws MarshalException {
        if (++depth > MAX_DEPTH) {
            depth = 0;
            throw new MarshalException("", "nested deeper than " + MAX_DEPTH + " levels (is the value cyclic?)");
        }
        try {
            writeValue(v);
        } finally {
            if (depth > 0) {
                depth--;
            }
        }
    }

    private void writeValue(Object v) throws MarshalException {
        if (v == null) {
            out.putAscii("null");
        } else if (v instanceof String) {
            string((String) v);
        } else if (v instanceof Map) {
            map((Map<?, ?>) v);
        } else if (v instanceof List && v instanceof RandomAccess) {
            List<?> l = (List<?>) v;
            out.put((byte) '[');
            for (int i = 0, n = l.size(); i < n; i++) {
                if (i > 0) {
                    out.put((byte) ',');
                }
                try {
                    write(l.get(i));
                } catch (MarshalException e) {
                    throw e.under("[" + i + "]");
                }
            }
            out.put((byte) ']');
        } else if (v instanceof Long || v instanceof Integer || v instanceof Short || v instanceof Byte) {
            longValue(((Number) v).longValue());
        } else if (v instanceof Boolean) {
            out.putAscii(((Boolean) v) ? "true" : "false");
        } else if (v instanceof Double || v instanceof Float) {
            double d = ((Number) v).doubleValue();
            if (Double.isNaN(d) || Double.isInfinite(d)) {
                throw new MarshalException("", d + " has no JSON representation");
            }
            if (d == (long) d && Math.abs(d) < 1e15 && (d != 0 || 1 / d > 0)) {
                // Whole numbers skip Double.toString, which is slow before JDK 19.
                longValue((long) d);
                out.putAscii(".0");
            } else {
                out.putAscii(v instanceof Float ? Float.toString((Float) v) : Double.toString(d));
            }
        } else {
            other(v);
        }
    }

    private void other(Object v) throws MarshalException {
        if (v instanceof BigInteger) {
            out.putAscii(v.toString());
        } else if (v instanceof BigDecimal) {
            out.putAscii(((BigDecimal) v).toString());
        } else if (v instanceof Number) {
            Number n = (Number) v;
            // AtomicLong, LongAdder and friends: integral when their double form says so.
            double d = n.doubleValue();
            if (d == Math.rint(d) && Math.abs(d) < 9.0e15) {
                longValue(n.longValue());
            } else {
                write(d);
            }
        } else if (v instanceof CharSequence || v instanceof Character) {
            string(v.toString());
        } else if (v instanceof Iterable) {
            iterable(((Iterable<?>) v).iterator());
        } else if (v instanceof Optional) {
            Optional<?> o = (Optional<?>) v;
            write(o.isPresent() ? o.get() : null);
        } else if (v instanceof Enum) {
            string(((Enum<?>) v).name());
        } else if (v instanceof byte[]) {
            string(Base64.getEncoder().encodeToString((byte[]) v));
        } else if (v instanceof char[]) {
            string(new String((char[]) v));
        } else if (v.getClass().isArray()) {
            array(v);
        } else if (v instanceof java.util.Date) {
            string(java.time.Instant.ofEpochMilli(((java.util.Date) v).getTime()).toString());
        } else if (Beans.isValueLike(v.getClass())) {
            string(v.toString());
        } else {
            Beans.writeBean(this, v);
        }
    }

    void map(Map<?, ?> m) throws MarshalException {
        out.put((byte) '{');
        boolean first = true;
        for (Map.Entry<?, ?> e : m.entrySet()) {
            if (!first) {
                out.put((byte) ',');
            }
            first = false;
            Object k = e.getKey();
            String key = k instanceof Enum ? ((Enum<?>) k).name() : String.valueOf(k);
            string(key);
            out.put((byte) ':');
            try {
                write(e.getValue());
            } catch (MarshalException x) {
                throw x.under("." + key);
            }
        }
        out.put((byte) '}');
    }

    /** The start of an object written member by member (POJOs); pairs with {@link #endObject}. */
    void member(boolean first, String key) {
        out.put(first ? (byte) '{' : (byte) ',');
        string(key);
        out.put((byte) ':');
    }

    void endObject(boolean empty) {
        if (empty) {
            out.put((byte) '{');
        }
        out.put((byte) '}');
    }

    private void iterable(Iterator<?> it) throws MarshalException {
        out.put((byte) '[');
        int i = 0;
        while (it.hasNext()) {
            if (i > 0) {
                out.put((byte) ',');
            }
            try {
                write(it.next());
            } catch (MarshalException e) {
                throw e.under("[" + i + "]");
            }
            i++;
        }
        out.put((byte) ']');
    }

    private void array(Object a) throws MarshalException {
        out.put((byte) '[');
        for (int i = 0, n = Array.getLength(a); i < n; i++) {
            if (i > 0) {
                out.put((byte) ',');
            }
            try {
                write(Array.get(a, i));
            } catch (MarshalException e) {
                throw e.under("[" + i + "]");
            }
        }
        out.put((byte) ']');
    }

    private void longValue(long v) {
        if (v == Long.MIN_VALUE) {
            out.putAscii("-9223372036854775808");
            return;
        }
        out.ensure(20);
        byte[] b = out.buf;
        int pos = out.len;
        if (v < 0) {
            b[pos++] = '-';
            v = -v;
        }
        int digits = 1;
        for (long t = v; t >= 10; t /= 10) {
            digits++;
        }
        int q = pos + digits;
        do {
            b[--q] = (byte) ('0' + (int) (v % 10));
            v /= 10;
        } while (v != 0);
        out.len = pos + digits;
    }

    /** Writes ASCII bytes as a JSON string, escaping quotes, backslashes and control characters. */
    private void ascii(byte[] u) {
        int n = u.length;
        int i = 0;
        while (i < n) {
            byte c = u[i];
            if (c < 0x20 || c == '"' || c == '\\') {
                break;
            }
            i++;
        }
        out.ensure(n + 2);
        byte[] b = out.buf;
        int pos = out.len;
        b[pos++] = '"';
        System.arraycopy(u, 0, b, pos, i);
        pos += i;
        for (; i < n; i++) {
            if (b.length - pos < 8) {
                out.len = pos;
                out.ensure(n - i + 8);
                b = out.buf;
            }
            byte c = u[i];
            if (c >= 0x20 && c != '"' && c != '\\') {
                b[pos++] = c;
                continue;
            }
            pos = escapeAscii(b, pos, (char) c);
        }
        if (pos == b.length) {
            out.len = pos;
            out.ensure(1);
            b = out.buf;
        }
        b[pos++] = '"';
        out.len = pos;
    }

    /** Writes the escape of a quote, backslash or control character at {@code pos}; returns the new end. */
    private static int escapeAscii(byte[] b, int pos, char ch) {
        b[pos++] = '\\';
        switch (ch) {
            case '"': b[pos++] = '"'; break;
            case '\\': b[pos++] = '\\'; break;
            case '\n': b[pos++] = 'n'; break;
            case '\r': b[pos++] = 'r'; break;
            case '\t': b[pos++] = 't'; break;
            case '\b': b[pos++] = 'b'; break;
            case '\f': b[pos++] = 'f'; break;
            default:
                b[pos++] = 'u';
                b[pos++] = '0';
                b[pos++] = '0';
                b[pos++] = HEX[ch >> 4];
                b[pos++] = HEX[ch & 0xF];
        }
        return pos;
    }

    /** Writes a JSON string: UTF-8, escaping only what JSON requires; lone surrogates as \\u escapes. */
    void string(String s) {
        int n = s.length();
        if (n >= 64) {
            // Long strings: the JDK's UTF-8 encoder is an intrinsic copy for ASCII text, and equal
            // lengths prove the text is ASCII (so free of surrogates, which it would replace).
            byte[] u = s.getBytes(StandardCharsets.UTF_8);
            if (u.length == n) {
                ascii(u);
                return;
            }
        }
        // The scratch array is kept for common sizes only: an idle worker should not hold a
        // copy of its largest string.
        char[] c = n <= chars.length ? chars : new char[n];
        s.getChars(0, n, c, 0);
        // Reserved as if ASCII; the loop grows the buffer when escapes or multi-byte chars need more.
        out.ensure(n + 2);
        byte[] b = out.buf;
        int pos = out.len;
        b[pos++] = '"';
        int i = 0;
        while (i < n) {
            // Room for the rest if it were all ASCII, plus one worst-case char and the closing quote.
            if (b.length - pos < 8) {
                out.len = pos;
                out.ensure((n - i) + 8);
                b = out.buf;
            }
            char ch = c[i++];
            if (ch < 0x80) {
                if (ch >= 0x20 && ch != '"' && ch != '\\') {
                    b[pos++] = (byte) ch;
                    continue;
                }
                pos = escapeAscii(b, pos, ch);
                continue;
            }
            // Multi-byte output can outgrow the ASCII-sized reservation: keep 6 bytes free per char.
            if (b.length - pos < 6 + (n - i)) {
                out.len = pos;
                out.ensure(6 + (n - i) * 3 + 1);
                b = out.buf;
            }
            if (ch < 0x800) {
                b[pos++] = (byte) (0xC0 | (ch >> 6));
                b[pos++] = (byte) (0x80 | (ch & 0x3F));
            } else if (Character.isHighSurrogate(ch) && i < n && Character.isLowSurrogate(c[i])) {
                int cp = Character.toCodePoint(ch, c[i++]);
                b[pos++] = (byte) (0xF0 | (cp >> 18));
                b[pos++] = (byte) (0x80 | ((cp >> 12) & 0x3F));
                b[pos++] = (byte) (0x80 | ((cp >> 6) & 0x3F));
                b[pos++] = (byte) (0x80 | (cp & 0x3F));
            } else if (Character.isSurrogate(ch)) {
                b[pos++] = '\\';
                b[pos++] = 'u';
                b[pos++] = HEX[ch >> 12];
                b[pos++] = HEX[(ch >> 8) & 0xF];
                b[pos++] = HEX[(ch >> 4) & 0xF];
                b[pos++] = HEX[ch & 0xF];
            } else {
                b[pos++] = (byte) (0xE0 | (ch >> 12));
                b[pos++] = (byte) (0x80 | ((ch >> 6) & 0x3F));
                b[pos++] = (byte) (0x80 | (ch & 0x3F));
            }
        }
        if (pos == b.length) {
            out.len = pos;
            out.ensure(1);
            b = out.buf;
        }
        b[pos++] = '"';
        out.len = pos;
    }
}
