package fnhost;

import java.util.Map;

/**
 * What the caller of Invoke passed as its ClientContext, with the names and types of
 * {@code com.amazonaws.services.lambda.runtime.ClientContext}. A value that is not a JSON string
 * in {@code custom} or {@code env} arrives as its JSON text.
 */
public interface ClientContext {
    /** The app that called (Lambda's {@code client}), or null when the caller named none. */
    Client getClient();

    /** Custom values the caller set (Lambda's {@code custom}); null when there are none. */
    Map<String, String> getCustom();

    /** The caller's environment (Lambda's {@code env}); null when there is none. */
    Map<String, String> getEnvironment();
}
