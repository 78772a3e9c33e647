"""A zygote's spare (zygote.py): a pair of processes forked ahead of the next request, which has
paid for everything no function changes, each process costing only the pages it writes.

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
   becomes the function's worker (specialise.become_worker) before the shim imports the handler. Anything failing before that
   ends it with status 125 and the reason on its stderr (the worker's log): no worker runs
   half-specialised, and a spare is used once.
"""

import json
import os
import select
import signal
import socket
import sys

from rehearsal import rehearse
from specialise import (CAP_SETGID, CAP_SETUID, CLONE_NEWCGROUP, CLONE_NEWPID, Refused, become_worker,
                        build_base, build_view, check, close_all_but, drop_bounding_set, libc, run_worker)

# A spare is made at once after a fork, and prepares itself (and rehearses) as SCHED_IDLE: it
# runs only on a core nothing else wants, so the worker just handed out, specialising on the
# same two cores, never waits for it (at nice 10 it still did, for a scheduler tick at a time).
IDLE, NORMAL = (os.SCHED_IDLE, os.sched_param(0)), (os.SCHED_OTHER, os.sched_param(0))
MAX_FDS = 16  # a fork's: 4 of the worker's, the status and spec pipes, and a cgroup.procs per hierarchy


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

    def __init__(self, namespaced, lifeline, pidns, init, idle=False):
        """``init``: fnhost-init (init.c, built by the daemon), which its init becomes ("": none,
        ``init_loop`` stands in). ``idle``: made ahead of any request, so the fork itself runs as
        SCHED_IDLE too (a copy of the zygote's page tables, beside a worker specialising on the
        same cores)."""
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
                init_main(theirs, namespaced, lifeline, init)
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


def init_main(request_sock, namespaced, lifeline, init):
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
    if init:
        try:
            close_all_but({0, 1, 2, lifeline, status_r.fileno()})
            os.set_inheritable(lifeline, True)
            os.set_inheritable(status_r.fileno(), True)
            os.execv(init, [init, str(pid), str(lifeline), str(status_r.fileno())])
        except OSError as exc:
            print(f"fnhost zygote: {init} did not run ({exc}); the Python init stands in", file=sys.stderr)
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
