"""Fuzz the worker protocol's decoding: ``python -m bench.fuzz [--inputs 2000000] [--seed N]``.

Everything a worker writes reaches ``fnhost.execution.protocol`` first (DESIGN.md: worker bytes
are hostile). This feeds it random bytes and mutations of valid frame streams, each cut into
reads in several random ways, and checks after every read:

* only ``ProtocolError`` is ever raised (no IndexError, struct.error, UnicodeDecodeError, …);
* what the decoder keeps buffered never exceeds one maximum frame and its header;
* the frames it returns re-encode to exactly the bytes that produced them (a prefix of the input);
* it returns the same frames, and fails at the same point with the same error, however the
  stream was cut into reads;
* the daemon's ``Inbox`` (what it accepts from a worker, and when) and the ``parse_*`` functions
  for HELLO, INIT_OK and INIT_ERROR bodies raise only ``ProtocolError``, hold at most one frame,
  and clip INIT_ERROR's strings to their bounds.

It exits 1 at the first broken invariant, printing the seed, the input's index and its bytes, so
``--seed S --only I`` replays it. ``tests/unit/test_protocol_fuzz.py`` runs the same checks on a
few thousand inputs.
"""

from __future__ import annotations

import argparse
import json
import random
import struct
import sys
import time
from collections import Counter
from collections.abc import Callable

from fnhost.execution import protocol
from fnhost.execution.protocol import Decoder, Inbox, Kind, ProtocolError

HEADER = struct.Struct(">IB")
BUFFER_BOUND = 4 + protocol.MAX_FRAME  # one whole maximum frame, header included
INTERESTING_LENGTHS = (0, 1, 2, 5, 0xFF, 0x10000, protocol.CONTROL_BODY_MAX, protocol.CONTROL_BODY_MAX + 2,
                       protocol.MAX_FRAME - 1, protocol.MAX_FRAME, protocol.MAX_FRAME + 1, 0x7FFFFFFF, 0xFFFFFFFF)
INTERESTING_KINDS = (0, *range(1, 8), 8, 99, 255)


class Broken(AssertionError):
    """An invariant did not hold for one input."""


# --- inputs -------------------------------------------------------------------------------------


def _json_body(rng: random.Random) -> bytes:
    """A HELLO/INIT_ERROR-like JSON body, sometimes with the wrong shapes or huge strings."""
    choices: list[object] = [
        {"protocol": 1, "runtime": "python", "runtime_version": "3.11.2", "pid": rng.randrange(1, 1 << 22)},
        {"errorType": "Runtime.ImportModuleError", "errorMessage": "x" * rng.randrange(0, 40_000),
         "stackTrace": ["  File \"a.py\", line 1"] * rng.randrange(0, 300)},
        {"protocol": rng.choice([0, 1, 2, True, "1", None, 1.0])},
        {"errorType": rng.choice([None, 1, [], "", "T" * 1000]), "errorMessage": rng.choice(["m", 5, None]),
         "stackTrace": rng.choice([None, "s", [1], ["a", None], []])},
        [1, 2, 3], "text", 7, None, {},
    ]
    body = json.dumps(rng.choice(choices)).encode()
    if rng.random() < 0.1:
        body = b"[" * rng.randrange(1, 5000) + body  # nested past the recursion limit
    return body


def _body(rng: random.Random, kind: int) -> bytes:
    roll = rng.random()
    if kind in (Kind.RESULT, Kind.ERROR) and roll < 0.6:
        rid = rng.choice([b"", b"r", b"req-1", bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))])
        return bytes((len(rid),)) + rid + rng.choice([b"", b"{}", b'"ok"', rng.randbytes(rng.randrange(0, 300))])
    if kind in (Kind.HELLO, Kind.INIT_OK, Kind.INIT_ERROR) and roll < 0.6:
        return _json_body(rng)
    if roll < 0.95:
        return rng.randbytes(rng.randrange(0, 200))
    return rng.randbytes(rng.randrange(0, 70_000))


def valid_stream(rng: random.Random) -> bytes:
    """One to five well-formed frames of random kinds."""
    return b"".join(protocol.encode(Kind(k), _body(rng, k))
                    for k in (rng.randrange(1, 8) for _ in range(rng.randrange(1, 6))))


def mutate(rng: random.Random, data: bytes) -> bytes:
    """``data`` with one to four random edits: flips, cuts, splices, lying headers."""
    buf = bytearray(data)
    for _ in range(rng.randrange(1, 5)):
        op = rng.randrange(7)
        if op == 0 and buf:  # flip a bit
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:  # truncate
            del buf[rng.randrange(len(buf)):]
        elif op == 2:  # insert random bytes
            i = rng.randrange(len(buf) + 1)
            buf[i:i] = rng.randbytes(rng.randrange(1, 9))
        elif op == 3 and buf:  # delete a span
            i = rng.randrange(len(buf))
            del buf[i : i + rng.randrange(1, 9)]
        elif op == 4:  # a lying header at a random place
            i = rng.randrange(len(buf) + 1)
            buf[i:i] = HEADER.pack(rng.choice(INTERESTING_LENGTHS), rng.choice(INTERESTING_KINDS))
        elif op == 5 and len(buf) >= 5:  # rewrite the first header's length or kind
            if rng.random() < 0.5:
                buf[0:4] = struct.pack(">I", rng.choice(INTERESTING_LENGTHS))
            else:
                buf[4] = rng.choice(INTERESTING_KINDS)
        elif op == 6 and buf:  # repeat a span
            i = rng.randrange(len(buf))
            buf[i:i] = buf[i : i + rng.randrange(1, 64)]
    return bytes(buf)


def make_input(rng: random.Random) -> tuple[str, bytes]:
    roll = rng.random()
    if roll < 0.25:
        return "random", rng.randbytes(rng.choice((rng.randrange(0, 16), rng.randrange(0, 512))))
    if roll < 0.40:
        return "valid", valid_stream(rng)
    return "mutated", mutate(rng, valid_stream(rng))


def chunkings(rng: random.Random, n: int) -> list[list[int]]:
    """Cut points for a stream of ``n`` bytes: whole, random cuts, and byte by byte when small."""
    cuts = [[n]]
    for _ in range(2):
        points = sorted(rng.sample(range(1, n), min(n - 1, rng.randrange(1, 12)))) if n > 1 else []
        cuts.append([*points, n])
    if n <= 64:
        cuts.append(list(range(1, n + 1)))
    return cuts


# --- checks -------------------------------------------------------------------------------------


def decode(data: bytes, cuts: list[int]) -> tuple[list[tuple[int, bytes]], str | None, int]:
    """Feed ``data`` cut at ``cuts``: (frames, error message or None, bytes left buffered)."""
    decoder = Decoder()
    frames: list[tuple[int, bytes]] = []
    start = 0
    for end in cuts:
        try:
            got = decoder.feed(data[start:end])
        except ProtocolError as exc:
            frames += [(f.kind, bytes(f.body)) for f in exc.frames]
            return frames, str(exc), 0
        except Exception as exc:  # the invariant this whole module exists for
            raise Broken(f"Decoder.feed raised {type(exc).__name__}: {exc}") from exc
        frames += [(f.kind, bytes(f.body)) for f in got]
        if decoder.pending > BUFFER_BOUND:
            raise Broken(f"{decoder.pending} bytes buffered, over one frame ({BUFFER_BOUND})")
        start = end
    return frames, None, decoder.pending


def check_decoder(rng: random.Random, data: bytes) -> str:
    """All decoder invariants for one input; returns how it ended ("frames", "partial", "error")."""
    results = [decode(data, cuts) for cuts in chunkings(rng, len(data))]
    frames, error, pending = results[0]
    for other in results[1:]:
        if other[:2] != (frames, error):
            raise Broken(f"chunking changed the result: {other[:2]!r} != {(frames, error)!r}")
    encoded = b"".join(protocol.encode(Kind(k), body) for k, body in frames)
    if not data.startswith(encoded):
        raise Broken("decoded frames do not re-encode to the bytes they came from")
    if error is None and len(encoded) + pending != len(data):
        raise Broken(f"{len(data) - len(encoded)} bytes unaccounted for, {pending} buffered")
    return "error" if error else "partial" if pending else "frames"


EXPECTS = (protocol.EXPECT_HELLO, protocol.EXPECT_INIT_REPLY, protocol.EXPECT_REPLY, protocol.EXPECT_NOTHING)


def check_inbox(rng: random.Random, data: bytes) -> str:
    """The daemon's Inbox on the same bytes: only ProtocolError, one frame at most, then nothing."""
    inbox = Inbox()
    expect = rng.choice(EXPECTS)
    if expect is protocol.EXPECT_REPLY:
        rid = rng.choice([b"r", b"req-1", b""])
        inbox.expect_reply(rid)
        owed = protocol.encode_reply(rng.choice(expect), rid, rng.choice([b"", b"{}", b'"x"']))
    else:
        inbox.expect = expect
        owed = protocol.encode(Kind.HELLO, b'{"protocol":1}') if expect else b""
        if expect is protocol.EXPECT_INIT_REPLY:
            owed = protocol.encode(rng.choice(expect), rng.choice([b"", b"{}"]))
    if rng.random() < 0.5:  # the frame the daemon waits for, then whatever the input is
        data = owed + data
    points = chunkings(rng, len(data))[rng.randrange(2)] if data else []
    start, accepted = 0, 0
    for end in points:
        try:
            inbox.feed(data[start:end])
        except ProtocolError:
            if inbox.expect:
                raise Broken("the inbox still expects a frame after refusing the worker") from None
            if inbox.frame is not None:  # the owed frame came first, then the violation
                accepted += 1
                if inbox.take().kind not in expect or accepted > 1:  # type: ignore[union-attr]
                    raise Broken("the inbox kept a frame it did not expect") from None
            return "accepted-then-refused" if accepted else "refused"
        except Exception as exc:
            raise Broken(f"Inbox.feed raised {type(exc).__name__}: {exc}") from exc
        if inbox.frame is not None:
            accepted += 1
            frame = inbox.take()
            assert frame is not None
            if frame.kind not in expect:
                raise Broken(f"the inbox accepted {frame.kind.name} while expecting {expect}")
            if accepted > 1:
                raise Broken("the inbox accepted a second frame")
        start = end
    return "accepted" if accepted else "waiting"


PARSERS: tuple[Callable[[bytes], object], ...] = (protocol.parse_hello, protocol.parse_init_ok,
                                                  protocol.parse_init_error)


def check_parsers(rng: random.Random, data: bytes) -> str:
    body = data if rng.random() < 0.3 else _json_body(rng) if rng.random() < 0.7 else mutate(rng, _json_body(rng))
    accepted = False
    for parse in PARSERS:
        try:
            value = parse(body)
        except ProtocolError:
            continue
        except Exception as exc:
            raise Broken(f"{parse.__name__} raised {type(exc).__name__}: {exc}") from exc
        accepted = True
        if parse is protocol.parse_init_error:
            error_type, message, trace = value  # type: ignore[misc]
            note = 80  # the clipping note
            if (len(error_type) > protocol.ERROR_TYPE_MAX + note or len(message) > protocol.ERROR_MESSAGE_MAX + note
                    or len(trace) > protocol.STACK_TRACE_MAX + 1
                    or any(len(s) > protocol.STACK_ENTRY_MAX + note for s in trace)):
                raise Broken("parse_init_error returned strings over their bounds")
    return "parsed" if accepted else "refused"


def check_one(rng: random.Random) -> tuple[str, str, str, str]:
    """One input through every check; returns (input kind, decoder, inbox, parsers) outcomes."""
    kind, data = make_input(rng)
    try:
        return kind, check_decoder(rng, data), check_inbox(rng, data), check_parsers(rng, data)
    except Broken as exc:
        exc.data = data  # type: ignore[attr-defined]
        raise


def run(inputs: int, seed: int, *, only: int | None = None, progress: bool = False) -> Counter[str]:
    """Check ``inputs`` inputs from ``seed``; raises Broken (with ``index`` and ``data``)."""
    seen: Counter[str] = Counter()
    for index in range(inputs):
        if only is not None and index != only:
            continue
        rng = random.Random(f"{seed}:{index}")  # each input replayable on its own
        try:
            outcome = check_one(rng)
        except Broken as exc:
            exc.index = index  # type: ignore[attr-defined]
            raise
        for part, value in zip(("input", "decoder", "inbox", "parsers"), outcome, strict=True):
            seen[f"{part}.{value}"] += 1
        if progress and index and index % 100_000 == 0:
            print(f"  {index:,} inputs", file=sys.stderr, flush=True)
    return seen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__.split("\n")[0])
    parser.add_argument("--inputs", type=int, default=200_000, help="how many inputs (default 200,000)")
    parser.add_argument("--seed", type=int, default=None, help="default: the current time")
    parser.add_argument("--only", type=int, default=None, help="replay one input index of --seed")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else int(time.time())
    print(f"fuzzing the worker protocol: {args.inputs:,} inputs, seed {seed}")
    started = time.perf_counter()
    try:
        seen = run(args.inputs, seed, only=args.only, progress=True)
    except Broken as exc:
        index: int = getattr(exc, "index", 0)
        print(f"BROKEN at input {index}: {exc}\n"
              f"  replay: python -m bench.fuzz --seed {seed} --inputs {index + 1} --only {index}")
        data: bytes = getattr(exc, "data", b"")
        print(f"  input ({len(data)} bytes): {data[:512].hex()}{'…' if len(data) > 512 else ''}")
        return 1
    took = time.perf_counter() - started
    print(f"ok: {sum(v for k, v in seen.items() if k.startswith('input.')):,} inputs in {took:.1f} s "
          f"({args.inputs / took:,.0f}/s), every invariant held")
    for key in sorted(seen):
        print(f"  {key:<28} {seen[key]:>10,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
