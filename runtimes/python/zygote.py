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
- ``{"inject": {"readable": [...], "opt": path or null, "covered": [...]}}`` with one file
  descriptor, a pidfd of a stem cell (protos/worker-protocol.md): bind those paths into that
  process's mount namespace (specialise.inject_view) from a child of this process, which alone
  enters it, and answer ``{"ok": true}`` or ``{"error": "..."}``.
- ``{"spare": {"namespaced": true}}``: hand the daemon a spare (below) as ``{"spare": N}`` (its
  init's pid) with one file descriptor, this process's end of the spare's socket, which it then
  closes. The daemon sends the spare its fork's file descriptors itself, one hop fewer than a
  ``fork``; it asks for the next spare once it has used one. ``{"error": "..."}`` if none can be made.
- ``{"drop": N}``: a spare the daemon held was not used (it closed its socket: the spare exits);
  reap its init once it has.
- ``{"reap": N}``: the daemon has read that init's status; reap it. Until then the pid stays a
  zombie of this process, so it (and the process group it names) cannot be reused under the
  daemon's feet.

It keeps one **spare** ready: a copy-on-write fork of itself that paid for everything no
function changes before any request comes, each process of it costing only the pages it writes:

1. Its **init**: forked into a fresh pid namespace (the zygote re-enters its own and unshares a
   new one before each spare), pid 1 there. It forks the worker, then becomes fnhost-init
   (init.c, when the daemon could build it) or stays in ``init_loop``: it reaps, ignores the
   signals that would end a worker gracefully, reports the worker's status as bubblewrap does
   (the code, or 128 + the signal) on the status pipe the worker sends it, and exits at once —
   the kernel ending everything in the namespace with it — when the daemon's lifeline closes.
2. Its **worker** (pid 2 there): unshares the mount, IPC and UTS namespaces and builds the view's
   base (specialise.build_base), empties the capability bounding set but for the two a stem
   cell's exec keeps (CAP_SETUID, CAP_SETGID: 41 drops, each a new set of credentials, cost
   0.2-0.3 ms on the worker's path), rehearses the worker's steps on stand-ins so that the pages
   they write are copied now rather than on the worker's path (rehearsal.py), then waits on its
   socket, which the daemon holds once the spare is handed over. ``join`` with a cgroup.procs
   per hierarchy: it moves itself and its init into its worker's control groups while it waits
   (daemon/fnhost/execution/spare.py). ``go`` with a fork's file descriptors: its request. With
   it, it sends the init the status pipe, enters the function's control groups unless it joined
   them (the init too) and a cgroup namespace, binds the function's part of the view, and
   becomes the function's worker
   (specialise.become_worker) before the shim imports the handler. Anything failing before that
   ends it with status 125 and the reason on its stderr (the worker's log): no worker runs
   half-specialised, and a spare is used once.

The zygote keeps a spare of its own too, for forks asked of it (the daemon holds the other),
made REFILL_AFTER_S after it hands one out; spares prepare as SCHED_IDLE.

Linux only (specialise.py says what it needs); ``--check`` says whether this host has it.
"""

import ctypes
import errno
import gc
import json
import os
import select
import signal
import socket
import sys
import time

from rehearsal import rehearse
from specialise import (CAP_SETGID, CAP_SETUID, CLONE_NEWCGROUP, CLONE_NEWPID, PR_SET_CHILD_SUBREAPER,
                        SYS_MOUNT_SETATTR, MountAttr, Refused, become_worker, build_base, build_view,
                        check, close_all_but, drop_bounding_set, inject_view, libc, run_worker)

# A spare is made at once after a fork, and prepares itself (and rehearses) as SCHED_IDLE: it
# runs only on a core nothing else wants, so the worker just handed out, specialising on the
# same two cores, never waits for it (at nice 10 it still did, for a scheduler tick at a time).
IDLE, NORMAL = (os.SCHED_IDLE, os.sched_param(0)), (os.SCHED_OTHER, os.sched_param(0))
# It keeps one more spare of its own for forks asked of it (the daemon holds the other), made
# this long after it handed one out: at once, even as SCHED_IDLE, a fork of this process slowed
# the start just begun by milliseconds (daemon/fnhost/execution/spare.py, AHEAD_AFTER_S).
REFILL_AFTER_S = 0.03
INIT = ""  # fnhost-init (init.c, built by the daemon), which spares' inits become; "": none
MAX_FDS = 16  # a fork's: 4 of the worker's, the status and spec pipes, and a cgroup.procs per hierarchy


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

    def __init__(self, namespaced, lifeline, pidns, idle=False):
        """``idle``: made ahead of any request, so the fork itself runs as SCHED_IDLE too (a
        copy of the zygote's page tables, beside a worker specialising on the same cores)."""
        self.namespaced = namespaced
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        if namespaced:
            # This process's children go to a fresh pid namespace: back to our own first (a
            # second unshare from a namespace that is not our own is refused), then a new one.
            check(libc.setns(pidns, CLONE_NEWPID), "setns to the zygote's pid namespace")
            check(libc.unshare(CLONE_NEWPID), "unshare the pid namespace")
        idle = idle and os.geteuid() == 0  # only root may leave SCHED_IDLE again
        if idle:
            os.sched_setscheduler(0, *IDLE)
        pid = -1
        try:
            pid = os.fork()
        finally:
            if idle and pid != 0:
                os.sched_setscheduler(0, *NORMAL)
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
    if os.sched_getscheduler(0) == os.SCHED_IDLE:  # born of an idle fork: the worker has its own
        os.sched_setscheduler(0, *NORMAL)  # an init reports and ends its worker promptly
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


def join_groups(cgroup_procs, namespaced):
    """Into the worker's control groups, this process and its init, before anything of the
    function (the daemon opened each cgroup.procs: here /sys is read-only already). Sent while
    the spare waits (``join``, so that the move is off the worker's path), or with the request."""
    init = b"1" if namespaced else str(os.getppid()).encode()
    for procs in cgroup_procs:
        for pid in (init, b"0"):
            os.write(procs, pid)
        os.close(procs)


def worker_main(request_sock, status_sock, namespaced):
    """Wait for the one request, become its worker, run the shim (never returns)."""
    try:
        # Preparing a spare yields to the worker just handed out; only root may leave SCHED_IDLE
        # afterwards, so a zygote that is not root prepares at the normal priority.
        renice = os.geteuid() == 0
        if renice:
            os.sched_setscheduler(0, *IDLE)
        if namespaced:
            os.umask(0)
            build_base()
            if renice:
                # Its worker takes a function's uid (a view comes with one) and drops the bounding
                # set: all of it but what a stem cell's exec keeps goes now, off the request's path.
                drop_bounding_set(keep=(CAP_SETUID, CAP_SETGID))
        readable = select.poll()
        readable.register(request_sock, select.POLLIN)

        def called():
            """Whether the request has come (a ``join`` before it is taken here, and done)."""
            while readable.poll(0):
                if request_sock.recv(16, socket.MSG_PEEK) != b"join":
                    return True
                join_groups(socket.recv_fds(request_sock, 16, MAX_FDS)[1], namespaced)
            return False

        rehearse(called)  # the worker's first pages copied now (rehearsal.py)
        if renice:
            os.sched_setscheduler(0, *NORMAL)
        while True:
            msg, fds, _flags, _addr = socket.recv_fds(request_sock, 16, MAX_FDS)
            if msg != b"join":
                break
            join_groups(fds, namespaced)
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
        join_groups(cgroup_procs, namespaced)  # none if it joined them while it waited
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

    def give_spare(self, namespaced):
        """Hand a spare's socket to the daemon, which then gives it its request itself (one hop
        fewer on a cold start): the one kept, or a new one. Returns the answer and the fd."""
        spare, self.spare = self.spare, None
        if spare is not None and spare.namespaced != namespaced:
            spare.sock.close()
            self.unused.add(spare.pid)
            spare = None
        if spare is None:
            spare = Spare(namespaced, self.lifeline, self.pidns, idle=True)
        return {"spare": spare.pid}, spare.sock

    def refill(self, namespaced):
        if self.spare is None:
            try:
                self.spare = Spare(namespaced, self.lifeline, self.pidns, idle=True)
            except (OSError, Refused):
                self.spare = None  # the next request makes one, and says why it could not

    def inject(self, part, fds):
        """Bind a function's paths into a stem cell's view (see the module's docstring)."""
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            return {"error": f"an inject takes one file descriptor, got {len(fds)}"}
        err_r, err_w = os.pipe()
        try:
            # This child must not be born in the pid namespace unshared for the last spare: were
            # that spare's init slow to fork its worker (it prepares as SCHED_IDLE), this child
            # would take pid 2 there, the worker's (found by a busy host's stem cells).
            check(libc.setns(self.pidns, CLONE_NEWPID), "setns to the zygote's pid namespace")
            pid = os.fork()
            if pid == 0:
                try:
                    os.close(err_r)
                    os.umask(0)
                    inject_view(part, fds[0])
                    os._exit(0)
                except BaseException as exc:  # noqa: BLE001 - whatever it was, the daemon hears of it
                    os.write(err_w, str(exc).encode()[:4000] or type(exc).__name__.encode())
                    os._exit(1)
            os.close(err_w)
            err_w = -1
            reason = b""
            while chunk := os.read(err_r, 4096):
                reason += chunk
            _, status = os.waitpid(pid, 0)
            if status == 0:
                return {"ok": True}
            return {"error": reason.decode(errors="replace") or f"status {os.waitstatus_to_exitcode(status)}"}
        except (OSError, Refused) as exc:
            return {"error": str(exc)}
        finally:
            os.close(err_r)
            if err_w >= 0:
                os.close(err_w)
            os.close(fds[0])

    def reap(self, pid):
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass

    def serve(self):
        readable = select.poll()
        readable.register(self.sock, select.POLLIN)
        refill = None  # (when, namespaced): the next spare, made once the last start is under way
        while True:
            if refill is not None:
                wait_ms = max(0, int((refill[0] - time.monotonic()) * 1000))
                if not readable.poll(wait_ms):
                    self.refill(refill[1])
                    refill = None
                    continue
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
            if "drop" in request:  # a spare the daemon held and never used: its init is ours to reap
                self.unused.add(int(request["drop"]))
                continue
            if "spare" in request:
                try:
                    reply, spare_sock = self.give_spare(bool(request["spare"]["namespaced"]))
                except (OSError, Refused) as exc:
                    self.sock.send(json.dumps({"error": str(exc)}).encode())
                    continue
                socket.send_fds(self.sock, [json.dumps(reply).encode()], [spare_sock.fileno()])
                spare_sock.close()  # the daemon's now, alone
                refill = (time.monotonic() + REFILL_AFTER_S, bool(request["spare"]["namespaced"]))
                continue
            if "inject" in request:
                self.sock.send(json.dumps(self.inject(request["inject"], fds)).encode())
                continue
            reply = self.fork(request["fork"], fds)
            self.sock.send(json.dumps(reply).encode())
            refill = (time.monotonic() + REFILL_AFTER_S, bool(request["fork"]["namespaced"]))


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
