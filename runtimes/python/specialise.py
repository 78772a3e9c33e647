"""How a process forked from the Python zygote becomes one function's worker: what bubblewrap
(daemon/fnhost/execution/isolation.py) and setpriv do for a spawned worker, done in place.

``build_base`` (by a spare, before any request) and ``build_view`` (once it has its function)
give it the filesystem a spawned worker sees: the host's root read-only, a fresh ``/proc`` and
``/dev``, a private size-limited ``/tmp`` and ``/dev/shm``, ``/opt`` (the layers, or empty), the
daemon's state directory covered and the function's code, build and the shims bound back.
``become_worker`` sets the rlimits, working directory, umask, no supplementary groups, its gid
and uid, an empty capability bounding set and ``no_new_privs``, what /proc shows of it, and its
environment; ``run_worker`` then runs the shim's ``main``, which imports the handler.

Linux only, with the new mount API (``open_tree``, ``move_mount``, ``mount_setattr``: 5.12 or
newer), through ctypes: standard library only, like the shim.
"""

import ctypes
import gc
import os
import resource
import signal
import stat
import sys
import time

import bootstrap  # the shim, imported once in the zygote so that every worker starts with it loaded

# The new mount API's syscall numbers are the same on every architecture (the unified table).
SYS_OPEN_TREE, SYS_MOVE_MOUNT, SYS_MOUNT_SETATTR = 428, 429, 442
OPEN_TREE_CLONE, AT_RECURSIVE, AT_EMPTY_PATH, AT_FDCWD = 1, 0x8000, 0x1000, -100
MOVE_MOUNT_F_EMPTY_PATH = 0x4
ATTR_RDONLY, ATTR_NOSUID, ATTR_NODEV = 0x1, 0x2, 0x4
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 0x1, 0x2, 0x4, 0x8, 0x4000, 1 << 18
CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWPID = (
    0x20000, 0x2000000, 0x4000000, 0x8000000, 0x20000000)
PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 4, 24, 36, 38
CAP_SETGID, CAP_SETUID = 6, 7
CELL_NICE = 10  # a stem cell's priority until it is specialised (daemon/fnhost/execution/stemcell.py)
CAP_V3 = 0x20080522
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


# --- the worker's view -----------------------------------------------------------------------


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
    bind_back(readable + writable, covered)


def bind_back(trees, covered):
    """Attach each cloned tree (path, fd, is_dir) at its path, under the tmpfs mounts ``covered``."""
    for path, fd, is_dir in trees:
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


# --- the worker --------------------------------------------------------------------------------


def inject_view(part, target):
    """Bind a function's code, build and layers into a stem cell's view from outside: what
    ``build_view`` binds for a forked worker, into the mount namespace of the process that
    ``target`` (a pidfd) is. In a process of its own: it leaves the zygote's namespace."""
    readable = [(p, clone_tree(p, ATTR_RDONLY | ATTR_NOSUID | ATTR_NODEV), os.path.isdir(p)) for p in part["readable"]]
    opt = clone_tree(part["opt"], ATTR_RDONLY | ATTR_NOSUID | ATTR_NODEV) if part["opt"] else None
    check(libc.setns(target, CLONE_NEWNS), "setns to the stem cell's mount namespace")
    os.chdir("/")
    if opt is not None:
        attach(opt, "/opt")  # over the cell's empty read-only /opt
    bind_back(readable, list(part["covered"]))


# What this process's bounding set still holds, as far as drop_bounding_set knows. Each drop
# commits a new set of credentials (~5 µs; 0.2-0.3 ms for all 41), dropped or not before: a spare
# drops all but two while it waits (spare.py), and its worker then only those two.
_bounding = set(range(CAP_LAST + 1))


def drop_bounding_set(keep=()):
    """Every capability but ``keep`` out of the bounding set: no exec can grant it again. The
    capabilities this process holds now stay (mounting, taking a uid): the bounding set only
    limits what an exec may give."""
    for cap in sorted(_bounding.difference(keep)):
        check(libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), "drop the capability bounding set")
        _bounding.discard(cap)


def keep_only_setid():
    """A stem cell waits as root holding CAP_SETUID and CAP_SETGID only, to take its function's
    uid when it gets one (protos/worker-protocol.md, "Stem cells"); every other capability is
    gone from its bounding set, so its exec (as root) gets these two and nothing else."""
    drop_bounding_set(keep=(CAP_SETUID, CAP_SETGID))
    os.setgroups([])
    two = (1 << CAP_SETUID) | (1 << CAP_SETGID)
    caps = (CapData * 2)(CapData(two, two, 0), CapData(0, 0, 0))
    check(libc.capset(ctypes.byref(CapHeader(CAP_V3, 0)), caps), "keep CAP_SETUID and CAP_SETGID only")
    check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "set no_new_privs")


def drop_privileges(identity):
    """What setpriv --reuid --regid --clear-groups --inh-caps=-all --bounding-set=-all --no-new-privs does."""
    drop_bounding_set()
    os.setgroups([])
    os.setresgid(identity["gid"], identity["gid"], identity["gid"])
    os.setresuid(identity["uid"], identity["uid"], identity["uid"])
    empty = (CapData * 2)()  # permitted and effective went with uid 0; inheritable must go too
    check(libc.capset(ctypes.byref(CapHeader(CAP_V3, 0)), empty), "clear the inheritable capabilities")
    check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "set no_new_privs")
    # A uid change makes the process undumpable (its /proc files root's, no same-uid ptrace);
    # a spawned worker's exec made it dumpable again, and so must this.
    check(libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), "stay dumpable")


PR_SET_MM, PR_SET_MM_MAP = 35, 14
_shown = []  # the buffers /proc shows: they must live as long as the process


class MmMap(ctypes.Structure):  # struct prctl_mm_map
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "start_code", "end_code", "start_data", "end_data", "start_brk", "brk", "start_stack",
        "arg_start", "arg_end", "env_start", "env_end")] + [
        ("auxv", ctypes.c_void_p), ("auxv_size", ctypes.c_uint32), ("exe_fd", ctypes.c_uint32)]


def _stat_fields():
    """/proc/self/stat from field 3 on (man 5 proc): where the code, data and stack are. The
    same in every fork of the zygote, so read once, as the zygote imports this module."""
    with open("/proc/self/stat") as f:
        stat_line = f.read()
    return stat_line[stat_line.rindex(")") + 2:].split()


STAT = _stat_fields()


def proc_map(argv, env):
    """The PR_SET_MM_MAP that shows ``argv`` and ``env`` in /proc, every other field as it is,
    and the buffers it points into."""
    buffers = []
    for items in (argv, [f"{k}={v}" for k, v in env.items()]):
        data = b"".join(os.fsencode(item) + b"\0" for item in items)
        buffers.append((ctypes.create_string_buffer(data, len(data)), len(data)))

    def field(n):
        return int(STAT[n - 3])

    (args, args_len), (envs, envs_len) = buffers
    libc.sbrk.restype = ctypes.c_void_p
    mm = MmMap(field(26), field(27), field(45), field(46), field(47), libc.sbrk(0), field(28),
               ctypes.addressof(args), ctypes.addressof(args) + args_len,
               ctypes.addressof(envs), ctypes.addressof(envs) + envs_len, None, 0, 0xFFFFFFFF)
    return mm, buffers


def show_in_proc(argv, env):
    """Make /proc/self/cmdline and /proc/self/environ (what ps shows, and what tools that find a
    function's processes by AWS_LAMBDA_FUNCTION_NAME read) the worker's, as if it had been
    exec'd: a fork shows its zygote's. PR_SET_MM_MAP, with every other field as it is; where
    the kernel refuses (no CONFIG_CHECKPOINT_RESTORE) the zygote's stay, and nothing else changes."""
    mm, buffers = proc_map(argv, env)
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
    if spec.get("exec"):  # another runtime's worker: this process only set it up
        if spec["identity"] and spec["identity"].get("cell"):
            if os.geteuid() == 0:
                # A cell starts (and rehearses) beside the invocations it will serve: at a lower
                # priority, which every thread it starts inherits; the daemon restores it when a
                # function takes the cell (only root may raise a priority: CAP_SYS_NICE goes now).
                os.setpriority(os.PRIO_PROCESS, 0, CELL_NICE)
                keep_only_setid()
        elif spec["identity"]:
            drop_privileges(spec["identity"])
        exec_worker(spec["argv"], env, (control_in, control_out))
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


def exec_worker(argv, env, control):
    """Become ``argv`` (any runtime's worker), set up as above: what a spawned worker gets from
    bubblewrap, setpriv and prlimit, without the processes that do it. Signals as a freshly
    spawned process has them (Python ignores SIGPIPE and SIGXFSZ; exec keeps what is ignored)."""
    for fd in control:
        os.set_inheritable(fd, True)
    for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    os.execve(argv[0], argv, env)  # raises OSError (the caller ends the process with it)


def run_worker():
    """The shim's main, and then what the interpreter does at exit (this process must not
    unwind into the zygote's frames): the exit status of SystemExit or an uncaught exception,
    non-daemon threads joined, atexit handlers, the standard streams flushed."""
    import atexit
    import threading
    import traceback

    try:
        bootstrap.main(watch_daemon=False)  # the worker's init watches the daemon's lifeline
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


def close_all_but(keep):
    low = 0
    for fd in sorted(keep):
        if fd > low:
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 20)  # close_range(2): one call however high the limit
