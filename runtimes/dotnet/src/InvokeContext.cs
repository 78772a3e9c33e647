// INVOKE's context (protos/worker-protocol.md, version 2): the caller's client context and the
// ARN it used. Parsed only for invocations that carry one; a context that is not the JSON object
// the protocol describes fails that invocation alone (Runtime.InvalidContext).
using System.Collections.Generic;
using System.Text;

namespace Fnhost.Runtime
{
    internal static class InvokeContext
    {
        private const string Invalid = "Runtime.InvalidContext";

        /// <summary>Reads the context into its two parts. Throws InvokeFailure.</summary>
        public static void Parse(byte[] data, int offset, int count, out IClientContext clientContext, out string arn)
        {
            object parsed;
            try
            {
                parsed = JsonReader.Parse(data, offset, count);
            }
            catch (JsonException e)
            {
                throw Fail("it is not JSON: " + e.Message);
            }
            var context = parsed as Dictionary<string, object>;
            if (context == null)
                throw Fail("it is not a JSON object");
            object a = Get(context, "invoked_function_arn");
            if (a != null && !(a is string))
                throw Fail("invoked_function_arn is not a string");
            arn = string.IsNullOrEmpty((string)a) ? null : (string)a;
            clientContext = null;
            object cc = Get(context, "client_context");
            if (cc == null)
                return;
            var values = cc as Dictionary<string, object>;
            if (values == null)
                throw Fail("client_context is not a JSON object");
            object client = Get(values, "client");
            if (client != null && !(client is Dictionary<string, object>))
                throw Fail("client_context.client is not a JSON object");
            clientContext = new ClientContext
            {
                Client = client == null ? null : new ClientApplication((Dictionary<string, object>)client),
                Custom = Strings(Get(values, "custom"), "custom"),
                Environment = Strings(Get(values, "env"), "env"),
            };
        }

        private static InvokeFailure Fail(string why)
        {
            return new InvokeFailure(Invalid, "Unable to parse the invocation's context: " + why);
        }

        private static object Get(Dictionary<string, object> d, string key)
        {
            object v;
            return d.TryGetValue(key, out v) ? v : null;
        }

        private static IDictionary<string, string> Strings(object value, string what)
        {
            if (value == null)
                return null;
            var d = value as Dictionary<string, object>;
            if (d == null)
                throw Fail("client_context." + what + " is not a JSON object");
            var result = new Dictionary<string, string>(d.Count);
            foreach (KeyValuePair<string, object> kv in d)
                result[kv.Key] = Text(kv.Value);
            return result;
        }

        /// <summary>A JSON string as itself, null as null, anything else as its JSON text.</summary>
        internal static string Text(object value)
        {
            if (value == null || value is string)
                return (string)value;
            var buffer = new FrameBuffer();
            JsonWriter.Write(value, buffer);
            return Encoding.UTF8.GetString(buffer.Data, 0, buffer.Length);
        }

        private sealed class ClientContext : IClientContext
        {
            public IDictionary<string, string> Environment { get; set; }
            public IClientApplication Client { get; set; }
            public IDictionary<string, string> Custom { get; set; }
        }

        private sealed class ClientApplication : IClientApplication
        {
            private readonly Dictionary<string, object> values;

            public ClientApplication(Dictionary<string, object> values)
            {
                this.values = values;
            }

            private string Field(string key)
            {
                return Text(Get(values, key));
            }

            public string AppPackageName { get { return Field("app_package_name"); } }
            public string AppTitle { get { return Field("app_title"); } }
            public string AppVersionCode { get { return Field("app_version_code"); } }
            public string AppVersionName { get { return Field("app_version_name"); } }
            public string InstallationId { get { return Field("installation_id"); } }
        }
    }
}
