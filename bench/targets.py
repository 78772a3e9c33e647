"""What the load is aimed at: fnhost's Invoke (or the floor's Echo) as a pre-serialized request,
with a check of the answer and a probe of the server's CPU time.

The check runs on one sampled response per run, in the parent: a benchmark of an echo that stopped
echoing (a function error, a throttle) would otherwise report a fine, meaningless figure.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil

from fnhost.v1 import fnhost_pb2 as pb

from .load import Target

SERVICE = pb.DESCRIPTOR.services_by_name["Fnhost"]
INVOKE_METHOD = f"/{SERVICE.full_name}/Invoke"


class BadResponse(RuntimeError):
    """The target answered, but not with the echo of what was sent."""


@dataclass(slots=True)
class Aim:
    """A target plus how to check its answers and whose CPU time serves it."""

    target: Target
    check: Callable[[bytes], None]
    server_pid: int
    count_workers: bool = False  # also sum the server's children (fnhost's workers)
    extra: dict[str, object] = field(default_factory=dict)


def invoke_request(function: str, payload: bytes) -> bytes:
    return pb.InvokeRequest(function_name=function, payload=payload).SerializeToString()


def check_invoke(payload: bytes) -> Callable[[bytes], None]:
    expected = json.loads(payload)

    def check(raw: bytes) -> None:
        r = pb.InvokeResponse.FromString(raw)
        if r.function_error:
            raise BadResponse(f"function error {r.function_error}: {r.payload[:300]!r}")
        if json.loads(r.payload) != expected:
            raise BadResponse(f"echo returned something else: {r.payload[:100]!r}")

    return check


def check_same(request: bytes) -> Callable[[bytes], None]:
    def check(raw: bytes) -> None:
        if raw != request:
            raise BadResponse(f"floor echo returned {len(raw)} bytes, sent {len(request)}")

    return check


def fnhost_aim(address: str, function: str, payload: bytes, daemon_pid: int, label: str) -> Aim:
    target = Target(label, address, INVOKE_METHOD, invoke_request(function, payload))
    return Aim(target, check_invoke(payload), daemon_pid, count_workers=True)


def cpu_seconds(pid: int, children: bool) -> tuple[float, float]:
    """(CPU of the process, CPU of its live children) in seconds; children's own children too."""
    try:
        proc = psutil.Process(pid)
        t = proc.cpu_times()
        own = t.user + t.system
        kids = 0.0
        if children:
            for child in proc.children(recursive=True):
                try:
                    c = child.cpu_times()
                    kids += c.user + c.system
                except psutil.Error:
                    pass
        return own, kids
    except psutil.Error:
        return 0.0, 0.0
