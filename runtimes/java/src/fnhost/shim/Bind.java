package fnhost.shim;

import java.lang.reflect.Array;
import java.lang.reflect.GenericArrayType;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.ParameterizedType;
import java.lang.reflect.Type;
import java.lang.reflect.TypeVariable;
import java.lang.reflect.WildcardType;
import java.math.BigDecimal;
import java.math.BigInteger;
import java.util.ArrayList;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.SortedMap;
import java.util.SortedSet;
import java.util.TreeMap;
import java.util.TreeSet;

/**
 * Turns a parsed JSON value into the type a handler's event parameter declares: the parsed value
 * itself for Object/Map/List, converted values for typed maps, lists, arrays, numbers, enums,
 * and records or POJOs built field by field. Unknown object members are ignored, as Lambda's
 * serialiser ignores them. A mismatch is an UnmarshalError naming the path and the types.
 */
final class Bind {
    private Bind() {
    }

    static Object convert(Object v, Type t) throws Failure {
        return convert(v, t, "$");
    }

    static Class<?> raw(Type t) {
        if (t instanceof Class) {
            return (Class<?>) t;
        }
        if (t instanceof ParameterizedType) {
            return (Class<?>) ((ParameterizedType) t).getRawType();
        }
        if (t instanceof GenericArrayType) {
            return Array.newInstance(raw(((GenericArrayType) t).getGenericComponentType()), 0).getClass();
        }
        if (t instanceof TypeVariable) {
            Type[] b = ((TypeVariable<?>) t).getBounds();
            return b.length > 0 ? raw(b[0]) : Object.class;
        }
        if (t instanceof WildcardType) {
            Type[] b = ((WildcardType) t).getUpperBounds();
            return b.length > 0 ? raw(b[0]) : Object.class;
        }
        return Object.class;
    }

    private static Type arg(Type t, int i) {
        if (t instanceof ParameterizedType) {
            Type[] a = ((ParameterizedType) t).getActualTypeArguments();
            if (i < a.length) {
                return a[i];
            }
        }
        return Object.class;
    }

    private static String kind(Object v) {
        if (v == null) {
            return "null";
        }
        if (v instanceof Map) {
            return "an object";
        }
        if (v instanceof List) {
            return "an array";
        }
        if (v instanceof String) {
            return "a string";
        }
        if (v instanceof Boolean) {
            return "a boolean";
        }
        return "a number";
    }

    private static Failure mismatch(String path, Object v, String wanted) {
        return new Failure(Failure.UNMARSHAL, "cannot deserialize " + kind(v) + " at " + path + " as " + wanted);
    }

    static Object convert(Object v, Type t, String path) throws Failure {
        Class<?> c = raw(t);
        if (c == Object.class) {
            return v;
        }
        if (v == null) {
            return c.isPrimitive() ? primitiveZero(c) : (c == Optional.class ? Optional.empty() : null);
        }
        if (c == String.class || c == CharSequence.class) {
            if (v instanceof Map || v instanceof List) {
                throw mismatch(path, v, "java.lang.String");
            }
            return v.toString();
        }
        if (c.isPrimitive() || Number.class.isAssignableFrom(c) || c == Boolean.class || c == Character.class) {
            return scalar(v, c, path);
        }
        if (c.isEnum()) {
            if (v instanceof String) {
                for (Object k : c.getEnumConstants()) {
                    if (((Enum<?>) k).name().equals(v)) {
                        return k;
                    }
                }
            }
            throw mismatch(path, v, "one of the constants of " + c.getName());
        }
        if (Map.class.isAssignableFrom(c)) {
            return map(v, t, c, path);
        }
        if (Collection.class.isAssignableFrom(c) || c == Iterable.class) {
            return collection(v, t, c, path);
        }
        if (c.isArray()) {
            if (!(v instanceof List)) {
                throw mismatch(path, v, c.getComponentType().getName() + "[]");
            }
            List<?> l = (List<?>) v;
            Type et = t instanceof GenericArrayType ? ((GenericArrayType) t).getGenericComponentType() : c.getComponentType();
            Object a = Array.newInstance(c.getComponentType(), l.size());
            for (int i = 0; i < l.size(); i++) {
                Array.set(a, i, convert(l.get(i), et, path + "[" + i + "]"));
            }
            return a;
        }
        if (c == Optional.class) {
            return Optional.ofNullable(convert(v, arg(t, 0), path));
        }
        if (c.isInstance(v)) {
            return v;
        }
        if (v instanceof Map && !Beans.isJdk(c)) {
            @SuppressWarnings("unchecked")
            Map<String, Object> m = (Map<String, Object>) v;
            return bean(m, c, path);
        }
        throw mismatch(path, v, c.getName());
    }

    private static Object primitiveZero(Class<?> c) {
        if (c == boolean.class) {
            return Boolean.FALSE;
        }
        if (c == char.class) {
            return '\0';
        }
        return scalarOf(0L, c);
    }

    private static Object scalar(Object v, Class<?> c, String path) throws Failure {
        if (c == boolean.class || c == Boolean.class) {
            if (v instanceof Boolean) {
                return v;
            }
            if ("true".equals(v) || "false".equals(v)) {
                return Boolean.valueOf((String) v);
            }
            throw mismatch(path, v, "boolean");
        }
        if (c == char.class || c == Character.class) {
            if (v instanceof String && ((String) v).length() == 1) {
                return ((String) v).charAt(0);
            }
            throw mismatch(path, v, "a single character");
        }
        Object n = v;
        if (v instanceof String) {
            // Jackson, Lambda's serialiser, accepts numbers written as strings.
            try {
                n = new BigDecimal(((String) v).trim());
            } catch (NumberFormatException e) {
                throw mismatch(path, v, c.getSimpleName());
            }
        }
        if (!(n instanceof Number)) {
            throw mismatch(path, v, c.getSimpleName());
        }
        Object out = scalarOf((Number) n, c);
        if (out == null) {
            throw new Failure(Failure.UNMARSHAL, "number " + n + " at " + path + " does not fit in " + c.getSimpleName());
        }
        return out;
    }

    /** The number as type {@code c}, or null when it would not fit (or would lose its fraction). */
    private static Object scalarOf(Number n, Class<?> c) {
        if (c == double.class || c == Double.class) {
            return n.doubleValue();
        }
        if (c == float.class || c == Float.class) {
            return n.floatValue();
        }
        if (c == Number.class) {
            return n;
        }
        if (c == BigDecimal.class) {
            return n instanceof BigDecimal ? n : new BigDecimal(n.toString());
        }
        if (n instanceof Long) {
            long l = (Long) n;
            if (c == long.class || c == Long.class) {
                return l;
            }
            if (c == int.class || c == Integer.class) {
                return l == (int) l ? (Object) (int) l : null;
            }
        }
        BigDecimal d = n instanceof BigDecimal ? (BigDecimal) n : new BigDecimal(n.toString());
        BigInteger i;
        try {
            i = d.toBigIntegerExact();
        } catch (ArithmeticException e) {
            return null;
        }
        if (c == BigInteger.class) {
            return i;
        }
        if (i.bitLength() >= 64) {
            return null;
        }
        long l = i.longValue();
        if (c == long.class || c == Long.class) {
            return l;
        }
        if (c == int.class || c == Integer.class) {
            return l == (int) l ? (Object) (int) l : null;
        }
        if (c == short.class || c == Short.class) {
            return l == (short) l ? (Object) (short) l : null;
        }
        if (c == byte.class || c == Byte.class) {
            return l == (byte) l ? (Object) (byte) l : null;
        }
        return null;
    }

    private static Object map(Object v, Type t, Class<?> c, String path) throws Failure {
        if (!(v instanceof Map)) {
            throw mismatch(path, v, c.getName());
        }
        Map<?, ?> in = (Map<?, ?>) v;
        Type kt = arg(t, 0);
        Type vt = arg(t, 1);
        if (raw(kt) == Object.class || raw(kt) == String.class) {
            if (raw(vt) == Object.class && c.isInstance(v)) {
                return v;
            }
        }
        Map<Object, Object> out = newMap(c, path);
        for (Map.Entry<?, ?> e : in.entrySet()) {
            String key = (String) e.getKey();
            out.put(convert(key, kt, path), convert(e.getValue(), vt, path + "." + key));
        }
        return out;
    }

    @SuppressWarnings("unchecked")
    private static Map<Object, Object> newMap(Class<?> c, String path) throws Failure {
        if (c.isInterface()) {
            return SortedMap.class.isAssignableFrom(c) ? new TreeMap<>() : new LinkedHashMap<>();
        }
        return (Map<Object, Object>) instantiate(c, path);
    }

    private static Object collection(Object v, Type t, Class<?> c, String path) throws Failure {
        if (!(v instanceof List)) {
            throw mismatch(path, v, c.getName());
        }
        List<?> in = (List<?>) v;
        Type et = arg(t, 0);
        if (raw(et) == Object.class && c.isInstance(v)) {
            return v;
        }
        Collection<Object> out;
        if (c.isInterface()) {
            if (SortedSet.class.isAssignableFrom(c)) {
                out = new TreeSet<>();
            } else if (Set.class.isAssignableFrom(c)) {
                out = new LinkedHashSet<>();
            } else {
                out = new ArrayList<>(in.size());
            }
        } else {
            @SuppressWarnings("unchecked")
            Collection<Object> made = (Collection<Object>) instantiate(c, path);
            out = made;
        }
        for (int i = 0; i < in.size(); i++) {
            out.add(convert(in.get(i), et, path + "[" + i + "]"));
        }
        return out;
    }

    private static Object instantiate(Class<?> c, String path) throws Failure {
        try {
            java.lang.reflect.Constructor<?> k = c.getDeclaredConstructor();
            k.trySetAccessible();
            return k.newInstance();
        } catch (ReflectiveOperationException | RuntimeException e) {
            throw new Failure(Failure.UNMARSHAL, "cannot create a " + c.getName() + " for " + path + ": " + Failure.describe(e));
        }
    }

    private static Object bean(Map<String, Object> m, Class<?> c, String path) throws Failure {
        Beans.Shape s = Beans.shape(c);
        if (s.problem != null) {
            throw new Failure(Failure.UNMARSHAL, "cannot deserialize " + path + ": " + s.problem);
        }
        try {
            if (s.componentNames != null) {
                Object[] args = new Object[s.componentNames.length];
                for (int i = 0; i < args.length; i++) {
                    String name = s.componentNames[i];
                    args[i] = convert(m.get(name), s.componentTypes[i], path + "." + name);
                }
                return s.ctor.newInstance(args);
            }
            Object o = s.ctor.newInstance();
            for (Map.Entry<String, Object> e : m.entrySet()) {
                Beans.Slot slot = s.slots.get(e.getKey());
                if (slot == null) {
                    String k = s.lowerCase.get(e.getKey().toLowerCase(java.util.Locale.ROOT));
                    slot = k == null ? null : s.slots.get(k);
                }
                if (slot != null) {
                    slot.set(o, convert(e.getValue(), slot.type, path + "." + e.getKey()));
                }
            }
            return o;
        } catch (InvocationTargetException e) {
            Throwable cause = e.getCause() == null ? e : e.getCause();
            throw new Failure(Failure.UNMARSHAL, "building " + c.getName() + " for " + path + " threw " + Failure.describe(cause));
        } catch (ReflectiveOperationException e) {
            throw new Failure(Failure.UNMARSHAL, "cannot build " + c.getName() + " for " + path + ": " + e);
        }
    }
}
