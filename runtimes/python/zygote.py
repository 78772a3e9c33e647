"""fnhost's Python zygote: a warm interpreter that forks workers instead of starting them.

The daemon starts one per Python interpreter, as root, with the same flags and the same start-up
environment a spawned worker gets (``python -s``, ``PYTHONDONTWRITEBYTECODE``), so ``sys.path``,
``sys.flags`` and the modules it has imported are what a spawned worker would have: the shim
(bootstrap.py) and the standard library modules it uses, never anything of a function.

It reads requests from one SOCK_SEQPACKET socket that only the daemon holds
(daemon/fnhost/execution/zygote.py is the other end):

- ``{"fork": {"namespaced": true}}`` with file descriptors: the worker's control input and
  output, its stdout and stderr, a status pipe, a pipe holding the worker's spec (JSON, written
  by the daemon: this process never reads it, so nothing of one function is ever in the memory
  the next worker is copied from), and each ``cgroup.procs`` it is to enter (opened by the
  daemon): hand them to a spare worker, which specialises itself as the spec says, and answer
  ``{"pid": N}`` (the host pid of the worker's namespace init, which the daemon watches) or
  ``{"error": "..."}``.
- ``{"reap": N}``: the daemon has read that init's status; reap it. Until then the pid stays a
  zombie of this process, so it (and the process group it names) cannot be reused under the
  daemon's feet.

A fork makes three processes, each a copy-on-write copy of this one, so each costs only the pages
it writes:

1. **C1** leaves for the worker's control groups (every descendant is born inside), unshares the
   mount, pid, IPC, UTS and cgroup namespaces, makes every mount private, and forks C2 — the
   first process of the new pid namespace. It tells this process C2's pid and exits.
2. **C2** (pid 1 inside, root) builds the worker's filesystem view as bubblewrap does for a
   spawned worker (daemon/fnhost/execution/isolation.py): the host's root read-only, a fresh
   ``/proc`` and ``/dev``, a private size-limited ``/tmp`` and ``/dev/shm``, ``/opt`` (the layers,
   or empty), the daemon's state directory covered, and the function's code, build and the shims
   bound back. Then it forks the worker and becomes the namespace's init: it reaps, ignores the
   signals that would end a worker gracefully, exits with the worker's status as bubblewrap
   reports it (the code, or 128 + the signal), and exits at once — killing everything in the
   namespace — when the daemon's lifeline pipe closes.
3. **C3** (pid 2 inside) sets the worker's rlimits, working directory, umask, no supplementary
   groups, its gid and uid, an empty capability bounding set and ``no_new_privs``, replaces the
   environment with the function's, and only then runs the shim's ``main``, which imports the
   handler. Anything failing before that ends the process with status 125 and the reason on its
   stderr (the worker's log): no worker runs half-specialised.

Linux only, and the new mount API (``open_tree``, ``move_mount``, ``mount_setattr``: 5.12 or
newer); ``--check`` says whether this host has what forking needs.
"""

import ctypes
import errno
import gc
import json
import os
import resource
import select
import signal
import socket
import stat
import sys
import time

import bootstrap  # the shim, imported once here so that every worker starts with it loaded

# The new mount API's syscall numbers are the same on every architecture (the unified table).
SYS_OPEN_TREE, SYS_MOVE_MOUNT, SYS_MOUNT_SETATTR = 428, 429, 442
OPEN_TREE_CLONE, AT_RECURSIVE, AT_EMPTY_PATH, AT_FDCWD = 1, 0x8000, 0x1000, -100
MOVE_MOUNT_F_EMPTY_PATH = 0x4
ATTR_RDONLY, ATTR_NOSUID, ATTR_NODEV = 0x1, 0x2, 0x4
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 0x1, 0x2, 0x4, 0x8, 0x4000, 1 << 18
CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWPID = (
    0x20000, 0x2000000, 0x4000000, 0x8000000, 0x20000000)
PR_CAPBSET_DROP, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 24, 36, 38
CAP_V3 = 0x20080522
# A spare is made at once after a fork, and prepares itself at this niceness: on two cores the
# worker just handed out, specialising, should not wait for it.
SPARE_NICE = 10
INIT = ""  # fnhost-init (init.c, built by the daemon), which spares' inits become; "": none
MAX_FDS = 16  # a fork's: 4 of the worker's, the status and spec pipes, and a cgroup.procs per hierarchy
NOFILE = 1024  # the workers' limits (daemon/fnhost/execution/sandbox.py)
NPROC = 4096
MiB = 1024 * 1024
DEVICES = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8), "urandom": (1, 9), "tty": (5, 0)}
DEV_LINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
             "stderr": "/proc/self/fd/2", "core": "/proc/kcore", "ptmx": "pts/ptmx"}

with open("/proc/sys/kernel/cap_last_cap") as _f:
    CAP_LAST = int(_f.read())

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


class MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


class CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


class Refused(Exception):
    """A step of specialisation failed: the process ends with this message and status 125."""


def check(result, what):
    if result < 0:
        err = ctypes.get_errno()
        raise Refused(f"{what}: {os.strerror(err)}")
    return result


def c(path):
    return os.fsencode(path) if path is not None else None


def mount(source, target, fstype, flags, data=None):
    check(libc.mount(c(source), c(target), c(fstype), ctypes.c_ulong(flags), c(data)),
          f"mount {fstype or source} on {target}")


def clone_tree(path, attrs, clear=0):
    """A detached copy of the mounts at ``path`` (taken before anything covers it), with ``attrs``."""
    fd = check(libc.syscall(SYS_OPEN_TREE, AT_FDCWD, c(path), OPEN_TREE_CLONE | os.O_CLOEXEC | AT_RECURSIVE),
               f"open_tree {path}")
    attr = MountAttr(attrs, clear, 0, 0)
    check(libc.syscall(SYS_MOUNT_SETATTR, fd, b"", AT_EMPTY_PATH | AT_RECURSIVE, ctypes.byref(attr),
                       ctypes.sizeof(attr)), f"mount_setattr {path}")
    return fd


def attach(fd, target):
    check(libc.syscall(SYS_MOVE_MOUNT, fd, b"", AT_FDCWD, c(target), MOVE_MOUNT_F_EMPTY_PATH), f"move_mount {target}")
    os.close(fd)


def tmpfs(target, mode, size_bytes=0, flags=MS_NOSUID | MS_NODEV):
    data = f"mode={mode:o}" + (f",size={size_bytes}" if size_bytes else "")
    mount("tmpfs", target, "tmpfs", flags, data)


# --- C2: the worker's view ---------------------------------------------------------------------


def build_base():
    """The part of the view no function changes, built by a spare before any request: the
    host's root read-only, this pid namespace's ``/proc``, a fresh ``/dev``."""
    check(libc.unshare(CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS), "unshare")
    mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing of this reaches the host
    root = MountAttr(ATTR_RDONLY | ATTR_NOSUID, 0, 0, 0)
    check(libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, b"/", AT_RECURSIVE, ctypes.byref(root), ctypes.sizeof(root)),
          "mount_setattr /")
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    tmpfs("/dev", 0o755, flags=MS_NOSUID)
    for name, (major, minor) in DEVICES.items():
        os.mknod(f"/dev/{name}", 0o666 | stat.S_IFCHR, os.makedev(major, minor))
    for name in ("shm", "pts"):
        os.mkdir(f"/dev/{name}", 0o755)
    for name, target in DEV_LINKS.items():
        os.symlink(target, f"/dev/{name}")
    mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620")


def build_view(view):
    """The function's part of the view bubblewrap gives a spawned worker (isolation.wrap)."""
    # Everything bound back is cloned first: the paths are about to be covered.
    readable = [(p, clone_tree(p, ATTR_RDONLY | ATTR_NOSUID | ATTR_NODEV), os.path.isdir(p)) for p in view["readable"]]
    writable = [(p, clone_tree(p, ATTR_NOSUID | ATTR_NODEV, clear=ATTR_RDONLY), os.path.isdir(p))
                for p in view["writable"]]
    opt = clone_tree(view["opt"], ATTR_RDONLY | ATTR_NOSUID | ATTR_NODEV) if view["opt"] else None
    size = view["tmp_mb"] * MiB
    tmpfs("/tmp", 0o1777, size)
    tmpfs("/dev/shm", 0o1777, size)
    if opt is not None:
        attach(opt, "/opt")
    elif view["opt"] == "" and os.path.isdir("/opt"):
        tmpfs("/opt", 0o755, flags=MS_RDONLY | MS_NOSUID | MS_NODEV)
    covered = ["/tmp", "/dev/shm"]
    for path in view["hidden"]:
        make_parents(path, covered)
        if not os.path.isdir(path):
            os.mkdir(path, 0o711)
        tmpfs(path, 0o711)
        covered.append(path)
    for path, fd, is_dir in readable + writable:
        make_parents(path, covered)
        if not os.path.lexists(path):
            if is_dir:
                os.mkdir(path, 0o711)
            else:
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        attach(fd, path)


def make_parents(path, covered):
    """The directories on the way to ``path`` inside a fresh tmpfs: passable (0711), never listable."""
    for root in covered:
        prefix = root.rstrip("/") + "/"
        if path.startswith(prefix):
            parts = path[len(prefix):].split("/")[:-1]
            d = root.rstrip("/")
            for part in parts:
                d = f"{d}/{part}"
                if not os.path.isdir(d):
                    os.mkdir(d, 0o711)


# --- C3: the worker ----------------------------------------------------------------------------


def drop_privileges(identity):
    """What setpriv --reuid --regid --clear-groups --inh-caps=-all --bounding-set=-all --no-new-privs does."""
    for cap in range(CAP_LAST + 1):
        check(libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), "drop the capability bounding set")
    os.setgroups([])
    os.setresgid(identity["gid"], identity["gid"], identity["gid"])
    os.setresuid(identity["uid"], identity["uid"], identity["uid"])
    empty = (CapData * 2)()  # permitted and effective went with uid 0; inheritable must go too
    check(libc.capset(ctypes.byref(CapHeader(CAP_V3, 0)), empty), "clear the inheritable capabilities")
    check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "set no_new_privs")


PR_SET_MM, PR_SET_MM_MAP = 35, 14
_shown = []  # the buffers /proc shows: they must live as long as the process


class MmMap(ctypes.Structure):  # struct prctl_mm_map
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "start_code", "end_code", "start_data", "end_data", "start_brk", "brk", "start_stack",
        "arg_start", "arg_end", "env_start", "env_end")] + [
        ("auxv", ctypes.c_void_p), ("auxv_size", ctypes.c_uint32), ("exe_fd", ctypes.c_uint32)]


def show_in_proc(argv, env):
    """Make /proc/self/cmdline and /proc/self/environ (what ps shows, and what tools that find a
    function's processes by AWS_LAMBDA_FUNCTION_NAME read) the worker's, as if it had been
    exec'd: a fork shows its zygote's. PR_SET_MM_MAP, with every other field as it is; where
    the kernel refuses (no CONFIG_CHECKPOINT_RESTORE) the zygote's stay, and nothing else changes."""
    buffers = []
    for items in (argv, [f"{k}={v}" for k, v in env.items()]):
        data = b"".join(os.fsencode(item) + b"\0" for item in items)
        buffers.append((ctypes.create_string_buffer(data, len(data)), len(data)))
    with open("/proc/self/stat") as f:
        stat_line = f.read()
    fields = stat_line[stat_line.rindex(")") + 2:].split()  # field 3 onwards (man 5 proc)

    def field(n):
        return int(fields[n - 3])

    (args, args_len), (envs, envs_len) = buffers
    libc.sbrk.restype = ctypes.c_void_p
    mm = MmMap(field(26), field(27), field(45), field(46), field(47), libc.sbrk(0), field(28),
               ctypes.addressof(args), ctypes.addressof(args) + args_len,
               ctypes.addressof(envs), ctypes.addressof(envs) + envs_len, None, 0, 0xFFFFFFFF)
    if libc.prctl(PR_SET_MM, PR_SET_MM_MAP, ctypes.byref(mm), ctypes.sizeof(mm), 0) == 0:
        _shown.extend(buffers)


def become_worker(spec, fds):
    control_in, control_out, out_w, err_w = fds
    null = os.open("/dev/null", os.O_RDONLY)  # this namespace's, when it has one
    os.dup2(null, 0)
    os.dup2(out_w, 1)
    os.dup2(err_w, 2)
    close_all_but({0, 1, 2, control_in, control_out})  # nothing of the zygote's stays open
    limits = [(resource.RLIMIT_NOFILE, NOFILE)]
    if spec["identity"] and spec["identity"]["own"]:
        limits.append((resource.RLIMIT_NPROC, NPROC))  # counts the uid's processes: its own uid only
    for which, n in limits:
        resource.setrlimit(which, (n, n))
    os.chdir(spec["cwd"])
    os.umask(0o077)
    env = {**spec["env"], "FNHOST_CONTROL_FDS": f"{control_in},{control_out}"}
    show_in_proc(spec["argv"], env)
    if spec["identity"]:
        drop_privileges(spec["identity"])
    os.environ.clear()
    os.environ.update(env)
    time.tzset()  # TZ is read as the time module loads: the function's, not the zygote's
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as in any Python process
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    sys.argv = [bootstrap.__file__]
    gc.enable()


def run_worker():
    """The shim's main, and then what the interpreter does at exit (this process must not
    unwind into the zygote's frames): the exit status of SystemExit or an uncaught exception,
    non-daemon threads joined, atexit handlers, the standard streams flushed."""
    import atexit
    import threading
    import traceback

    try:
        bootstrap.main()
        code = 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except KeyboardInterrupt:
        code = 128 + signal.SIGINT
    except BaseException:
        traceback.print_exc()
        code = 1
    try:
        threading._shutdown()
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code & 0xFF)


# --- the spare: an init and a worker, forked ahead of any request ------------------------------


def fail(err_fd, message, status_w=-1):
    """End a worker that could not be specialised: the reason goes to its stderr, status 125 to
    the daemon (as a spawned worker's gate reports it)."""
    try:
        os.write(err_fd, f"fnhost zygote: cannot specialise the worker: {message}\n".encode())
        if status_w >= 0:
            os.write(status_w, bytes((125,)))
    finally:
        os._exit(125)


class Spare:
    """A pair forked ahead of the next request: its init (the zygote's child, pid 1 of a new pid
    namespace when ``namespaced``) and, below it, a worker waiting for its function.

    Neither has seen anything of any function: the worker blocks reading ``sock`` until the
    request (its spec and file descriptors) arrives, and is used for that one request only.
    """

    def __init__(self, namespaced, lifeline, pidns):
        self.namespaced = namespaced
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        if namespaced:
            # This process's children go to a fresh pid namespace: back to our own first (a
            # second unshare from a namespace that is not our own is refused), then a new one.
            check(libc.setns(pidns, CLONE_NEWPID), "setns to the zygote's pid namespace")
            check(libc.unshare(CLONE_NEWPID), "unshare the pid namespace")
        pid = os.fork()
        if pid == 0:
            try:
                close_all_but({0, 1, 2, lifeline, theirs.fileno()})  # the daemon's socket above all
                init_main(theirs, namespaced, lifeline)
            finally:
                os._exit(125)
        theirs.close()
        self.pid = pid
        self.sock = ours

    def hand(self, msg, fds):
        """Give the waiting worker its request; False if it is gone."""
        try:
            socket.send_fds(self.sock, [msg], fds)
            return True
        except OSError:
            return False
        finally:
            self.sock.close()


def close_all_but(keep):
    low = 0
    for fd in sorted(keep):
        if fd > low:
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 20)  # close_range(2): one call however high the limit


def init_main(request_sock, namespaced, lifeline):
    """The spare's init: fork the worker, then reap and report its status (as fnhost-init, if
    the daemon could build it: a fork of this process keeps a megabyte it copied on write)."""
    os.setsid()  # the daemon signals this process group; its id is this pid
    status_r, status_w = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)  # the worker sends the status pipe
    pid = os.fork()
    if pid == 0:
        status_r.close()
        os.close(lifeline)
        worker_main(request_sock, status_w, namespaced)
    request_sock.close()
    status_w.close()
    if INIT:
        try:
            close_all_but({0, 1, 2, lifeline, status_r.fileno()})
            os.set_inheritable(lifeline, True)
            os.set_inheritable(status_r.fileno(), True)
            os.execv(INIT, [INIT, str(pid), str(lifeline), str(status_r.fileno())])
        except OSError as exc:
            print(f"fnhost zygote: {INIT} did not run ({exc}); the Python init stands in", file=sys.stderr)
    init_loop(pid, status_r, lifeline)


def read_spec(fd):
    """The worker's spec, written by the daemon into a pipe only this process reads."""
    data = bytearray()
    while chunk := os.read(fd, 65536):
        data += chunk
    os.close(fd)
    return json.loads(data)


def worker_main(request_sock, status_sock, namespaced):
    """Wait for the one request, become its worker, run the shim (never returns)."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, SPARE_NICE)  # making a spare yields to the worker handed out
        if namespaced:
            os.umask(0)
            build_base()
        os.setpriority(os.PRIO_PROCESS, 0, 0)
        msg, fds, _flags, _addr = socket.recv_fds(request_sock, 16, MAX_FDS)
    except (OSError, Refused) as exc:
        print(f"fnhost zygote: a spare worker could not be prepared: {exc}", file=sys.stderr)
        os._exit(0)
    if not msg or len(fds) < 6:
        os._exit(0)  # the zygote went away (or sent nonsense): this spare was never used
    request_sock.close()
    worker_fds, status_w, spec_r, cgroup_procs = fds[:4], fds[4], fds[5], fds[6:]
    err = worker_fds[3]
    try:
        socket.send_fds(status_sock, [b"s"], [status_w])  # init reports how this process ended
        status_sock.close()
        os.close(status_w)
        spec = read_spec(spec_r)
        # Into the worker's control groups, this process and its init, before anything else (the
        # daemon opened each cgroup.procs: here /sys is read-only already).
        init = b"1" if namespaced else str(os.getppid()).encode()
        for procs in cgroup_procs:
            for pid in (init, b"0"):
                os.write(procs, pid)
            os.close(procs)
        if spec["view"] is not None:
            if not namespaced:
                raise Refused("a namespaced worker was asked of a spare without namespaces")
            check(libc.unshare(CLONE_NEWCGROUP), "unshare the cgroup namespace")  # rooted at its group
            build_view(spec["view"])
        become_worker(spec, worker_fds)
    except (OSError, Refused, ValueError, KeyError) as exc:
        fail(err, str(exc))
    run_worker()


def init_loop(worker, status_sock, lifeline):
    # A graceful stop is for the worker: init stays to report how it ended.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    poller = select.poll()
    poller.register(lifeline, 0)  # POLLHUP only: the daemon has gone
    poller.register(wake_r, select.POLLIN)
    poller.register(status_sock, select.POLLIN)
    status_w = -1
    while True:
        while True:  # the worker, and whatever was orphaned in the namespace
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                pid = 0
            if pid == 0:
                break
            if pid == worker:
                code = os.waitstatus_to_exitcode(status)
                code = (128 - code if code < 0 else code) & 0xFF  # a signal N as bubblewrap reports it: 128 + N
                if status_w < 0:  # it died before it sent the pipe (the zygote went away: it was never used)
                    status_w = receive_status(status_sock, block=False)
                try:
                    if status_w >= 0:
                        os.write(status_w, bytes((code,)))
                finally:
                    os._exit(code)
        try:
            events = poller.poll()
        except InterruptedError:
            continue
        for fd, _ in events:
            if fd == lifeline:  # the daemon is gone: so is everything this worker started
                os.killpg(0, signal.SIGKILL)  # without a pid namespace; with one, this exit does it
                os._exit(137)
            if fd == status_sock.fileno():
                status_w = receive_status(status_sock, block=True)
                poller.unregister(status_sock)
            else:
                try:
                    os.read(wake_r, 64)
                except BlockingIOError:
                    pass


def receive_status(sock, block):
    try:
        sock.setblocking(block)
        _msg, fds, _flags, _addr = socket.recv_fds(sock, 16, 1)
    except OSError:
        return -1
    return fds[0] if fds else -1


# --- the zygote --------------------------------------------------------------------------------


class Zygote:
    def __init__(self, sock, lifeline):
        self.sock = sock
        self.lifeline = lifeline
        self.pidns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        self.spare = None
        self.unused = set()  # inits of spares never handed out: ours to reap (no daemon knows them)

    def fork(self, request, fds):
        """Hand the file descriptors to a spare (made now if there is none); its init's pid, or why not.

        The function's spec is in a pipe among them, which only the spare reads: nothing of any
        function ever enters this process's memory, from which every later worker is copied."""
        try:
            if len(fds) < 6:
                return {"error": f"a fork takes at least 6 file descriptors, got {len(fds)}"}
            namespaced = bool(request["namespaced"])
            spare, self.spare = self.spare, None
            if spare is not None and spare.namespaced != namespaced:
                spare.sock.close()  # unused: its worker reads EOF and exits, and so does its init
                self.unused.add(spare.pid)
                spare = None
            for _ in range(2):
                if spare is None:
                    spare = Spare(namespaced, self.lifeline, self.pidns)
                if spare.hand(b"go", fds):
                    return {"pid": spare.pid}
                self.unused.add(spare.pid)  # a spare that died waiting (killed by someone): another
                spare = None
            return {"error": "the spare worker died before it got its function"}
        except (OSError, Refused) as exc:
            return {"error": str(exc)}
        finally:
            for fd in fds:
                os.close(fd)

    def refill(self, namespaced):
        if self.spare is None:
            try:
                self.spare = Spare(namespaced, self.lifeline, self.pidns)
            except (OSError, Refused):
                self.spare = None  # the next request makes one, and says why it could not

    def reap(self, pid):
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass

    def serve(self):
        while True:
            try:
                msg, fds, _flags, _addr = socket.recv_fds(self.sock, 4096, MAX_FDS)
            except InterruptedError:
                continue
            if not msg:
                return  # the daemon is gone
            for pid in list(self.unused):
                try:
                    if os.waitpid(pid, os.WNOHANG)[0]:
                        self.unused.discard(pid)
                except ChildProcessError:
                    self.unused.discard(pid)
            request = json.loads(msg)
            if "reap" in request:
                self.reap(int(request["reap"]))
                continue
            reply = self.fork(request["fork"], fds)
            self.sock.send(json.dumps(reply).encode())
            self.refill(bool(request["fork"]["namespaced"]))  # after the answer: off the worker's path


def check_host():
    """Exit 0 if this host lets the zygote fork namespaced workers, else 1 with the reason."""
    if not hasattr(os, "pidfd_open"):
        return "this Python has no os.pidfd_open"
    probe = MountAttr(0, 0, 0, 0)
    if libc.syscall(SYS_MOUNT_SETATTR, -1, b"", 0, ctypes.byref(probe), ctypes.sizeof(probe)) < 0 and (
            ctypes.get_errno() == errno.ENOSYS):
        return "the kernel has no mount_setattr (Linux 5.12 or newer is needed)"
    return None


def main():
    if sys.argv[1:2] == ["--check"]:
        reason = check_host()
        print(reason or "ok")
        sys.exit(1 if reason else 0)
    global INIT
    INIT = os.environ.pop("FNHOST_ZYGOTE_INIT", "")
    sock_fd, lifeline = (int(x) for x in os.environ.pop("FNHOST_ZYGOTE_FDS").split(","))
    sock = socket.socket(fileno=sock_fd)
    os.set_inheritable(lifeline, True)  # every init holds it
    check(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "become a subreaper")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the daemon's terminal's ^C is the daemon's to handle
    # What every worker imports first anyway; and the zygote's objects kept out of the
    # collector's reach, so that a worker's first collection does not copy the zygote's pages.
    import importlib  # noqa: F401
    import threading  # noqa: F401
    gc.collect()
    gc.freeze()
    gc.disable()
    zygote = Zygote(sock, lifeline)
    spare = os.environ.pop("FNHOST_ZYGOTE_SPARE", "")
    if spare:  # the kind of worker the daemon will ask for first, ready before it does
        zygote.refill(spare == "namespaced")
    sock.send(json.dumps({"ready": os.getpid()}).encode())
    zygote.serve()


if __name__ == "__main__":
    main()
