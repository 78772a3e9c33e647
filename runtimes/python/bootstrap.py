"""fnhost's Python worker: speaks protos/worker-protocol.md, runs one Lambda handler.

Standard library only. Kept to one file, and imports are few, because every cold start pays for
them before the user's code even loads.
"""

import _thread
import json
import os
import struct
import sys
import time
import traceback

PROTOCOL_VERSION = 3
HELLO, INIT, INIT_OK, INIT_ERROR, INVOKE, RESULT, ERROR, SPECIALISE = range(1, 9)
HEADER = struct.Struct(">IB")
DEADLINE_CONTEXT = struct.Struct(">QI")  # INVOKE: deadline_ms, then the context's length


class Channel:
    """Blocking frame I/O on the two inherited pipe fds."""

    def __init__(self, fd_in, fd_out):
        self.fd_in = fd_in
        self.fd_out = fd_out
        self.buf = bytearray()

    def _fill(self, n):
        while len(self.buf) < n:
            chunk = os.read(self.fd_in, max(65536, n - len(self.buf)))
            if not chunk:
                daemon_gone()
            self.buf += chunk

    def read(self):
        self._fill(5)
        length, kind = HEADER.unpack_from(self.buf)
        self._fill(4 + length)
        body = bytes(self.buf[5 : 4 + length])
        del self.buf[: 4 + length]
        return kind, body

    def write(self, kind, *parts):
        size = sum(len(p) for p in parts)
        data = HEADER.pack(size + 1, kind) + b"".join(parts)
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd_out, view) :]


def daemon_gone():
    """The daemon closed our input: end this worker and whatever its handler started."""
    try:
        os.killpg(os.getpid(), 9)  # we lead our process group (the daemon starts a new session)
    finally:
        os._exit(0)


def watch_for_daemon_exit(fd_in):
    """Exit as soon as the daemon's end of our input pipe closes, even mid-handler.

    poll() with no requested events still reports POLLHUP, and it consumes nothing, so the main
    thread's reads are undisturbed.
    """
    import select

    poller = select.poll()
    poller.register(fd_in, 0)
    while True:
        for _, events in poller.poll():
            if events & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
                daemon_gone()


class Client:
    """The mobile app that called, under awslambdaric's names (``context.client_context.client``)."""

    __slots__ = ("installation_id", "app_title", "app_version_name", "app_version_code", "app_package_name")


class ClientContext:
    """Lambda's ClientContext as awslambdaric shapes it: ``.client``, ``.custom``, ``.env``."""

    __slots__ = ("custom", "env", "client")


def from_dict(cls, values):
    obj = cls()
    for name in cls.__slots__:
        setattr(obj, name, values.get(name))
    return obj


class InvalidContext(Exception):
    """INVOKE's context is not the JSON object the protocol describes."""


def parse_context(raw):
    """(client context, invoked ARN or None) from INVOKE's context JSON; raises InvalidContext."""
    try:
        context = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise InvalidContext(f"it is not JSON: {exc}") from None
    if not isinstance(context, dict):
        raise InvalidContext("it is not a JSON object")
    values = context.get("client_context")
    arn = context.get("invoked_function_arn")
    if values is not None and not isinstance(values, dict):
        raise InvalidContext("client_context is not a JSON object")
    if arn is not None and not isinstance(arn, str):
        raise InvalidContext("invoked_function_arn is not a string")
    client_context = None
    if values is not None:
        client_context = from_dict(ClientContext, values)
        client = values.get("client")
        if client is not None and not isinstance(client, dict):
            raise InvalidContext("client_context.client is not a JSON object")
        client_context.client = from_dict(Client, client) if client is not None else None
    return client_context, arn


class LambdaContext:
    """The context object Lambda's Python runtime passes as the handler's second argument."""

    def __init__(self, init, request_id, deadline_ms, client_context=None, invoked_function_arn=None):
        self.aws_request_id = request_id
        self.function_name = init["function_name"]
        self.function_version = init["function_version"]
        self.memory_limit_in_mb = init["memory_mb"]
        self.log_group_name = init["log_group_name"]
        self.log_stream_name = init["log_stream_name"]
        self.invoked_function_arn = invoked_function_arn or init["invoked_function_arn"]
        self.identity = None
        self.client_context = client_context
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self):
        return max(0, int(self._deadline_ms - time.time() * 1000))


def error_json(error_type, message, tb=None):
    trace = traceback.format_list(traceback.extract_tb(tb)) if tb is not None else []
    return json.dumps(
        {"errorType": error_type, "errorMessage": message, "stackTrace": trace}
    ).encode()


def user_frames(exc):
    """The traceback without this shim's own frames, as Lambda shows it."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return tb


BYTECODE_DIR = "bytecode"  # in the build directory: what build.py compiled at deploy


def use_built_bytecode(code_dir, build_dir, layers_dir=None):
    """Import the function's modules (those under ``code_dir``, and under ``layers_dir``/python
    where its layers are) from the bytecode its build compiled (build.py), each checked against
    its source's hash; any other module as usual.

    The bytecode mirrors the code as ``sys.pycache_prefix`` would. The prefix is in force only
    while one of the function's modules is loaded, so the standard library and site-packages keep
    their own ``__pycache__``. A module without bytecode, or whose source changed, is compiled
    from its source as before; nothing is ever written."""
    if not build_dir or build_dir == code_dir:  # deployed before builds compiled it: nothing built
        return
    prefix = os.path.join(build_dir, BYTECODE_DIR)
    if not os.path.isdir(prefix):
        return
    from importlib import machinery

    class BuiltLoader(machinery.SourceFileLoader):
        def get_code(self, fullname):
            saved, sys.pycache_prefix = sys.pycache_prefix, prefix
            try:
                return super().get_code(fullname)
            finally:
                sys.pycache_prefix = saved

    loaders = ((BuiltLoader, machinery.SOURCE_SUFFIXES), (machinery.ExtensionFileLoader, machinery.EXTENSION_SUFFIXES),
               (machinery.SourcelessFileLoader, machinery.BYTECODE_SUFFIXES))
    roots = [code_dir.rstrip(os.sep)]
    if layers_dir:
        roots.append(os.path.join(layers_dir, "python"))
    inside = tuple(root + os.sep for root in roots)

    def finder(path):
        if (path not in roots and not path.startswith(inside)) or not os.path.isdir(path):
            raise ImportError("not a directory of the function's code")  # the next hook's (a zip's, say)
        return machinery.FileFinder(path, *loaders)

    sys.path_hooks.insert(0, finder)
    for path in list(sys.path_importer_cache):
        if path in roots or path.startswith(inside):
            del sys.path_importer_cache[path]


def load_handler(handler, code_dir):
    """Import the handler's module and return the function, or raise InitFailure."""
    modname, _, funcname = handler.rpartition(".")
    if not modname or not funcname:
        raise InitFailure(
            "Runtime.MalformedHandlerName",
            f"Bad handler '{handler}': not enough values to unpack (expected module.function)",
        )
    modname = modname.replace("/", ".")
    if sys.path[0] != code_dir:
        sys.path.insert(0, code_dir)
    try:
        import importlib

        module = importlib.import_module(modname)
    except SyntaxError as exc:
        raise InitFailure(
            "Runtime.UserCodeSyntaxError",
            f"Syntax error in module '{modname}': {exc}",
            exc,
        ) from exc
    except ImportError as exc:
        raise InitFailure(
            "Runtime.ImportModuleError", f"Unable to import module '{modname}': {exc}", exc
        ) from exc
    except Exception as exc:
        raise InitFailure(
            "Runtime.InitError",
            f"Init error in module '{modname}': {type(exc).__name__}: {exc}",
            exc,
        ) from exc
    func = getattr(module, funcname, None)
    if func is None or not callable(func):
        raise InitFailure(
            "Runtime.HandlerNotFound", f"Handler '{funcname}' missing on module '{modname}'"
        )
    return func


class InitFailure(Exception):
    def __init__(self, error_type, message, cause=None):
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.cause = cause


def flush_std():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def serve(channel, init, func):
    loads, dumps = json.loads, json.dumps
    arn_only = (None, None)  # the last context that held only an ARN: (its bytes, the ARN)
    while True:
        kind, body = channel.read()
        if kind != INVOKE:
            raise RuntimeError(f"expected INVOKE, got frame kind {kind}")
        n = body[0]
        request_id = body[1 : 1 + n]
        deadline_ms, context_len = DEADLINE_CONTEXT.unpack_from(body, 1 + n)
        id_head = bytes((n,)) + request_id
        start = 13 + n + context_len
        client_context = arn = None
        if context_len:
            raw = body[13 + n : start]
            if raw == arn_only[0]:  # Lambda's API names the same ARN on every call: parsed once
                arn = arn_only[1]
            else:
                try:
                    client_context, arn = parse_context(raw)
                except InvalidContext as exc:
                    flush_std()
                    channel.write(ERROR, id_head, error_json(
                        "Runtime.InvalidContext", f"Unable to parse the invocation's context: {exc}"))
                    continue
                if client_context is None:  # a client context is the handler's to change: never shared
                    arn_only = (raw, arn)
        try:
            event = loads(body[start:])
        except ValueError as exc:
            flush_std()
            channel.write(
                ERROR, id_head, error_json("Runtime.UnmarshalError", f"Unable to unmarshal input: {exc}")
            )
            continue
        context = LambdaContext(init, request_id.decode(), deadline_ms, client_context, arn)
        try:
            result = func(event, context)
        except Exception as exc:
            flush_std()
            channel.write(ERROR, id_head, error_json(type(exc).__name__, str(exc), user_frames(exc)))
            continue
        try:
            out = dumps(result).encode()
        except (TypeError, ValueError) as exc:
            flush_std()
            channel.write(
                ERROR, id_head, error_json("Runtime.MarshalError", f"Unable to marshal response: {exc}")
            )
            continue
        flush_std()
        channel.write(RESULT, id_head, out)


def add_layers(layers):
    """Lambda's order: the code (inserted at INIT), then the layers' site-packages, then /opt/python."""
    if layers:
        version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
        sys.path[0:0] = [f"{layers}/python/lib/{version}/site-packages", f"{layers}/python"]


def specialise(spec):
    """SPECIALISE's steps 1-3: the function's identity, environment and working directory.
    OSError names the step that failed."""
    identity = spec.get("identity")
    if identity:
        uid, gid = identity["uid"], identity["gid"]
        try:
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot take uid {uid} gid {gid}: {exc.strerror}") from None
        if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid) or os.getgroups():
            raise OSError(0, f"uid {uid} gid {gid} did not take: {os.getresuid()} {os.getresgid()}")
        import ctypes  # only here: a spawned worker never pays for it

        ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE: as dumpable as an exec'd process
    os.environ.clear()
    os.environ.update(spec["process_environment"])
    time.tzset()
    try:
        os.chdir(spec["cwd"])
    except OSError as exc:
        raise OSError(exc.errno, f"cannot enter {spec['cwd']}: {exc.strerror}") from None


def main(watch_daemon=True):
    fd_in, fd_out = (int(x) for x in os.environ.pop("FNHOST_CONTROL_FDS").split(","))
    # User code must not inherit the protocol pipes into processes it starts.
    os.set_inheritable(fd_in, False)
    os.set_inheritable(fd_out, False)
    # The shim's folder is sys.path[0]; the function's code takes its place.
    if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
        del sys.path[0]
    channel = Channel(fd_in, fd_out)
    channel.write(
        HELLO,
        json.dumps(
            {
                "protocol": PROTOCOL_VERSION,
                "runtime": "python",
                "runtime_version": sys.version.split()[0],
                "pid": os.getpid(),
            }
        ).encode(),
    )
    if watch_daemon:  # not in a worker forked by the zygote: its init ends it with the daemon
        # A bare thread: threading.Thread.start() waits until the new thread has run, a scheduling
        # round trip (0.3 ms on a busy host) that INIT, already in the pipe, need not wait for.
        _thread.start_new_thread(watch_for_daemon_exit, (fd_in,))

    kind, body = channel.read()
    if kind not in (INIT, SPECIALISE):
        raise RuntimeError(f"expected INIT or SPECIALISE, got frame kind {kind}")
    init = json.loads(body)
    if kind == SPECIALISE:  # a stem cell (protos/worker-protocol.md): become the function's worker
        try:
            specialise(init)
        except OSError as exc:
            flush_std()
            channel.write(INIT_ERROR, error_json("Runtime.SpecialiseError", str(exc)))
            sys.exit(1)
    os.environ.update(init.get("environment") or {})
    add_layers(os.environ.get("FNHOST_LAYERS_DIR"))
    if not init.get("invoked_function_arn"):  # the unqualified ARN, when the daemon sends none
        region = os.environ.get("AWS_REGION") or "local"
        init["invoked_function_arn"] = f"arn:aws:lambda:{region}:000000000000:function:{init['function_name']}"
    use_built_bytecode(init["code_dir"], init.get("build_dir"), os.environ.get("FNHOST_LAYERS_DIR"))
    try:
        func = load_handler(init["handler"], init["code_dir"])
    except InitFailure as failure:
        tb = user_frames(failure.cause) if failure.cause is not None else None
        flush_std()
        channel.write(INIT_ERROR, error_json(failure.error_type, failure.message, tb))
        sys.exit(1)
    flush_std()
    channel.write(INIT_OK)
    serve(channel, init, func)


if __name__ == "__main__":
    main()
