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

It keeps one **spare** ready (spare.py): a copy-on-write fork of itself that has paid for
everything no function changes before any request comes.

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

from spare import MAX_FDS, Spare
from specialise import (CLONE_NEWPID, PR_SET_CHILD_SUBREAPER, SYS_MOUNT_SETATTR, MountAttr, Refused, check,
                        inject_view, libc)

# It keeps one more spare of its own for forks asked of it (the daemon holds the other), made
# this long after it handed one out: at once, even as SCHED_IDLE, a fork of this process slowed
# the start just begun by milliseconds (daemon/fnhost/execution/spare.py, AHEAD_AFTER_S).
REFILL_AFTER_S = 0.03


# --- the zygote --------------------------------------------------------------------------------


class Zygote:
    def __init__(self, sock, lifeline, init):
        self.sock = sock
        self.lifeline = lifeline
        self.init = init  # fnhost-init, which spares' inits become ("": none)
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
                    spare = Spare(namespaced, self.lifeline, self.pidns, self.init)
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
            spare = Spare(namespaced, self.lifeline, self.pidns, self.init, idle=True)
        return {"spare": spare.pid}, spare.sock

    def refill(self, namespaced):
        if self.spare is None:
            try:
                self.spare = Spare(namespaced, self.lifeline, self.pidns, self.init, idle=True)
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
    init = os.environ.pop("FNHOST_ZYGOTE_INIT", "")
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
    zygote = Zygote(sock, lifeline, init)
    spare = os.environ.pop("FNHOST_ZYGOTE_SPARE", "")
    if spare:  # the kind of worker the daemon will ask for first, ready before it does
        zygote.refill(spare == "namespaced")
    sock.send(json.dumps({"ready": os.getpid()}).encode())
    zygote.serve()


if __name__ == "__main__":
    main()
