// A stem cell becoming a function's worker (protos/worker-protocol.md, "Stem cells"): SPECIALISE's
// steps 1-3, identity, environment and working directory, before anything of the function loads.
using System;
using System.Collections;
using System.Collections.Generic;
using System.Globalization;
using System.IO;

namespace Fnhost.Runtime
{
    internal static class Specialise
    {
        /// <summary>
        /// Applies SPECIALISE's identity, process_environment and cwd; throws InitFailure
        /// Runtime.SpecialiseError naming the step that failed. INIT's own work follows in Program.
        /// </summary>
        public static void Apply(Dictionary<string, object> spec)
        {
            object identity;
            spec.TryGetValue("identity", out identity);
            if (identity != null)
                Step("identity", () => TakeIdentity(identity));
            object environment;
            spec.TryGetValue("process_environment", out environment);
            Step("environment", () => ReplaceEnvironment(environment as Dictionary<string, object>));
            object cwd;
            spec.TryGetValue("cwd", out cwd);
            Step("working directory", () => ChangeDirectory(cwd as string));
        }

        private static void Step(string name, Action action)
        {
            try
            {
                action();
            }
            catch (Exception e)
            {
                throw new InitFailure("Runtime.SpecialiseError",
                    "Cannot specialise the stem cell (step: " + name + "): " + e.Message);
            }
        }

        private static void TakeIdentity(object identity)
        {
            var ids = identity as Dictionary<string, object>;
            if (ids == null)
                throw new InvalidOperationException("identity is not a JSON object");
            Native.TakeIdentity(Id(ids, "uid"), Id(ids, "gid"));
        }

        // (uid_t)-1 means "leave unchanged" to setresuid, so it is refused rather than passed on.
        private static uint Id(Dictionary<string, object> ids, string key)
        {
            object value;
            ids.TryGetValue(key, out value);
            if (!(value is long) || (long)value < 0 || (long)value >= uint.MaxValue)
                throw new InvalidOperationException("identity." + key + " is not a uid/gid number");
            return (uint)(long)value;
        }

        // Both copies: Environment's (what the handler reads and, on .NET, what child processes
        // get: .NET keeps its own copy of the environment) and the C library's environ (native
        // code, the time zone; on Mono Environment reads and writes environ itself). Environment
        // deletes a variable set to "", so on .NET an empty variable exists only in environ.
        private static void ReplaceEnvironment(Dictionary<string, object> wanted)
        {
            List<KeyValuePair<string, string>> variables = Variables(wanted);
            foreach (string name in Stale(wanted))
                Environment.SetEnvironmentVariable(name, null);
            foreach (KeyValuePair<string, string> kv in variables)
                if (Environment.GetEnvironmentVariable(kv.Key) != kv.Value)
                    Environment.SetEnvironmentVariable(kv.Key, kv.Value);
            Native.ReplaceEnviron(variables);
            // TimeZoneInfo.Local and the older TimeZone.CurrentTimeZone are each computed once,
            // from TZ: ClearCachedData resets the first, and on Mono only CultureInfo's resets the
            // second (a default culture it drops comes back the same: the locale is a cell's
            // start-up variable, so the cell already has the function's).
            TimeZoneInfo.ClearCachedData();
            CultureInfo.CurrentCulture.ClearCachedData();
        }

        private static List<KeyValuePair<string, string>> Variables(Dictionary<string, object> wanted)
        {
            if (wanted == null)
                throw new InvalidOperationException("process_environment is not a JSON object");
            var variables = new List<KeyValuePair<string, string>>(wanted.Count);
            foreach (KeyValuePair<string, object> kv in wanted)
            {
                string value = kv.Value as string;
                if (value == null)
                    throw new InvalidOperationException("process_environment." + kv.Key + " is not a string");
                variables.Add(new KeyValuePair<string, string>(kv.Key, value));
            }
            return variables;
        }

        // The variables the process has and wanted does not name.
        private static List<string> Stale(Dictionary<string, object> wanted)
        {
            var stale = new List<string>();
            foreach (DictionaryEntry entry in Environment.GetEnvironmentVariables())
                if (!wanted.ContainsKey((string)entry.Key))
                    stale.Add((string)entry.Key);
            return stale;
        }

        /// <summary>
        /// A stem cell's rehearsal of Apply (WarmUp.cs) on a SPECIALISE of its own: reads what
        /// Apply reads (identity, the environment) and changes nothing; the calls that would
        /// change something are only compiled (Native.WarmUp).
        /// </summary>
        internal static void WarmUp(Dictionary<string, object> spec)
        {
            object identity;
            spec.TryGetValue("identity", out identity);
            var ids = (Dictionary<string, object>)identity;
            Step("identity", () =>
            {
                Id(ids, "uid");
                Id(ids, "gid");
                Native.WarmUp();
            });
            object environment;
            spec.TryGetValue("process_environment", out environment);
            var wanted = (Dictionary<string, object>)environment;
            Step("environment", () =>
            {
                Stale(wanted);
                List<KeyValuePair<string, string>> variables = Variables(wanted);
                foreach (KeyValuePair<string, string> kv in variables)
                    Environment.GetEnvironmentVariable(kv.Key);
                foreach (KeyValuePair<string, string> kv in (IEnumerable<KeyValuePair<string, string>>)variables)
                    Environment.GetEnvironmentVariable(kv.Key);
            });
        }

        private static void ChangeDirectory(string cwd)
        {
            if (string.IsNullOrEmpty(cwd))
                throw new InvalidOperationException("cwd is not a path");
            try
            {
                Directory.SetCurrentDirectory(cwd);
            }
            catch (Exception e)
            {
                throw new InvalidOperationException("chdir(" + cwd + ") failed: " + e.GetType().Name + ": " + e.Message);
            }
        }
    }
}
