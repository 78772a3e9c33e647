package fnhost;

/**
 * The app that called, from Lambda's client context, with the names and types of
 * {@code com.amazonaws.services.lambda.runtime.Client}. A field the caller did not send is null.
 */
public interface Client {
    String getInstallationId();

    String getAppTitle();

    String getAppVersionName();

    String getAppVersionCode();

    String getAppPackageName();
}
