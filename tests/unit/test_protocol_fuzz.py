"""The worker protocol's decoding against hostile bytes: ``bench.fuzz`` on a bounded, seeded run,
and the cases it is built around, one by one.

Every byte a worker writes reaches ``protocol.Decoder`` and ``protocol.Inbox`` (what the daemon
accepts from a worker, and when); neither may raise anything but ``ProtocolError``, buffer more
than one frame, or keep anything it did not expect.
"""

from __future__ import annotations

import json
import random

import pytest

from bench import fuzz
from fnhost.execution import protocol
from fnhost.execution.protocol import Decoder, Inbox, Kind, ProtocolError

SEED = 20261206


def test_fuzz_invariants_hold_on_a_bounded_seeded_run() -> None:
    seen = fuzz.run(6000, SEED)  # about 1.5 s on a quiet machine
    assert sum(v for k, v in seen.items() if k.startswith("input.")) == 6000
    # The run reached every way an input can end, or it proves little.
    for outcome in ("input.random", "input.valid", "input.mutated", "decoder.frames", "decoder.partial",
                    "decoder.error", "inbox.accepted", "inbox.accepted-then-refused", "inbox.refused", "inbox.waiting",
                    "parsers.parsed", "parsers.refused"):
        assert seen[outcome] > 0, (outcome, seen)


def test_the_fuzzer_reports_a_decoder_that_raises_something_else(monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(self: Decoder, data: bytes) -> list[protocol.Frame]:
        raise IndexError("boom")

    monkeypatch.setattr(Decoder, "feed", crash)
    with pytest.raises(fuzz.Broken, match="IndexError"):
        fuzz.run(10, SEED)


# --- the decoder ---------------------------------------------------------------------------------


def test_a_whole_frame_over_the_maximum_is_refused_in_one_read() -> None:
    # The one-read fast path once took any frame whose length matched the read.
    data = protocol.encode(Kind.RESULT, bytes(protocol.MAX_FRAME))
    assert len(data) == 5 + protocol.MAX_FRAME
    with pytest.raises(ProtocolError, match="out of range"):
        Decoder().feed(data)


def test_a_bad_header_is_refused_before_its_body_arrives() -> None:
    decoder = Decoder()
    with pytest.raises(ProtocolError, match="unknown frame kind 99"):
        decoder.feed(fuzz.HEADER.pack(1000, 99) + b"x")  # 999 body bytes still to come


def test_frames_before_the_error_travel_with_it_and_the_decoder_stays_broken() -> None:
    good = protocol.encode(Kind.INIT_OK)
    decoder = Decoder()
    with pytest.raises(ProtocolError) as info:
        decoder.feed(good + b"\x00\x00\x00\x00\x06")
    assert [(f.kind, bytes(f.body)) for f in info.value.frames] == [(Kind.INIT_OK, b"")]
    assert decoder.pending == 0
    with pytest.raises(ProtocolError, match="broke earlier"):
        decoder.feed(good)


def test_what_stays_buffered_is_less_than_one_maximum_frame() -> None:
    decoder = Decoder()
    assert decoder.feed(fuzz.HEADER.pack(protocol.MAX_FRAME, Kind.RESULT) + bytes(1000)) == []
    assert decoder.pending == 1005 and decoder.partial() == (Kind.RESULT, protocol.MAX_FRAME)


# --- the inbox: what the daemon takes from a worker, and when ------------------------------------


def _reply_inbox(rid: bytes = b"req-1") -> Inbox:
    inbox = Inbox()
    inbox.expect_reply(rid)
    return inbox


def test_the_reply_for_the_request_in_flight_is_taken() -> None:
    inbox = _reply_inbox()
    inbox.feed(protocol.encode_reply(Kind.RESULT, b"req-1", b'"ok"'))
    frame = inbox.take()
    assert frame is not None and bytes(frame.body) == b"\x05req-1\"ok\""
    assert inbox.expect == protocol.EXPECT_NOTHING


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (protocol.encode(Kind.RESULT), "empty body"),
        (protocol.encode_reply(Kind.RESULT, b"req-0", b"{}"), "request b'req-0' while req-1"),
        (protocol.encode_reply(Kind.ERROR, b"req", b"{}"), "while req-1"),
        (protocol.encode(Kind.HELLO, b"{}"), "sent HELLO"),
        (protocol.encode(Kind.INVOKE, b"\x00" * 9), "sent INVOKE"),
        (fuzz.HEADER.pack(50, Kind.INIT_OK), "started a INIT_OK frame"),
        (b"\xff\xff\xff\xff\x06", "out of range"),
    ],
    ids=["empty-result", "other-request", "short-id", "hello", "invoke", "wrong-kind-header", "huge-length"],
)
def test_anything_but_that_reply_is_refused_and_nothing_is_kept(data: bytes, problem: str) -> None:
    inbox = _reply_inbox()
    with pytest.raises(ProtocolError, match=problem):
        inbox.feed(data)
    assert inbox.frame is None and inbox.expect == protocol.EXPECT_NOTHING


def test_a_second_reply_in_the_same_read_is_refused_after_the_first_is_kept() -> None:
    reply = protocol.encode_reply(Kind.RESULT, b"req-1", b"1")
    inbox = _reply_inbox()
    with pytest.raises(ProtocolError, match="after the one frame it owed"):
        inbox.feed(reply + reply)
    frame = inbox.take()
    assert frame is not None and bytes(frame.body).endswith(b"1")


def test_a_byte_after_the_reply_is_refused() -> None:
    inbox = _reply_inbox()
    with pytest.raises(ProtocolError, match="wrote more after the frame"):
        inbox.feed(protocol.encode_reply(Kind.RESULT, b"req-1", b"1") + b"\x00")


def test_any_byte_while_nothing_is_expected_is_refused_unread() -> None:
    inbox = Inbox()
    with pytest.raises(ProtocolError, match="while no frame was expected"):
        inbox.feed(protocol.encode_reply(Kind.RESULT, b"req-1", b"x" * 1024 * 1024))
    assert inbox._decoder.pending == 0  # nothing buffered for later


def _hello_then_init_inbox() -> Inbox:
    """The inbox of a worker whose INIT was written ahead of its HELLO (Worker.launch)."""
    inbox = Inbox()
    inbox.expect, inbox.then = protocol.EXPECT_HELLO, protocol.EXPECT_INIT_REPLY
    return inbox


def test_hello_and_init_reply_in_one_read_are_both_kept_in_order() -> None:
    inbox = _hello_then_init_inbox()
    inbox.feed(protocol.encode(Kind.HELLO, b"{}") + protocol.encode(Kind.INIT_OK))
    assert [inbox.take().kind, inbox.take().kind, inbox.take()] == [Kind.HELLO, Kind.INIT_OK, None]
    with pytest.raises(ProtocolError, match="while no frame was expected"):
        inbox.feed(protocol.encode(Kind.INIT_OK))


@pytest.mark.parametrize("second", [Kind.RESULT, Kind.HELLO])
def test_after_hello_only_an_init_reply_may_follow(second: Kind) -> None:
    inbox = _hello_then_init_inbox()
    with pytest.raises(ProtocolError, match=f"it sent {second.name} .*; expected INIT_OK or INIT_ERROR"):
        inbox.feed(protocol.encode(Kind.HELLO, b"{}") + protocol.encode(second, b"x"))
    assert inbox.take().kind is Kind.HELLO  # what came before the bad frame is kept; nothing after it
    assert inbox.take() is None and not inbox.expect and not inbox.then


def test_a_third_frame_after_hello_and_init_reply_is_refused() -> None:
    inbox = _hello_then_init_inbox()
    with pytest.raises(ProtocolError, match="after the one frame it owed"):
        inbox.feed(protocol.encode(Kind.HELLO, b"{}") + protocol.encode(Kind.INIT_OK) + protocol.encode(Kind.INIT_OK))


def test_a_header_over_its_kinds_limit_is_refused_before_the_body_is_buffered() -> None:
    inbox = Inbox()
    inbox.expect = protocol.EXPECT_HELLO
    with pytest.raises(ProtocolError, match="over the 65536 a HELLO may carry"):
        inbox.feed(fuzz.HEADER.pack(10 * 1024 * 1024, Kind.HELLO) + b"{")


# --- HELLO and INIT_ERROR bodies -------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"\xff\xfe", b"[]", b"1", b'{"protocol": "1"}', b'{"protocol": true}',
     b'{"protocol": 4, "runtime": "py", "runtime_version": "3", "pid": 1}',
     b'{"protocol": 1, "runtime": 5, "runtime_version": "", "pid": 1}',
     b'{"protocol": 1, "runtime": "py", "runtime_version": "3", "pid": "1"}', b"[" * 100_000],
)
def test_a_bad_hello_is_a_protocol_error(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        protocol.parse_hello(body)


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[1]", b'"text"', b'{"errorType": 1, "errorMessage": "m"}', b'{"errorMessage": "m"}',
     b'{"errorType": "T", "errorMessage": null}', b'{"errorType": "T", "errorMessage": "m", "stackTrace": "s"}',
     b'{"errorType": "T", "errorMessage": "m", "stackTrace": [1]}', b"{" * 100_000],
)
def test_a_bad_init_error_is_a_protocol_error(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        protocol.parse_init_error(body)


def test_init_error_strings_are_clipped() -> None:
    body = json.dumps({"errorType": "T" * 1000, "errorMessage": "m" * 100_000,
                       "stackTrace": ["s" * 5000] * 500}).encode()
    error_type, message, trace = protocol.parse_init_error(body)
    assert error_type.startswith("T" * protocol.ERROR_TYPE_MAX) and len(error_type) < protocol.ERROR_TYPE_MAX + 80
    assert message.startswith("m" * protocol.ERROR_MESSAGE_MAX) and "characters clipped" in message
    assert len(message) < protocol.ERROR_MESSAGE_MAX + 80
    assert len(trace) == protocol.STACK_TRACE_MAX + 1 and "400 more entries clipped" in trace[-1]
    assert all(len(s) < protocol.STACK_ENTRY_MAX + 80 for s in trace)


def test_a_valid_init_error_keeps_its_fields() -> None:
    body = b'{"errorType": "Runtime.ImportModuleError", "errorMessage": "no module", "stackTrace": null}'
    assert protocol.parse_init_error(body) == ("Runtime.ImportModuleError", "no module", [])


def test_fuzz_inputs_are_reproducible_from_seed_and_index() -> None:
    a = fuzz.make_input(random.Random(f"{SEED}:7"))
    b = fuzz.make_input(random.Random(f"{SEED}:7"))
    assert a == b
