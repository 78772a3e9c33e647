"""A worker that breaks the protocol a different way on every invocation, seeded by its caller.

It starts well (HELLO, INIT_OK), then reads INVOKEs whose payload is
``{"n": <invocation number>, "action": <name>, "seed": <int>}``: ``action`` says how it answers
(see ``ACTIONS``) and ``seed`` drives everything random in it (sizes, bytes, cut points, delays), so
a test that picks the actions from its own seeded generator can replay a run exactly. Some actions
leave a thread behind that keeps writing random, truncated, oversized, out-of-order and unsolicited
frames in a loop, as long as the process lives — while idle, or into a later invocation.

``chaos.py pester`` starts that thread as soon as it is warm, before any invocation.

A proper answer echoes the payload as ``{"n": …, "reply": 1}`` (a second, unwanted reply says
``"reply": 2``), so a test can tell whose answer a caller got.
"""

from __future__ import annotations

import json
import os
import random
import struct
import sys
import threading
import time

from _channel import Channel

from fnhost.execution import protocol

K = protocol.Kind
HEADER = struct.Struct(">IB")


def answer(request: dict, copy: int = 1) -> bytes:
    return json.dumps({"n": request["n"], "reply": copy}).encode()


def junk_frame(rng: random.Random, rid: bytes) -> bytes:
    """One frame the daemon must never accept at this point: random, cut, oversized, misordered."""
    roll = rng.randrange(8)
    if roll == 0:
        return rng.randbytes(rng.randrange(1, 64))
    if roll == 1:
        return protocol.encode_reply(K.RESULT, rid, b'"stale"')
    if roll == 2:
        return protocol.encode(K(rng.choice([1, 2, 3, 4, 5])), rng.randbytes(rng.randrange(0, 32)))
    if roll == 3:
        return HEADER.pack(rng.choice([0, protocol.MAX_FRAME + 1, 0xFFFFFFFF]), K.RESULT)
    if roll == 4:
        return HEADER.pack(10, rng.choice([0, 8, 99, 255])) + bytes(9)
    if roll == 5:
        return protocol.encode_reply(K.RESULT, rid, b"x" * rng.randrange(1, 1 << 20))[: rng.randrange(5, 100)]
    if roll == 6:
        return protocol.encode(K.RESULT)  # an empty body
    return protocol.encode_reply(K.ERROR, b"other-" + rid, b"{}")


def pester(channel: Channel, seed: int, rid: bytes, delay_s: float) -> None:
    """From a thread: junk frames in a loop until the process dies (a full pipe blocks it)."""
    rng = random.Random(seed)
    time.sleep(delay_s)
    while True:
        channel.write(junk_frame(rng, rid))
        time.sleep(rng.choice([0, 0, 0.001, 0.01]))


def act(channel: Channel, request: dict, rid: bytes, rng: random.Random) -> None:
    action = request["action"]
    good = protocol.encode_reply(K.RESULT, rid, answer(request))
    if action == "ok":
        channel.write(good)
    elif action == "error":
        channel.write(protocol.encode_reply(K.ERROR, rid, b'{"errorType":"ChaosError","errorMessage":"asked to"}'))
    elif action == "chunked":  # a valid reply in many small writes
        cuts = sorted(rng.sample(range(1, len(good)), min(len(good) - 1, rng.randrange(1, 8))))
        for start, end in zip([0, *cuts], [*cuts, len(good)], strict=True):
            channel.write(good[start:end])
            time.sleep(rng.choice([0, 0.001, 0.005]))
    elif action == "big":  # a valid reply of 1-3 MiB
        body = json.dumps({"n": request["n"], "reply": 1, "pad": "p" * rng.randrange(1 << 20, 3 << 20)})
        channel.write(protocol.encode_reply(K.RESULT, rid, body.encode()))
    elif action == "twice":  # a second reply: in the same write or soon after
        second = protocol.encode_reply(K.RESULT, rid, answer(request, 2))
        if rng.random() < 0.5:
            channel.write(good + second)
        else:
            channel.write(good)
            time.sleep(rng.choice([0, 0.001, 0.02]))
            channel.write(second)
    elif action == "reply_then_junk":
        channel.write(good + junk_frame(rng, rid))
    elif action == "pester":  # reply, then a thread floods junk while idle (or into the next call)
        channel.write(good)
        threading.Thread(target=pester, args=(channel, rng.randrange(1 << 30), rid, rng.choice([0, 0.005, 0.05])),
                         daemon=True).start()
    elif action == "junk":  # instead of a reply
        channel.write(junk_frame(rng, rid))
        time.sleep(0.2)
        channel.write(good)  # too late: the daemon stopped listening
    elif action == "truncated":  # a header that promises more than ever comes
        channel.write(good[: rng.randrange(1, len(good))])
        if rng.random() < 0.5:
            os._exit(0)
        time.sleep(60)
    elif action == "exit":
        os._exit(rng.randrange(0, 4))
    elif action == "hang":
        time.sleep(60)
    else:
        raise SystemExit(f"unknown action {action!r}")


def main() -> None:
    channel = Channel()
    channel.handshake()
    if sys.argv[1:] == ["pester"]:  # ``chaos.py pester``: junk from the moment it is idle
        threading.Thread(target=pester, args=(channel, os.getpid(), b"none", 0.3), daemon=True).start()
    while True:
        frame = channel.read()
        if frame.kind is not K.INVOKE:
            sys.exit(f"expected INVOKE, got {frame.kind.name}")
        rid, _deadline, _context, payload = protocol.split_invoke(frame.body)
        request = json.loads(payload)
        act(channel, request, rid, random.Random(request["seed"]))


if __name__ == "__main__":
    main()
