package fnhost.shim;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;

/**
 * A strict JSON parser (RFC 8259) reading UTF-8 bytes straight from the frame, so an event is
 * never first decoded into a String. Objects become LinkedHashMap (key order kept, the last
 * duplicate wins), arrays ArrayList, integers Long (BigInteger past 64 bits), other numbers
 * Double (BigDecimal past its range), true/false Boolean, null null.
 */
final class Json {
    /** The text is not JSON; the message says what was found where. */
    static final class SyntaxError extends Exception {
        private static final long serialVersionUID = 1L;

        SyntaxError(String message) {
            super(message);
        }
    }

    private final byte[] b;
    private final int end;
    private int p;
    private char[] chars = new char[64];

    private Json(byte[] b, int off, int len) {
        this.b = b;
        this.p = off;
        this.end = off + len;
    }

    /** Parses the whole range; an empty or blank range is JSON null, as Lambda treats an empty event. */
    static Object parse(byte[] b, int off, int len) throws SyntaxError {
        Json j = new Json(b, off, len);
        // A leading byte-order mark is tolerated: some clients add one even though JSON forbids it.
        if (len >= 3 && (b[off] & 0xFF) == 0xEF && (b[off + 1] & 0xFF) == 0xBB && (b[off + 2] & 0xFF) == 0xBF) {
            j.p += 3;
        }
        j.skipWs();
        if (j.p == j.end) {
            return null;
        }
        Object v;
        try {
            v = j.value();
        } catch (StackOverflowError e) {
            throw new SyntaxError("JSON nested too deeply to parse");
        }
        j.skipWs();
        if (j.p != j.end) {
            throw j.error("unexpected data after the JSON value");
        }
        return v;
    }

    static Object parse(byte[] b) throws SyntaxError {
        return parse(b, 0, b.length);
    }

    private SyntaxError error(String what) {
        return new SyntaxError(what + " at byte " + p);
    }

    private SyntaxError unexpected(String expected) {
        if (p >= end) {
            return new SyntaxError("unexpected end of JSON input, expected " + expected);
        }
        int c = b[p] & 0xFF;
        String seen = c >= 0x20 && c < 0x7F ? "'" + (char) c + "'" : String.format("byte 0x%02x", c);
        return error("unexpected " + seen + ", expected " + expected);
    }

    private void skipWs() {
        while (p < end) {
            byte c = b[p];
            if (c == ' ' || c == '\n' || c == '\r' || c == '\t') {
                p++;
            } else {
                return;
            }
        }
    }

    private Object value() throws SyntaxError {
        if (p >= end) {
            throw unexpected("a value");
        }
        switch (b[p]) {
            case '{':
                return object();
            case '[':
                return array();
            case '"':
                return string();
            case 't':
                literal("true");
                return Boolean.TRUE;
            case 'f':
                literal("false");
                return Boolean.FALSE;
            case 'n':
                literal("null");
                return null;
            default:
                return number();
        }
    }

    private void literal(String word) throws SyntaxError {
        int n = word.length();
        if (end - p < n) {
            throw unexpected("'" + word + "'");
        }
        for (int i = 0; i < n; i++) {
            if (b[p + i] != word.charAt(i)) {
                throw error("invalid literal, expected '" + word + "'");
            }
        }
        p += n;
    }

    private LinkedHashMap<String, Object> object() throws SyntaxError {
        p++;
        LinkedHashMap<String, Object> m = new LinkedHashMap<>();
        skipWs();
        if (p < end && b[p] == '}') {
            p++;
            return m;
        }
        while (true) {
            skipWs();
            if (p >= end || b[p] != '"') {
                throw unexpected("a string key");
            }
            String key = string();
            skipWs();
            if (p >= end || b[p] != ':') {
                throw unexpected("':'");
            }
            p++;
            skipWs();
            m.put(key, value());
            skipWs();
            if (p < end) {
                byte c = b[p++];
                if (c == ',') {
                    continue;
                }
                if (c == '}') {
                    return m;
                }
                p--;
            }
            throw unexpected("',' or '}'");
        }
    }

    private ArrayList<Object> array() throws SyntaxError {
        p++;
        ArrayList<Object> a = new ArrayList<>();
        skipWs();
        if (p < end && b[p] == ']') {
            p++;
            return a;
        }
        while (true) {
            skipWs();
            a.add(value());
            skipWs();
            if (p < end) {
                byte c = b[p++];
                if (c == ',') {
                    continue;
                }
                if (c == ']') {
                    return a;
                }
                p--;
            }
            throw unexpected("',' or ']'");
        }
    }

    private String string() throws SyntaxError {
        int start = ++p;
        // Fast path: printable ASCII without escapes becomes a Latin-1 string by a plain copy.
        while (p < end) {
            int c = b[p];
            if (c == '"') {
                String s = new String(b, start, p - start, StandardCharsets.ISO_8859_1);
                p++;
                return s;
            }
            if (c == '\\' || c < 0x20) {
                break;
            }
            p++;
        }
        return slowString(start);
    }

    private void room(int n, int need) {
        if (n + need > chars.length) {
            char[] next = new char[Math.max(chars.length * 2, n + need)];
            System.arraycopy(chars, 0, next, 0, n);
            chars = next;
        }
    }

    private String slowString(int start) throws SyntaxError {
        int n = p - start;
        room(0, n + 16);
        for (int i = 0; i < n; i++) {
            chars[i] = (char) b[start + i];
        }
        while (true) {
            if (p >= end) {
                throw new SyntaxError("unterminated string starting at byte " + (start - 1));
            }
            int c = b[p] & 0xFF;
            if (c == '"') {
                p++;
                return new String(chars, 0, n);
            }
            room(n, 2);
            if (c == '\\') {
                n = escape(n);
            } else if (c < 0x20) {
                throw error("unescaped control character in string");
            } else if (c < 0x80) {
                chars[n++] = (char) c;
                p++;
            } else {
                n = utf8(c, n);
            }
        }
    }

    private int escape(int n) throws SyntaxError {
        if (p + 1 >= end) {
            throw unexpected("an escape sequence");
        }
        byte e = b[p + 1];
        p += 2;
        char c;
        switch (e) {
            case '"': c = '"'; break;
            case '\\': c = '\\'; break;
            case '/': c = '/'; break;
            case 'b': c = '\b'; break;
            case 'f': c = '\f'; break;
            case 'n': c = '\n'; break;
            case 'r': c = '\r'; break;
            case 't': c = '\t'; break;
            case 'u':
                // Surrogates arrive as two \\u escapes and pair up in the char array by themselves;
                // a lone one is kept, as JavaScript and Python keep it.
                c = (char) hex4();
                break;
            default:
                p -= 1;
                throw error("invalid escape sequence");
        }
        chars[n] = c;
        return n + 1;
    }

    private int hex4() throws SyntaxError {
        if (end - p < 4) {
            throw unexpected("4 hex digits");
        }
        int v = 0;
        for (int i = 0; i < 4; i++) {
            int c = b[p + i];
            int d;
            if (c >= '0' && c <= '9') {
                d = c - '0';
            } else if (c >= 'a' && c <= 'f') {
                d = c - 'a' + 10;
            } else if (c >= 'A' && c <= 'F') {
                d = c - 'A' + 10;
            } else {
                p += i;
                throw error("invalid \\u escape");
            }
            v = (v << 4) | d;
        }
        p += 4;
        return v;
    }

    /** Decodes one UTF-8 sequence, rejecting overlong forms, encoded surrogates and values past U+10FFFF. */
    private int utf8(int c, int n) throws SyntaxError {
        int cp;
        int more;
        int lo = 0x80;
        int hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) {
            cp = c & 0x1F;
            more = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            cp = c & 0x0F;
            more = 2;
            if (c == 0xE0) {
                lo = 0xA0;
            } else if (c == 0xED) {
                hi = 0x9F;
            }
        } else if (c >= 0xF0 && c <= 0xF4) {
            cp = c & 0x07;
            more = 3;
            if (c == 0xF0) {
                lo = 0x90;
            } else if (c == 0xF4) {
                hi = 0x8F;
            }
        } else {
            throw error("invalid UTF-8");
        }
        if (end - p <= more) {
            throw error("truncated UTF-8 sequence");
        }
        for (int i = 1; i <= more; i++) {
            int d = b[p + i] & 0xFF;
            if (d < lo || d > hi) {
                p += i;
                throw error("invalid UTF-8");
            }
            lo = 0x80;
            hi = 0xBF;
            cp = (cp << 6) | (d & 0x3F);
        }
        p += more + 1;
        if (cp >= 0x10000) {
            chars[n++] = Character.highSurrogate(cp);
            chars[n++] = Character.lowSurrogate(cp);
        } else {
            chars[n++] = (char) cp;
        }
        return n;
    }

    private Object number() throws SyntaxError {
        int start = p;
        if (b[p] == '-') {
            p++;
        }
        int digitsStart = p;
        if (p < end && b[p] == '0') {
            p++;
        } else if (p < end && b[p] >= '1' && b[p] <= '9') {
            while (p < end && b[p] >= '0' && b[p] <= '9') {
                p++;
            }
        } else {
            p = start;
            throw unexpected("a value");
        }
        boolean integral = true;
        if (p < end && b[p] == '.') {
            integral = false;
            p++;
            if (p >= end || b[p] < '0' || b[p] > '9') {
                throw unexpected("a digit after '.'");
            }
            while (p < end && b[p] >= '0' && b[p] <= '9') {
                p++;
            }
        }
        if (p < end && (b[p] == 'e' || b[p] == 'E')) {
            integral = false;
            p++;
            if (p < end && (b[p] == '+' || b[p] == '-')) {
                p++;
            }
            if (p >= end || b[p] < '0' || b[p] > '9') {
                throw unexpected("a digit in the exponent");
            }
            while (p < end && b[p] >= '0' && b[p] <= '9') {
                p++;
            }
        }
        return JsonNumber.value(b, start, digitsStart, p, integral);
    }
}
