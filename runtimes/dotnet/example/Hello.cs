using System.Collections.Generic;
using Fnhost;

namespace Hello
{
    public class Function
    {
        public Dictionary<string, object> Handler(Dictionary<string, object> input, ILambdaContext context)
        {
            object name;
            if (input == null || !input.TryGetValue("name", out name) || name == null)
                name = "world";
            context.Logger.LogLine("greeting " + name);
            return new Dictionary<string, object>
            {
                { "message", "Hello, " + name + "!" },
                { "runtime", "dotnet" },
                { "request_id", context.AwsRequestId },
            };
        }
    }
}
