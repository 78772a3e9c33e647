package fnhost.shim;

import fnhost.Client;
import fnhost.ClientContext;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * INVOKE's context (protocol version 2): the caller's client context and the ARN it used. Parsed
 * only for the invocations that carry one; a context that is not the JSON object the protocol
 * describes is a {@link Failure} of that invocation alone (Runtime.InvalidContext).
 */
final class InvokeContext {
    static final String INVALID = "Runtime.InvalidContext";

    final ClientContext clientContext;
    final String arn;

    private InvokeContext(ClientContext clientContext, String arn) {
        this.clientContext = clientContext;
        this.arn = arn;
    }

    static InvokeContext parse(byte[] b, int off, int len) throws Failure {
        Object parsed;
        try {
            parsed = Json.parse(b, off, len);
        } catch (Json.SyntaxError e) {
            throw invalid("it is not JSON: " + e.getMessage());
        }
        if (!(parsed instanceof Map)) {
            throw invalid("it is not a JSON object");
        }
        Map<?, ?> m = (Map<?, ?>) parsed;
        Object arn = m.get("invoked_function_arn");
        if (arn != null && !(arn instanceof String)) {
            throw invalid("invoked_function_arn is not a string");
        }
        Object cc = m.get("client_context");
        if (cc != null && !(cc instanceof Map)) {
            throw invalid("client_context is not a JSON object");
        }
        ClientContext clientContext = null;
        if (cc != null) {
            Map<?, ?> c = (Map<?, ?>) cc;
            Object client = c.get("client");
            if (client != null && !(client instanceof Map)) {
                throw invalid("client_context.client is not a JSON object");
            }
            clientContext = new Values(client == null ? null : new App((Map<?, ?>) client),
                    strings(c.get("custom"), "custom"), strings(c.get("env"), "env"));
        }
        String a = (String) arn;
        return new InvokeContext(clientContext, a == null || a.isEmpty() ? null : a);
    }

    private static Failure invalid(String why) {
        return new Failure(INVALID, "Unable to parse the invocation's context: " + why);
    }

    private static Map<String, String> strings(Object v, String what) throws Failure {
        if (v == null) {
            return null;
        }
        if (!(v instanceof Map)) {
            throw invalid("client_context." + what + " is not a JSON object");
        }
        Map<String, String> out = new LinkedHashMap<>();
        for (Map.Entry<?, ?> e : ((Map<?, ?>) v).entrySet()) {
            out.put(String.valueOf(e.getKey()), text(e.getValue()));
        }
        return out;
    }

    /** A JSON string as itself, null as null, anything else as its JSON text. */
    static String text(Object v) {
        if (v == null || v instanceof String) {
            return (String) v;
        }
        if (v instanceof Map || v instanceof List) {
            ByteSink sink = new ByteSink(64);
            try {
                new JsonWriter(sink).writeTop(v);
            } catch (JsonWriter.MarshalException e) {
                return String.valueOf(v); // cannot happen for what Json.parse returns
            }
            return new String(sink.buf, 0, sink.len, java.nio.charset.StandardCharsets.UTF_8);
        }
        return String.valueOf(v);
    }

    private static final class Values implements ClientContext {
        private final Client client;
        private final Map<String, String> custom;
        private final Map<String, String> env;

        Values(Client client, Map<String, String> custom, Map<String, String> env) {
            this.client = client;
            this.custom = custom;
            this.env = env;
        }

        @Override
        public Client getClient() {
            return client;
        }

        @Override
        public Map<String, String> getCustom() {
            return custom;
        }

        @Override
        public Map<String, String> getEnvironment() {
            return env;
        }

        @Override
        public String toString() {
            return "ClientContext{client=" + client + ", custom=" + custom + ", env=" + env + "}";
        }
    }

    private static final class App implements Client {
        private final Map<?, ?> m;

        App(Map<?, ?> m) {
            this.m = m;
        }

        @Override
        public String getInstallationId() {
            return text(m.get("installation_id"));
        }

        @Override
        public String getAppTitle() {
            return text(m.get("app_title"));
        }

        @Override
        public String getAppVersionName() {
            return text(m.get("app_version_name"));
        }

        @Override
        public String getAppVersionCode() {
            return text(m.get("app_version_code"));
        }

        @Override
        public String getAppPackageName() {
            return text(m.get("app_package_name"));
        }

        @Override
        public String toString() {
            return "Client" + m;
        }
    }
}
