"""What a spare rehearses while it waits for its function (spare.py's ``worker_main``).

A spare is a copy-on-write fork of the zygote: every page of the zygote's heap that the worker
writes — a reference count is a write — is copied when first written, at about 3 µs a page on
the hosts measured (bench/PROFILE.md §18). From the request to the first RESULT a worker wrote
~420 such pages: over a millisecond of its cold start. Run beforehand on stand-ins, the same
steps copy those pages while nobody waits, as the spare prepares (SCHED_IDLE): parse a spec, build
what /proc will show, replace the environment with itself, say HELLO into a pipe, import and
invoke a stand-in handler (stand-in/stand_in.py, the shim's own) through the real invoke path.

Nothing of it stays: no function's code or data is involved, the environment, ``sys.path``,
``sys.modules`` and the import caches are as they were, nothing is written outside this
process. A rehearsal that fails only costs the copies it would have saved: it is silent.
"""

import importlib  # noqa: F401 - load_handler's; imported with this module (in the zygote), not by a spare
import importlib.machinery  # noqa: F401 - use_built_bytecode's, likewise
import json
import os
import sys
import time

import bootstrap
import specialise

STAND_IN = os.path.join(os.path.dirname(os.path.abspath(bootstrap.__file__)), "stand-in")
MODULE = "stand_in"
SPEC = {  # the shape of a spec the daemon sends (spawn.fork), with made-up values
    "argv": ["/usr/bin/python3", "-s", "bootstrap.py"], "exec": False, "cwd": "/var/task",
    "env": {f"REHEARSAL_{i}": "x" * 24 for i in range(24)},
    "identity": {"uid": 65534, "gid": 65534, "own": True},
    "view": {"hidden": ["/var/lib/fnhost"], "readable": ["/var/task"], "writable": [], "tmp_mb": 512, "opt": ""},
}
INIT = {"function_name": "rehearsal", "function_version": "$LATEST", "memory_mb": 128,
        "log_group_name": "/aws/lambda/rehearsal", "log_stream_name": "rehearsal",
        "invoked_function_arn": "arn:aws:lambda:local:000000000000:function:rehearsal",
        "handler": f"{MODULE}.handler", "code_dir": STAND_IN, "environment": {}}


class _Done(Exception):
    """The stand-in's one invocation has been answered."""


class _Channel:
    """One INVOKE in, its reply kept: the invoke path's own frames, on no pipe."""

    def __init__(self):
        request_id = b"rehearsal-request"
        deadline_ms = int(time.time() * 1000) + 60_000
        self.frames = [(bootstrap.INVOKE, bytes((len(request_id),)) + request_id
                        + bootstrap.DEADLINE_CONTEXT.pack(deadline_ms, 0) + b'{"rehearsal": true}')]
        self.replies = []

    def read(self):
        if not self.frames:
            raise _Done
        return self.frames.pop()

    def write(self, kind, *parts):
        self.replies.append((kind, b"".join(parts)))


def rehearse(called):
    """The worker's steps on stand-ins (see the module's docstring); True if all of them ran.
    ``called()``: whether the request has come, checked between steps: the rest is skipped."""
    path, importers = list(sys.path), set(sys.path_importer_cache)
    environ = dict(os.environ)
    try:
        spec = json.loads(json.dumps(SPEC))
        specialise.proc_map(spec["argv"], spec["env"])
        os.environ.clear()
        os.environ.update(environ)
        if called():
            return False
        hello_r, hello_w = os.pipe()
        try:
            channel = bootstrap.Channel(hello_r, hello_w)
            channel.write(bootstrap.HELLO, json.dumps({"protocol": bootstrap.PROTOCOL_VERSION, "runtime": "python",
                                                       "runtime_version": sys.version.split()[0],
                                                       "pid": os.getpid()}).encode())
            channel.read()
        finally:
            os.close(hello_r)
            os.close(hello_w)
        if called():
            return False
        func = bootstrap.load_handler(INIT["handler"], INIT["code_dir"])
        if called():
            return False
        stand_in = _Channel()
        try:
            bootstrap.serve(stand_in, INIT, func)
        except _Done:
            pass
        return [kind for kind, _ in stand_in.replies] == [bootstrap.RESULT]
    except Exception:  # noqa: BLE001 - a rehearsal only saves time; the real steps report their own errors
        return False
    finally:
        sys.modules.pop(MODULE, None)
        sys.path[:] = path
        for key in set(sys.path_importer_cache) - importers:
            del sys.path_importer_cache[key]
        if dict(os.environ) != environ:
            os.environ.clear()
            os.environ.update(environ)
