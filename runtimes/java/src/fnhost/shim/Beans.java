package fnhost.shim;

import java.lang.reflect.Constructor;
import java.lang.reflect.Field;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.lang.reflect.RecordComponent;
import java.lang.reflect.Type;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;

/**
 * POJO and record introspection, cached per class: which properties a result object shows
 * (public getters and public fields, records by component) and how an event object is built
 * (records through the canonical constructor, other classes through a no-argument constructor
 * and setters or public fields). Only the simple bean conventions: no annotations.
 */
final class Beans {
    private Beans() {
    }

    /** One readable property. */
    static final class Prop {
        final String name;
        final Method getter;
        final Field field;

        Prop(String name, Method getter, Field field) {
            this.name = name;
            this.getter = getter;
            this.field = field;
        }

        Object get(Object target) throws ReflectiveOperationException {
            return getter != null ? getter.invoke(target) : field.get(target);
        }
    }

    /** One writable property of a mutable bean. */
    static final class Slot {
        final Method setter;
        final Field field;
        final Type type;

        Slot(Method setter, Field field) {
            this.setter = setter;
            this.field = field;
            this.type = setter != null ? setter.getGenericParameterTypes()[0] : field.getGenericType();
        }

        void set(Object target, Object value) throws ReflectiveOperationException {
            if (setter != null) {
                setter.invoke(target, value);
            } else {
                field.set(target, value);
            }
        }
    }

    /** How instances of a class are built from a JSON object. */
    static final class Shape {
        final Constructor<?> ctor;
        /** Record components in constructor order; null for a mutable bean. */
        final String[] componentNames;
        final Type[] componentTypes;
        final Map<String, Slot> slots;
        final Map<String, String> lowerCase;
        final String problem;

        Shape(Constructor<?> ctor, String[] names, Type[] types, Map<String, Slot> slots, String problem) {
            this.ctor = ctor;
            this.componentNames = names;
            this.componentTypes = types;
            this.slots = slots;
            this.problem = problem;
            this.lowerCase = new LinkedHashMap<>();
            if (slots != null) {
                for (String k : slots.keySet()) {
                    lowerCase.putIfAbsent(k.toLowerCase(Locale.ROOT), k);
                }
            }
        }
    }

    private static final ClassValue<Prop[]> READ = new ClassValue<Prop[]>() {
        @Override
        protected Prop[] computeValue(Class<?> c) {
            return readable(c);
        }
    };

    private static final ClassValue<Shape> WRITE = new ClassValue<Shape>() {
        @Override
        protected Shape computeValue(Class<?> c) {
            return writable(c);
        }
    };

    static boolean isJdk(Class<?> c) {
        String n = c.getName();
        return n.startsWith("java.") || n.startsWith("javax.") || n.startsWith("jdk.") || n.startsWith("sun.") || n.startsWith("com.sun.");
    }

    /** JDK value types whose toString is their natural JSON string. */
    static boolean isValueLike(Class<?> c) {
        return java.time.temporal.TemporalAccessor.class.isAssignableFrom(c)
                || java.time.temporal.TemporalAmount.class.isAssignableFrom(c)
                || java.time.ZoneId.class.isAssignableFrom(c)
                || c == java.util.UUID.class || c == java.net.URI.class || c == java.net.URL.class
                || c == java.io.File.class || java.nio.file.Path.class.isAssignableFrom(c)
                || c == java.util.Locale.class || c == java.util.Currency.class
                || c == java.util.regex.Pattern.class || java.nio.charset.Charset.class.isAssignableFrom(c);
    }

    static void writeBean(JsonWriter w, Object v) throws JsonWriter.MarshalException {
        Class<?> c = v.getClass();
        if (isJdk(c)) {
            throw new JsonWriter.MarshalException("", "no JSON form for a " + c.getName());
        }
        Prop[] props = READ.get(c);
        if (props.length == 0) {
            throw new JsonWriter.MarshalException("", c.getName() + " has no public getters, public fields or record components to serialise");
        }
        for (int i = 0; i < props.length; i++) {
            Prop p = props[i];
            Object value;
            try {
                value = p.get(v);
            } catch (InvocationTargetException e) {
                Throwable t = e.getCause() == null ? e : e.getCause();
                throw new JsonWriter.MarshalException("." + p.name, "getter threw " + Failure.describe(t));
            } catch (ReflectiveOperationException e) {
                throw new JsonWriter.MarshalException("." + p.name, "cannot be read: " + e);
            }
            w.member(i == 0, p.name);
            try {
                w.write(value);
            } catch (JsonWriter.MarshalException e) {
                throw e.under("." + p.name);
            }
        }
        w.endObject(false);
    }

    static Shape shape(Class<?> c) {
        return WRITE.get(c);
    }

    /** The bean name of getFoo/isFoo/setFoo: "foo", but "URL" stays "URL" (java.beans' rule). */
    static String propertyName(String methodName, int prefix) {
        String rest = methodName.substring(prefix);
        if (rest.length() > 1 && Character.isUpperCase(rest.charAt(0)) && Character.isUpperCase(rest.charAt(1))) {
            return rest;
        }
        return Character.toLowerCase(rest.charAt(0)) + rest.substring(1);
    }

    private static List<Class<?>> hierarchy(Class<?> c) {
        List<Class<?>> chain = new ArrayList<>();
        for (Class<?> k = c; k != null && k != Object.class; k = k.getSuperclass()) {
            chain.add(0, k);
        }
        return chain;
    }

    private static Prop[] readable(Class<?> c) {
        if (c.isRecord()) {
            RecordComponent[] rc = c.getRecordComponents();
            Prop[] out = new Prop[rc.length];
            for (int i = 0; i < rc.length; i++) {
                Method m = rc[i].getAccessor();
                m.trySetAccessible();
                out[i] = new Prop(rc[i].getName(), m, null);
            }
            return out;
        }
        Map<String, Method> getters = new TreeMap<>();
        for (Method m : c.getMethods()) {
            if (Modifier.isStatic(m.getModifiers()) || m.getParameterCount() != 0 || m.getReturnType() == void.class
                    || m.getDeclaringClass() == Object.class || m.isBridge()) {
                continue;
            }
            String n = m.getName();
            if (n.length() > 3 && n.startsWith("get")) {
                getters.putIfAbsent(propertyName(n, 3), m);
            } else if (n.length() > 2 && n.startsWith("is") && (m.getReturnType() == boolean.class || m.getReturnType() == Boolean.class)) {
                getters.putIfAbsent(propertyName(n, 2), m);
            }
        }
        // Declared field order first (as a reader of the class expects), then getter-only properties.
        Map<String, Prop> props = new LinkedHashMap<>();
        for (Class<?> k : hierarchy(c)) {
            for (Field f : k.getDeclaredFields()) {
                int mod = f.getModifiers();
                if (Modifier.isStatic(mod) || Modifier.isTransient(mod) || f.isSynthetic() || props.containsKey(f.getName())) {
                    continue;
                }
                Method g = getters.remove(f.getName());
                if (g != null) {
                    g.trySetAccessible();
                    props.put(f.getName(), new Prop(f.getName(), g, null));
                } else if (Modifier.isPublic(mod)) {
                    f.trySetAccessible();
                    props.put(f.getName(), new Prop(f.getName(), null, f));
                }
            }
        }
        for (Map.Entry<String, Method> e : getters.entrySet()) {
            e.getValue().trySetAccessible();
            props.putIfAbsent(e.getKey(), new Prop(e.getKey(), e.getValue(), null));
        }
        return props.values().toArray(new Prop[0]);
    }

    private static Shape writable(Class<?> c) {
        if (c.isInterface() || Modifier.isAbstract(c.getModifiers())) {
            return new Shape(null, null, null, null, "cannot create an instance of abstract type " + c.getName());
        }
        if (c.isRecord()) {
            RecordComponent[] rc = c.getRecordComponents();
            String[] names = new String[rc.length];
            Type[] types = new Type[rc.length];
            Class<?>[] raw = new Class<?>[rc.length];
            for (int i = 0; i < rc.length; i++) {
                names[i] = rc[i].getName();
                types[i] = rc[i].getGenericType();
                raw[i] = rc[i].getType();
            }
            try {
                Constructor<?> k = c.getDeclaredConstructor(raw);
                k.trySetAccessible();
                return new Shape(k, names, types, null, null);
            } catch (NoSuchMethodException e) {
                return new Shape(null, null, null, null, "record " + c.getName() + " has no canonical constructor");
            }
        }
        if (c.getEnclosingClass() != null && !Modifier.isStatic(c.getModifiers())) {
            return new Shape(null, null, null, null, c.getName() + " is a non-static inner class; make it static to build it from JSON");
        }
        Constructor<?> k;
        try {
            k = c.getDeclaredConstructor();
            k.trySetAccessible();
        } catch (NoSuchMethodException e) {
            return new Shape(null, null, null, null, c.getName() + " has no zero-argument constructor to build it from JSON");
        }
        Map<String, Slot> slots = new LinkedHashMap<>();
        for (Method m : c.getMethods()) {
            String n = m.getName();
            if (n.length() > 3 && n.startsWith("set") && m.getParameterCount() == 1 && !Modifier.isStatic(m.getModifiers()) && !m.isBridge()) {
                m.trySetAccessible();
                slots.putIfAbsent(propertyName(n, 3), new Slot(m, null));
            }
        }
        for (Class<?> h : hierarchy(c)) {
            for (Field f : h.getDeclaredFields()) {
                int mod = f.getModifiers();
                if (Modifier.isPublic(mod) && !Modifier.isStatic(mod) && !Modifier.isFinal(mod)) {
                    f.trySetAccessible();
                    slots.putIfAbsent(f.getName(), new Slot(null, f));
                }
            }
        }
        return new Shape(k, null, null, slots, null);
    }
}
