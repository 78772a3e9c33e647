package hello;

import fnhost.Context;
import java.util.LinkedHashMap;
import java.util.Map;

/** The hello example: {"name": "Ada"} → a greeting, the runtime and the request id. */
public class Hello {
    public Map<String, Object> handleRequest(Map<String, Object> event, Context context) {
        Object name = event == null ? null : event.get("name");
        String who = name instanceof String ? (String) name : "world";
        System.out.println("greeting " + who);
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("message", "Hello, " + who + "!");
        out.put("runtime", "java");
        out.put("request_id", context.getAwsRequestId());
        return out;
    }
}
