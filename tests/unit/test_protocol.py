import pytest

from fnhost.execution import protocol
from fnhost.execution.protocol import Decoder, Kind, ProtocolError


def test_frames_split_across_reads_and_batched() -> None:
    data = protocol.encode(Kind.HELLO, b'{"protocol":1}') + b"".join(
        protocol.encode_invoke(b"req-1", 1234567890123, b'{"a":1}'))
    d = Decoder()
    frames = []
    for i in range(len(data)):  # one byte at a time: the worst a pipe can do
        frames += d.feed(data[i : i + 1])
    assert [f.kind for f in frames] == [Kind.HELLO, Kind.INVOKE]
    assert protocol.split_invoke(frames[1].body) == (b"req-1", 1234567890123, b'{"a":1}')
    assert d.pending == 0
    both = Decoder().feed(data)
    assert [f.kind for f in both] == [Kind.HELLO, Kind.INVOKE]


def test_reply_round_trip() -> None:
    frame = Decoder().feed(protocol.encode_reply(Kind.RESULT, b"id", b"[1]"))[0]
    assert frame.kind is Kind.RESULT
    assert protocol.split_reply(frame.body) == (b"id", b"[1]")


@pytest.mark.parametrize("raw", [b"\x00\x00\x00\x00\x01", b"\x7f\xff\xff\xff\x01", b"\x00\x00\x00\x01\x63"])
def test_invalid_frames_are_refused(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        Decoder().feed(raw)


def test_short_reply_is_refused() -> None:
    with pytest.raises(ProtocolError):
        protocol.split_reply(b"\x09abc")


def test_invoke_payload_is_not_copied_into_the_header() -> None:
    payload = b"x" * 100_000
    parts = protocol.encode_invoke(b"r", 1, payload)
    assert parts[1] is payload
