// The libc calls the base class library has no portable spelling for. "libc" is mapped to
// libc.so.6 by Mono's dllmap and by .NET's own loader.
//
// The control pipes are read and written with read(2)/write(2) because Mono's FileStream refuses
// a raw inherited fd ("Invalid handle": it only accepts handles from its own table). The other
// calls have managed fallbacks, so an unusual libc costs speed or fd hygiene, never correctness,
// except a stem cell's identity and environment calls (SPECIALISE), which have none: there a
// failure is the Runtime.SpecialiseError the protocol asks for.
using System;
using System.Collections.Generic;
using System.Reflection;
using System.Runtime.InteropServices;

namespace Fnhost.Runtime
{
    internal static class Native
    {
        private const short POLLIN = 0x1, POLLERR = 0x8, POLLHUP = 0x10, POLLNVAL = 0x20;
        private const int F_SETFD = 2, FD_CLOEXEC = 1, EINTR = 4;

        [StructLayout(LayoutKind.Sequential)]
        private struct PollFd
        {
            public int Fd;
            public short Events;
            public short Revents;
        }

        [DllImport("libc", EntryPoint = "read", SetLastError = true)]
        private static extern unsafe IntPtr read(int fd, byte* buf, UIntPtr count);

        [DllImport("libc", EntryPoint = "write", SetLastError = true)]
        private static extern unsafe IntPtr write(int fd, byte* buf, UIntPtr count);

        [DllImport("libc", EntryPoint = "_exit")]
        private static extern void _exit(int status);

        [DllImport("libc", EntryPoint = "getpid")]
        private static extern int getpid();

        [DllImport("libc", EntryPoint = "fcntl", SetLastError = true)]
        private static extern int fcntl(int fd, int cmd, int arg);

        [DllImport("libc", EntryPoint = "poll", SetLastError = true)]
        private static extern int poll(ref PollFd fds, UIntPtr nfds, int timeout);

        [DllImport("libc", EntryPoint = "setgroups", SetLastError = true)]
        private static extern int setgroups(UIntPtr size, IntPtr list);

        [DllImport("libc", EntryPoint = "setresgid", SetLastError = true)]
        private static extern int setresgid(uint rgid, uint egid, uint sgid);

        [DllImport("libc", EntryPoint = "setresuid", SetLastError = true)]
        private static extern int setresuid(uint ruid, uint euid, uint suid);

        [DllImport("libc", EntryPoint = "getresgid", SetLastError = true)]
        private static extern int getresgid(out uint rgid, out uint egid, out uint sgid);

        [DllImport("libc", EntryPoint = "getresuid", SetLastError = true)]
        private static extern int getresuid(out uint ruid, out uint euid, out uint suid);

        [DllImport("libc", EntryPoint = "getgroups", SetLastError = true)]
        private static extern int getgroups(int size, IntPtr list);

        [DllImport("libc", EntryPoint = "clearenv", SetLastError = true)]
        private static extern int clearenv();

        [DllImport("libc", EntryPoint = "setenv", SetLastError = true)]
        private static extern int setenv([MarshalAs(UnmanagedType.LPStr)] string name, [MarshalAs(UnmanagedType.LPStr)] string value, int overwrite);

        [DllImport("libc", EntryPoint = "isatty")]
        private static extern int isatty(int fd);

        [DllImport("libc", EntryPoint = "getenv")]
        private static extern IntPtr getenv([MarshalAs(UnmanagedType.LPStr)] string name);

        [DllImport("libc", EntryPoint = "tzset")]
        private static extern void tzset();

        [DllImport("libc", EntryPoint = "strerror")]
        private static extern IntPtr strerror(int errnum);

        /// <summary>Reads up to count bytes; 0 at end of file. Retries on EINTR (the GC's signals).</summary>
        public static unsafe int Read(int fd, byte[] buffer, int offset, int count)
        {
            fixed (byte* p = buffer)
            {
                while (true)
                {
                    long n = (long)read(fd, p + offset, (UIntPtr)count);
                    if (n >= 0)
                        return (int)n;
                    int errno = Marshal.GetLastWin32Error();
                    if (errno != EINTR)
                        throw new System.IO.IOException("read(" + fd + ") failed: errno " + errno);
                }
            }
        }

        /// <summary>Writes all count bytes.</summary>
        public static unsafe void WriteAll(int fd, byte[] buffer, int offset, int count)
        {
            fixed (byte* p = buffer)
            {
                while (count > 0)
                {
                    long n = (long)write(fd, p + offset, (UIntPtr)count);
                    if (n < 0)
                    {
                        int errno = Marshal.GetLastWin32Error();
                        if (errno == EINTR)
                            continue;
                        throw new System.IO.IOException("write(" + fd + ") failed: errno " + errno);
                    }
                    offset += (int)n;
                    count -= (int)n;
                }
            }
        }

        /// <summary>
        /// Leaves now: no finalizers, no waiting for the handler's thread. Environment.Exit is the
        /// fallback, and it is slower only because it runs the runtime's shutdown.
        /// </summary>
        public static void HardExit(int status)
        {
            try
            {
                _exit(status);
            }
            catch (Exception)
            {
            }
            Environment.Exit(status);
        }

        public static int ProcessId()
        {
            try
            {
                return getpid();
            }
            catch (Exception)
            {
                return System.Diagnostics.Process.GetCurrentProcess().Id;
            }
        }

        /// <summary>
        /// Marks an inherited fd close-on-exec. .NET's Process.Start relies on that flag to keep fds
        /// out of children (Mono closes them all anyway), and the daemon cleared it for us.
        /// </summary>
        public static void SetCloseOnExec(int fd)
        {
            try
            {
                fcntl(fd, F_SETFD, FD_CLOEXEC);
            }
            catch (Exception)
            {
            }
        }

        /// <summary>True when poll(2) can be called here; binds the import once, off the hot path.</summary>
        public static bool CanPoll(int fd)
        {
            try
            {
                var p = new PollFd { Fd = fd, Events = 0 };
                return poll(ref p, (UIntPtr)1, 0) >= 0;
            }
            catch (Exception)
            {
                return false;
            }
        }

        /// <summary>
        /// Blocks until the write end of <paramref name="fd"/> is closed. Asking for no events still
        /// reports POLLHUP, and poll consumes nothing, so the main thread's reads are undisturbed.
        /// </summary>
        public static void WaitForHangup(int fd)
        {
            var p = new PollFd { Fd = fd, Events = 0 };
            while (true)
            {
                p.Revents = 0;
                int n = poll(ref p, (UIntPtr)1, -1);
                if (n < 0 && Marshal.GetLastWin32Error() == EINTR)
                    continue;
                if (n < 0 || (p.Revents & (POLLHUP | POLLERR | POLLNVAL)) != 0)
                    return;
            }
        }

        /// <summary>
        /// True when a read of <paramref name="fd"/> would not block: data, end of file or an
        /// error (a failing poll counts too, so that the caller goes on to read).
        /// </summary>
        public static bool Readable(int fd)
        {
            var p = new PollFd { Fd = fd, Events = POLLIN };
            return poll(ref p, (UIntPtr)1, 0) != 0;
        }

        /// <summary>True when <paramref name="fd"/> is a terminal (or when that cannot be asked).</summary>
        public static bool IsTerminal(int fd)
        {
            try
            {
                return isatty(fd) == 1;
            }
            catch (Exception)
            {
                return true;
            }
        }

        /// <summary>
        /// A stem cell's rehearsal of TakeIdentity and ReplaceEnviron (WarmUp.cs): the calls that
        /// only read are made (getresuid, getresgid, getgroups, getenv, which marshals a string as
        /// setenv does); the ones that change something are only compiled, never called.
        /// </summary>
        public static void WarmUp()
        {
            uint r, e, s;
            if (getresuid(out r, out e, out s) != 0 || getresgid(out r, out e, out s) != 0 || getgroups(0, IntPtr.Zero) < 0)
                Marshal.GetLastWin32Error();
            getenv("PATH");
            foreach (string name in new[] { "setgroups", "setresgid", "setresuid", "clearenv", "setenv", "tzset", "strerror", "_exit" })
                typeof(Native).GetMethod(name, BindingFlags.NonPublic | BindingFlags.Static).MethodHandle.GetFunctionPointer();
        }

        /// <summary>
        /// Takes uid and gid for good: no supplementary groups, then real, effective and saved gid,
        /// then uid (in that order: once the uid is not 0 the gid can no longer change). glibc's
        /// wrappers change every thread of the process (Mono's and .NET's own threads included),
        /// which the raw syscalls would not. Throws naming the call and errno.
        /// </summary>
        public static void TakeIdentity(uint uid, uint gid)
        {
            if (setgroups(UIntPtr.Zero, IntPtr.Zero) != 0)
                throw Failed("setgroups(0, NULL)");
            if (setresgid(gid, gid, gid) != 0)
                throw Failed("setresgid(" + gid + ")");
            if (setresuid(uid, uid, uid) != 0)
                throw Failed("setresuid(" + uid + ")");
            uint r, e, s;
            if (getresuid(out r, out e, out s) != 0)
                throw Failed("getresuid");
            if (r != uid || e != uid || s != uid)
                throw new InvalidOperationException("uid did not take: getresuid says " + r + "/" + e + "/" + s + ", not " + uid);
            if (getresgid(out r, out e, out s) != 0)
                throw Failed("getresgid");
            if (r != gid || e != gid || s != gid)
                throw new InvalidOperationException("gid did not take: getresgid says " + r + "/" + e + "/" + s + ", not " + gid);
            int groups = getgroups(0, IntPtr.Zero);
            if (groups != 0)
                throw groups < 0 ? Failed("getgroups") : new InvalidOperationException("getgroups still lists " + groups + " supplementary groups");
        }

        /// <summary>
        /// Makes the C library's environ exactly <paramref name="variables"/> (what native code,
        /// the time zone and, on Mono, Environment itself read), and resets the C time zone.
        /// </summary>
        public static void ReplaceEnviron(IEnumerable<KeyValuePair<string, string>> variables)
        {
            if (clearenv() != 0)
                throw Failed("clearenv");
            foreach (KeyValuePair<string, string> kv in variables)
                if (setenv(kv.Key, kv.Value, 1) != 0)
                    throw Failed("setenv(" + kv.Key + ")");
            tzset();
        }

        private static InvalidOperationException Failed(string call)
        {
            int errno = Marshal.GetLastWin32Error();
            string text = null;
            try
            {
                text = Marshal.PtrToStringAnsi(strerror(errno));
            }
            catch (Exception)
            {
            }
            return new InvalidOperationException(call + " failed: " + (text ?? "errno") + " (errno " + errno + ")");
        }
    }
}
