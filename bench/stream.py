"""Streaming invokes: fnhost's InvokeStream against the floor's bare bidirectional echo.

``measure_invoke_stream`` is the one place the InvokeStream measurement lives. It runs only when
the generated stubs (fnhost.v1.fnhost_pb2 and _grpc) declare the RPC with the shape it knows —
decided from the descriptors, never by calling the daemon and reading an UNIMPLEMENTED answer: a
bidirectional stream of ``InvokeStreamRequest{invocations: [StreamInvocation{id, request}]}``
answered by ``InvokeStreamResponse{results: [StreamResult{id, response | error}]}``. Anything else
is reported as not measured, with the reason.

Both the floor and fnhost get the same runs: ping-pong (one invocation per message, one in
flight: per-invocation latency) and pipelined configurations (streams × invocations in flight per
stream × invocations per message: answered invocations per second). The floor echoes each
message as it came, so with a batch of B it answers B "invocations" per message: the most any
batched stream could do on this gRPC stack.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fnhost.v1 import fnhost_pb2 as pb
from fnhost.v1 import fnhost_pb2_grpc as pb_grpc

from .floors import blob
from .load import ClientPool, Target
from .stats import latency_summary, value_summary

INVOKE_STREAM = "InvokeStream"
# (streams, invocations in flight per stream, invocations per message)
CONFIGS = [(1, 32, 1), (1, 32, 8), (4, 16, 8)]


def invoke_stream_descriptor() -> tuple[Any | None, str]:
    """(the InvokeStream method descriptor, "") when the stubs have it in a known shape, else (None, why)."""
    service = pb.DESCRIPTOR.services_by_name["Fnhost"]
    method = service.methods_by_name.get(INVOKE_STREAM)
    if method is None or not hasattr(pb_grpc.FnhostServicer, INVOKE_STREAM):
        return None, "fnhost.v1.Fnhost has no InvokeStream RPC in the generated stubs"
    if not (method.client_streaming and method.server_streaming):
        return None, "InvokeStream is not bidirectional"
    req, resp = method.input_type, method.output_type
    item = req.fields_by_name.get("invocations")
    result = resp.fields_by_name.get("results")
    if item is None or result is None or item.message_type is None or result.message_type is None or \
            not {"id", "request"} <= set(item.message_type.fields_by_name) or \
            not {"id", "response"} <= set(result.message_type.fields_by_name):
        return None, (f"InvokeStream takes {req.full_name} and answers {resp.full_name}, a shape this bench "
                      "does not know (expected invocations[id, request] and results[id, response])")
    return method, ""


def _runs(pool: ClientPool, pingpong_target: Target, batch_target: Callable[[int], Target],
          count: Callable[[int], tuple[str, ...]], check: Callable[[bytes], None], calls: int, reps: int,
          window_s: float) -> dict[str, object]:
    pingpong = []
    for _ in range(reps):
        lat, sample = pool.stream_pingpong(pingpong_target, calls, 20)
        check(sample)
        pingpong.append(lat)
    pipelined: dict[str, object] = {}
    for streams, depth, batch in CONFIGS:
        target = batch_target(batch)
        # Unmeasured first: a daemon starts a worker per invocation in flight, and those cold
        # starts belong to no throughput figure.
        pool.stream_window(target, streams, depth, batch, count(batch), max(0.5, window_s / 2))
        rps = []
        for _ in range(reps):
            r = pool.stream_window(target, streams, depth, batch, count(batch), window_s)
            if r.sample_response is not None:
                check(r.sample_response)
            rps.append(r.throughput)
        pipelined[f"{streams}x{depth}_in_flight_batch_{batch}"] = value_summary(rps, "rps", 1)
    return {"pingpong": latency_summary(pingpong, cdf=False), "pipelined": pipelined,
            "configs": "streams x invocations in flight per stream, invocations per message"}


def measure_stream_floor(pool: ClientPool, address: str, method: str, payload: bytes, calls: int, reps: int,
                         window_s: float) -> dict[str, object]:
    def batch_target(b: int) -> Target:
        return Target("grpc-floor-stream", address, method, blob(payload) if b == 1 else _batch_blob(payload, b))

    def check(raw: bytes) -> None:
        if not raw.startswith(b"\x0a"):
            raise RuntimeError("the floor's stream echo returned something else")

    return _runs(pool, batch_target(1), batch_target, lambda b: ("fixed", str(b)), check, calls, reps, window_s)


def _batch_blob(payload: bytes, b: int) -> bytes:
    # The floor never parses: a message the size of B invocations is what matters.
    return b"".join(blob(payload) for _ in range(b))


def measure_invoke_stream(pool: ClientPool, address: str, function: str, payload: bytes, calls: int,
                          reps: int, window_s: float) -> dict[str, object]:
    """fnhost's InvokeStream, when the stubs declare it; otherwise why it was not measured."""
    method, why = invoke_stream_descriptor()
    if method is None:
        return {"measured": False, "reason": why}
    request_cls = getattr(pb, method.input_type.name)
    response_cls = getattr(pb, method.output_type.name)
    item_cls = getattr(pb, method.input_type.fields_by_name["invocations"].message_type.name)
    path = f"/{method.containing_service.full_name}/{method.name}"
    expected = json.loads(payload)

    def batch_target(b: int) -> Target:
        items = [item_cls(id=i, request=pb.InvokeRequest(function_name=function, payload=payload)) for i in range(b)]
        return Target("fnhost-invoke-stream", address, path, request_cls(invocations=items).SerializeToString())

    def check(raw: bytes) -> None:
        for result in response_cls.FromString(raw).results:
            if result.WhichOneof("outcome") != "response":
                raise RuntimeError(f"InvokeStream refused an invocation: {result}")
            r = result.response
            if r.function_error or json.loads(r.payload) != expected:
                raise RuntimeError(f"InvokeStream: not the echo ({r.function_error}: {r.payload[:200]!r})")

    count = ("pb", pb.__name__, method.output_type.name, "results")
    return {"measured": True, **_runs(pool, batch_target(1), batch_target, lambda b: count, check, calls, reps,
                                      window_s)}
