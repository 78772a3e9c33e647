"""Frames of the worker protocol (``protos/worker-protocol.md``), encoded and decoded.

Pure functions and one incremental decoder: no I/O here, so the same code serves the daemon,
the tests and the benchmark's direct worker hop.
"""

from __future__ import annotations

import enum
import json
import struct
from typing import Any, NamedTuple

PROTOCOL_VERSION = 1
MAX_FRAME = 16 * 1024 * 1024
CONTROL_FDS_ENV = "FNHOST_CONTROL_FDS"

_HEADER = struct.Struct(">IB")
_DEADLINE = struct.Struct(">Q")


class Kind(enum.IntEnum):
    HELLO = 1
    INIT = 2
    INIT_OK = 3
    INIT_ERROR = 4
    INVOKE = 5
    RESULT = 6
    ERROR = 7


class ProtocolError(Exception):
    """The peer sent bytes that are not a valid frame of this protocol version."""


class Frame(NamedTuple):
    kind: Kind
    body: bytes | memoryview


_KINDS = {k.value: k for k in Kind}  # a dict lookup; Kind(n) runs enum's Python-level __call__


def encode(kind: Kind, body: bytes = b"") -> bytes:
    return _HEADER.pack(len(body) + 1, kind) + body


def encode_json(kind: Kind, obj: Any) -> bytes:
    return encode(kind, json.dumps(obj, separators=(",", ":")).encode())


def encode_init(init: dict[str, Any]) -> bytes:
    """The INIT frame a worker of one function version starts with (see the spec for its keys)."""
    return encode_json(Kind.INIT, init)


def encode_invoke(request_id: bytes, deadline_ms: int, payload: bytes) -> list[bytes]:
    """The INVOKE frame as a list of buffers, so the payload is written without being copied."""
    head = bytes((len(request_id),)) + request_id + _DEADLINE.pack(deadline_ms)
    return [_HEADER.pack(1 + len(head) + len(payload), Kind.INVOKE) + head, payload]


def encode_reply(kind: Kind, request_id: bytes, body: bytes) -> bytes:
    """A RESULT or ERROR frame; used by tests and fake runtimes that play the worker."""
    return encode(kind, bytes((len(request_id),)) + request_id + body)


def split_reply(body: bytes | memoryview) -> tuple[bytes, bytes]:
    """Split a RESULT/ERROR body into (request id, rest)."""
    if not body:
        raise ProtocolError("empty RESULT/ERROR body")
    n = body[0]
    if len(body) < 1 + n:
        raise ProtocolError("RESULT/ERROR body shorter than its request id")
    return bytes(body[1 : 1 + n]), bytes(body[1 + n :])


def split_invoke(body: bytes | memoryview) -> tuple[bytes, int, bytes]:
    """Split an INVOKE body into (request id, deadline in epoch ms, payload)."""
    n = body[0]
    (deadline,) = _DEADLINE.unpack_from(body, 1 + n)
    return bytes(body[1 : 1 + n]), deadline, bytes(body[1 + n + 8 :])


def decode_json(body: bytes | memoryview) -> Any:
    try:
        return json.loads(bytes(body) or b"{}")
    except ValueError as exc:
        raise ProtocolError(f"frame body is not JSON: {exc}") from exc


class Decoder:
    """Turns a byte stream into frames; feed it whatever a read returned."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        buf = self._buf
        if not buf:
            # The common case, a read that returned exactly one whole frame: its body is a view
            # of what was read, with no copy.
            n = len(data)
            if n >= 5:
                length, kind = _HEADER.unpack_from(data)
                k = _KINDS.get(kind)
                if n == 4 + length and k is not None:
                    return [Frame(k, memoryview(data)[5:])]
        buf += data
        frames: list[Frame] = []
        pos = 0
        end = len(buf)
        while end - pos >= 5:
            length, kind = _HEADER.unpack_from(buf, pos)
            if length < 1 or length > MAX_FRAME:
                raise ProtocolError(f"frame length {length} out of range")
            if end - pos - 4 < length:
                break
            k = _KINDS.get(kind)
            if k is None:
                raise ProtocolError(f"unknown frame kind {kind}")
            frames.append(Frame(k, bytes(buf[pos + 5 : pos + 4 + length])))
            pos += 4 + length
        if pos:
            del buf[:pos]
        return frames

    @property
    def pending(self) -> int:
        return len(self._buf)
