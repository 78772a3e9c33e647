"""Frames of the worker protocol (``protos/worker-protocol.md``), encoded, decoded and checked.

Pure functions and one incremental decoder: no I/O here, so the same code serves the daemon,
the tests, the fuzzer (``bench/fuzz.py``) and the benchmark's direct worker hop. Everything a
worker sends is untrusted: the decoder and the ``parse_*`` functions raise ``ProtocolError`` and
nothing else, whatever the bytes.
"""

from __future__ import annotations

import enum
import functools
import json
import struct
from typing import Any, NamedTuple

PROTOCOL_VERSION = 3
# Versions a worker may speak. Version 1 stays accepted because compiled runtimes (Go, Java, C#)
# carry their shim inside the function's build: a function built before an upgrade keeps running,
# without per-invocation context (its handler sees no client context), until it is redeployed.
# Version 3 only adds SPECIALISE, which a shim that cannot be a stem cell (Go's: its shim is the
# function's own binary) has no use for: 2 is current for it.
SUPPORTED_VERSIONS = (1, 2, 3)
CONTEXT_VERSION = 2  # the first with INVOKE's context: older workers are from before an upgrade
STEM_CELL_VERSION = 3  # the first with SPECIALISE
MAX_FRAME = 16 * 1024 * 1024
CONTROL_FDS_ENV = "FNHOST_CONTROL_FDS"

# What a worker's frames may carry, per kind (body bytes, checked as soon as a header arrives so
# a lie in a header costs at most one read). RESULT and ERROR may be as large as a frame: a result
# over Lambda's 6 MB is the function's ResponseSizeTooLarge, not a broken channel.
CONTROL_BODY_MAX = 64 * 1024  # HELLO, INIT_OK
INIT_ERROR_BODY_MAX = 1024 * 1024
# INIT_ERROR fields are clipped to these before they reach a caller or the log.
ERROR_TYPE_MAX = 256
ERROR_MESSAGE_MAX = 16 * 1024
STACK_TRACE_MAX = 100  # entries
STACK_ENTRY_MAX = 2048
HELLO_FIELD_MAX = 256

_HEADER = struct.Struct(">IB")
_DEADLINE = struct.Struct(">Q")
_DEADLINE_CONTEXT = struct.Struct(">QI")  # version 2: deadline, then the context's length


class Kind(enum.IntEnum):
    HELLO = 1
    INIT = 2
    INIT_OK = 3
    INIT_ERROR = 4
    INVOKE = 5
    RESULT = 6
    ERROR = 7
    SPECIALISE = 8


class Frame(NamedTuple):
    kind: Kind
    body: bytes | memoryview


class ProtocolError(Exception):
    """The peer sent bytes that are not a valid frame of this protocol version.

    ``frames``: what the decoder completed before the bad bytes, in order, so a caller sees the
    same frames before the error however the stream was cut into reads.
    """

    def __init__(self, message: str, frames: list[Frame] | None = None) -> None:
        super().__init__(message)
        self.frames: list[Frame] = frames or []


_KINDS = {k.value: k for k in Kind}  # a dict lookup; Kind(n) runs enum's Python-level __call__

# The largest body a worker may send per kind, indexed by the kind's value (a list: indexing it
# with an IntEnum is a C-level __index__, where a dict would call Enum's Python-level __hash__).
# Kinds only the daemon sends (INIT, INVOKE, SPECIALISE) are never accepted from a worker.
BODY_MAX_FROM_WORKER = [0, CONTROL_BODY_MAX, 0, CONTROL_BODY_MAX, INIT_ERROR_BODY_MAX, 0,
                        MAX_FRAME - 1, MAX_FRAME - 1, 0]


def encode(kind: Kind, body: bytes = b"") -> bytes:
    return _HEADER.pack(len(body) + 1, kind) + body


def encode_json(kind: Kind, obj: Any) -> bytes:
    return encode(kind, json.dumps(obj, separators=(",", ":")).encode())


def encode_init(init: dict[str, Any]) -> bytes:
    """The INIT frame a worker of one function version starts with (see the spec for its keys)."""
    return encode_json(Kind.INIT, init)


def encode_invoke(request_id: bytes, deadline_ms: int, payload: bytes, context: bytes = b"") -> list[bytes]:
    """The version-2 INVOKE frame as a list of buffers, so the payload is written without being copied.

    ``context``: the invocation's context JSON (``encode_context``), or empty for none — the
    common case costs four zero bytes in the header and nothing else.
    """
    head = bytes((len(request_id),)) + request_id + _DEADLINE_CONTEXT.pack(deadline_ms, len(context)) + context
    return [_HEADER.pack(1 + len(head) + len(payload), Kind.INVOKE) + head, payload]


def encode_invoke_v1(request_id: bytes, deadline_ms: int, payload: bytes, context: bytes = b"") -> list[bytes]:
    """The version-1 INVOKE frame, for a worker whose HELLO says 1: it has no place for ``context``."""
    head = bytes((len(request_id),)) + request_id + _DEADLINE.pack(deadline_ms)
    return [_HEADER.pack(1 + len(head) + len(payload), Kind.INVOKE) + head, payload]


INVOKE_ENCODERS = {1: encode_invoke_v1, 2: encode_invoke, 3: encode_invoke}  # by the version a worker's HELLO gave


def encode_context(client_context: dict[str, Any] | None, invoked_function_arn: str) -> bytes:
    """The JSON object a version-2 INVOKE carries: only the keys that have a value."""
    if client_context is None:
        return _arn_context(invoked_function_arn) if invoked_function_arn else b""
    context: dict[str, Any] = {"client_context": client_context}
    if invoked_function_arn:
        context["invoked_function_arn"] = invoked_function_arn
    return json.dumps(context, separators=(",", ":")).encode()


@functools.lru_cache(maxsize=1024)
def _arn_context(invoked_function_arn: str) -> bytes:
    # Lambda's HTTP front end names the ARN on every call, and a function has few (one per
    # qualifier): encoded once each, not per invocation.
    return json.dumps({"invoked_function_arn": invoked_function_arn}, separators=(",", ":")).encode()


def encode_reply(kind: Kind, request_id: bytes, body: bytes) -> bytes:
    """A RESULT or ERROR frame; used by tests and fake runtimes that play the worker."""
    return encode(kind, bytes((len(request_id),)) + request_id + body)


def split_reply(body: bytes | memoryview) -> tuple[bytes, bytes]:
    """Split a RESULT/ERROR body into (request id, rest)."""
    if not body:
        raise ProtocolError("empty RESULT/ERROR body (it must start with the request id)")
    n = body[0]
    if len(body) < 1 + n:
        raise ProtocolError("RESULT/ERROR body shorter than its request id")
    return bytes(body[1 : 1 + n]), bytes(body[1 + n :])


class Invoke(NamedTuple):
    """An INVOKE body taken apart (what a worker reads; used by tests and fake runtimes)."""

    request_id: bytes
    deadline_ms: int
    context: bytes  # the context JSON, or b"" for none
    payload: bytes


def split_invoke(body: bytes | memoryview, version: int = PROTOCOL_VERSION) -> Invoke:
    """Split an INVOKE body of protocol ``version``. Raises ProtocolError when it is too short."""
    n = body[0] if body else 0
    fixed = 1 + n + (12 if version >= 2 else 8)
    if len(body) < fixed:
        raise ProtocolError(f"INVOKE body of {len(body)} bytes is shorter than its header")
    if version < 2:
        (deadline,) = _DEADLINE.unpack_from(body, 1 + n)
        return Invoke(bytes(body[1 : 1 + n]), deadline, b"", bytes(body[fixed:]))
    deadline, size = _DEADLINE_CONTEXT.unpack_from(body, 1 + n)
    if len(body) < fixed + size:
        raise ProtocolError(f"INVOKE context of {size} bytes runs past the end of the body")
    return Invoke(bytes(body[1 : 1 + n]), deadline, bytes(body[fixed : fixed + size]), bytes(body[fixed + size :]))


def decode_json(body: bytes | memoryview) -> Any:
    try:
        return json.loads(bytes(body) or b"{}")
    except (ValueError, RecursionError) as exc:  # RecursionError: "[[[[…" nested past the stack
        raise ProtocolError(f"frame body is not JSON: {exc}") from exc


def _json_object(body: bytes | memoryview, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(bytes(body))
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"{what} body is not JSON ({str(exc)[:100]})") from exc
    if not isinstance(obj, dict):
        raise ProtocolError(f"{what} body is JSON but not an object (a {type(obj).__name__})")
    return obj


def _string(obj: dict[str, Any], key: str, what: str, default: str | None = None) -> str:
    value = obj.get(key, default)
    if not isinstance(value, str):
        raise ProtocolError(f"{what} field {key!r} must be a string, not {type(value).__name__}")
    return value


def clip(text: str, limit: int) -> str:
    """``text``, cut to ``limit`` characters with a note of how much was dropped."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [fnhost: {len(text) - limit} more characters clipped]"


def parse_hello(body: bytes | memoryview) -> dict[str, Any]:
    """HELLO's JSON object, checked: ``protocol`` (a supported version), ``runtime``, ``runtime_version``
    (strings) and ``pid`` (an integer). Raises ProtocolError."""
    info = _json_object(body, "HELLO")
    version = info.get("protocol")
    if type(version) is not int:
        raise ProtocolError(f"HELLO field 'protocol' must be an integer, not {type(version).__name__}")
    if version not in SUPPORTED_VERSIONS:
        raise ProtocolError(f"the worker's shim speaks worker protocol {version}; this daemon speaks "
                            f"{', '.join(map(str, SUPPORTED_VERSIONS[:-1]))} and {SUPPORTED_VERSIONS[-1]} (is the runtime's shim from "
                            "another fnhost release?)")
    for key in ("runtime", "runtime_version"):
        if len(_string(info, key, "HELLO")) > HELLO_FIELD_MAX:
            raise ProtocolError(f"HELLO field {key!r} is longer than {HELLO_FIELD_MAX} characters")
    if type(info.get("pid")) is not int:
        raise ProtocolError("HELLO field 'pid' must be an integer")
    return info


def parse_init_ok(body: bytes | memoryview) -> None:
    """INIT_OK's body: empty or a JSON object (ignored by version 1). Raises ProtocolError."""
    if body:
        _json_object(body, "INIT_OK")


def parse_init_error(body: bytes | memoryview) -> tuple[str, str, list[str]]:
    """INIT_ERROR's (errorType, errorMessage, stackTrace), clipped to bounded strings.

    ``errorType`` and ``errorMessage`` must be strings and ``stackTrace`` a list of strings (or
    absent, or null). Raises ProtocolError.
    """
    err = _json_object(body, "INIT_ERROR")
    error_type = _string(err, "errorType", "INIT_ERROR") or "Runtime.InitError"
    message = _string(err, "errorMessage", "INIT_ERROR")
    trace = err.get("stackTrace")
    if trace is None:
        trace = []
    if not isinstance(trace, list) or not all(isinstance(s, str) for s in trace):
        raise ProtocolError("INIT_ERROR field 'stackTrace' must be a list of strings")
    kept = [clip(s, STACK_ENTRY_MAX) for s in trace[:STACK_TRACE_MAX]]
    if len(trace) > STACK_TRACE_MAX:
        kept.append(f"[fnhost: {len(trace) - STACK_TRACE_MAX} more entries clipped]")
    return clip(error_type, ERROR_TYPE_MAX), clip(message, ERROR_MESSAGE_MAX), kept


class Decoder:
    """Turns a byte stream into frames; feed it whatever a read returned.

    A header is checked as soon as its five bytes are in (length 1..MAX_FRAME, a known kind), so
    what stays buffered after ``feed`` is always less than one frame of at most MAX_FRAME plus
    its header. After a ``ProtocolError`` the stream has no frame boundary left to trust: every
    later ``feed`` raises too.
    """

    __slots__ = ("_buf", "_broken")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._broken = ""

    def feed(self, data: bytes) -> list[Frame]:
        buf = self._buf
        if not buf and not self._broken:
            # The common case, a read that returned exactly one whole frame: its body is a view
            # of what was read, with no copy.
            n = len(data)
            if n >= 5:
                length, kind = _HEADER.unpack_from(data)
                k = _KINDS.get(kind)
                if n == 4 + length and k is not None and length <= MAX_FRAME:
                    return [Frame(k, memoryview(data)[5:])]
        if self._broken:
            raise ProtocolError(f"the channel broke earlier: {self._broken}")
        buf += data
        frames: list[Frame] = []
        pos = 0
        end = len(buf)
        while end - pos >= 5:
            length, kind = _HEADER.unpack_from(buf, pos)
            k = _KINDS.get(kind)
            if length < 1 or length > MAX_FRAME or k is None:
                problem = (f"unknown frame kind {kind}" if 1 <= length <= MAX_FRAME
                           else f"frame length {length} out of range (1..{MAX_FRAME})")
                self._broken = problem
                buf.clear()
                raise ProtocolError(problem, frames)
            if end - pos - 4 < length:
                break
            frames.append(Frame(k, bytes(buf[pos + 5 : pos + 4 + length])))
            pos += 4 + length
        if pos:
            del buf[:pos]
        return frames

    @property
    def pending(self) -> int:
        return len(self._buf)

    def partial(self) -> tuple[Kind, int] | None:
        """(kind, length) of the frame being received, once its (already checked) header is in."""
        if len(self._buf) < 5:
            return None
        length, kind = _HEADER.unpack_from(self._buf)
        return _KINDS[kind], length


# What a worker may send next (tuples of enum members: membership compares by identity first).
EXPECT_NOTHING: tuple[Kind, ...] = ()
EXPECT_HELLO = (Kind.HELLO,)
EXPECT_INIT_REPLY = (Kind.INIT_OK, Kind.INIT_ERROR)
EXPECT_REPLY = (Kind.RESULT, Kind.ERROR)


class Inbox:
    """What the daemon takes from one worker's control pipe: at most the one frame it expects.

    The daemon always knows what may come next: HELLO; then INIT_OK or INIT_ERROR; then the
    RESULT or ERROR naming the request in flight; between those, nothing. ``feed`` keeps the
    expected frame in ``frame`` and raises ProtocolError for anything else — a wrong kind, a body
    over its kind's limit (judged from the header, before the body is buffered), a reply for
    another request or without one, a second frame, or any byte while nothing is expected. Nothing
    unexpected is ever buffered. After an error the inbox expects nothing again.

    ``then``: what may follow the expected frame before it is taken (INIT's reply after HELLO,
    when INIT was written ahead of HELLO); the inbox then holds both, in order.
    """

    __slots__ = ("_decoder", "expect", "then", "request_id", "frame", "_second")

    def __init__(self) -> None:
        self._decoder = Decoder()
        self.expect = EXPECT_NOTHING
        self.then = EXPECT_NOTHING
        self.request_id = b""
        self.frame: Frame | None = None
        self._second: Frame | None = None

    def expect_reply(self, request_id: bytes) -> None:
        self.request_id = request_id
        self.expect = EXPECT_REPLY

    def take(self) -> Frame | None:
        frame, self.frame, self._second = self.frame, self._second, None
        return frame

    def feed(self, data: bytes) -> None:
        """Take what a read returned. Raises ProtocolError (after keeping an expected frame
        that came before the bad bytes)."""
        if not self.expect:
            raise ProtocolError(f"it wrote {len(data)} bytes while no frame was expected")
        decoder = self._decoder
        try:
            frames = decoder.feed(data)
        except ProtocolError as exc:
            for frame in exc.frames:
                self._accept(frame)
            self.expect = self.then = EXPECT_NOTHING
            raise
        for frame in frames:
            self._accept(frame)
        if decoder.pending:
            head = decoder.partial()
            expect = self.expect
            if not expect:
                self._refuse("it wrote more after the frame it was expected to send")
            if head is not None:
                kind, size = head[0], head[1] - 1
                if kind not in expect:
                    self._refuse(f"it started a {kind.name} frame; expected {self.expected_text()}")
                if size > BODY_MAX_FROM_WORKER[kind]:
                    self._refuse(f"it started a {kind.name} frame of {size} bytes, over the "
                                 f"{BODY_MAX_FROM_WORKER[kind]} a {kind.name} may carry")

    def _accept(self, frame: Frame) -> None:
        kind = frame.kind
        body = frame.body
        expect = self.expect
        if not expect:
            self._refuse(f"it sent {kind.name} ({len(body)} bytes) after the one frame it owed")
        if kind not in expect:
            self._refuse(f"it sent {kind.name} ({len(body)} bytes); expected {self.expected_text()}")
        if len(body) > BODY_MAX_FROM_WORKER[kind]:
            self._refuse(f"it sent a {kind.name} of {len(body)} bytes, over the "
                         f"{BODY_MAX_FROM_WORKER[kind]} a {kind.name} may carry")
        if expect is EXPECT_REPLY:
            rid = self.request_id
            n = len(rid)
            if len(body) < 1 + n or body[0] != n or body[1 : 1 + n] != rid:
                got = "an empty body" if not body else f"request {bytes(body[1 : 1 + body[0]])!r}"
                self._refuse(f"its {kind.name} carries {got} while {rid.decode(errors='replace')} "
                             "was in flight")
        self.expect, self.then = self.then, EXPECT_NOTHING
        if self.frame is None:
            self.frame = frame
        else:
            self._second = frame

    def _refuse(self, problem: str) -> None:
        self.expect = self.then = EXPECT_NOTHING
        raise ProtocolError(problem)

    def expected_text(self) -> str:
        return " or ".join(k.name for k in self.expect) or "nothing"
