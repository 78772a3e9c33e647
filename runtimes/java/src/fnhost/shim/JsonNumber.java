package fnhost.shim;

import java.math.BigDecimal;
import java.math.BigInteger;
import java.nio.charset.StandardCharsets;

/**
 * The value of a JSON number the parser has already validated: Long for integers that fit,
 * BigInteger past 64 bits, Double for the rest (BigDecimal past the double range, so a huge
 * exponent echoes back instead of turning into an unserialisable Infinity).
 */
final class JsonNumber {
    private JsonNumber() {
    }

    private static final double[] POW10 = {
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
        1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
    };

    /** b[start, end) is the number; its first digit is at {@code digitsStart} (after any '-'). */
    static Object value(byte[] b, int start, int digitsStart, int end, boolean integral) {
        if (integral && end - digitsStart <= 18) {
            long v = 0;
            for (int i = digitsStart; i < end; i++) {
                v = v * 10 + (b[i] - '0');
            }
            return digitsStart > start ? -v : v;
        }
        if (!integral) {
            double d = fastDouble(b, start, end);
            if (d == d) {
                return d;
            }
        }
        String text = new String(b, start, end - start, StandardCharsets.ISO_8859_1);
        if (integral) {
            BigInteger big = new BigInteger(text);
            return big.bitLength() < 64 ? (Object) big.longValue() : big;
        }
        double d = Double.parseDouble(text);
        if (Double.isInfinite(d)) {
            return new BigDecimal(text);
        }
        return d;
    }

    /**
     * Clinger's fast path: when the digits fit in 53 bits and the power of ten is at most 22,
     * one IEEE multiply or divide of two exact values is the correctly rounded result, without
     * Double.parseDouble's allocation and big-number arithmetic. NaN when it does not apply.
     */
    private static double fastDouble(byte[] b, int from, int to) {
        int i = from;
        boolean neg = b[i] == '-';
        if (neg) {
            i++;
        }
        long m = 0;
        int digits = 0;
        int exp10 = 0;
        boolean fraction = false;
        for (; i < to; i++) {
            int c = b[i];
            if (c >= '0' && c <= '9') {
                if (digits >= 18) {
                    return Double.NaN;
                }
                m = m * 10 + (c - '0');
                if (m != 0) {
                    digits++;
                }
                if (fraction) {
                    exp10--;
                }
            } else if (c == '.') {
                fraction = true;
            } else {
                break;
            }
        }
        if (i < to) {
            i++;
            boolean eneg = b[i] == '-';
            if (b[i] == '-' || b[i] == '+') {
                i++;
            }
            int e = 0;
            for (; i < to; i++) {
                e = e * 10 + (b[i] - '0');
                if (e > 400) {
                    return Double.NaN;
                }
            }
            exp10 += eneg ? -e : e;
        }
        if (m > (1L << 53) || exp10 > 22 || exp10 < -22) {
            return Double.NaN;
        }
        double d = m;
        if (exp10 > 0) {
            d *= POW10[exp10];
        } else if (exp10 < 0) {
            d /= POW10[-exp10];
        }
        return neg ? -d : d;
    }
}
