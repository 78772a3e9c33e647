import json

import pytest

from fnhost.errors import InvalidRequestContent
from fnhost.execution import protocol
from fnhost.execution.invocation import client_context_object, function_arn
from fnhost.execution.protocol import Decoder, Kind, ProtocolError


def test_frames_split_across_reads_and_batched() -> None:
    data = protocol.encode(Kind.HELLO, b'{"protocol":1}') + b"".join(
        protocol.encode_invoke(b"req-1", 1234567890123, b'{"a":1}'))
    d = Decoder()
    frames = []
    for i in range(len(data)):  # one byte at a time: the worst a pipe can do
        frames += d.feed(data[i : i + 1])
    assert [f.kind for f in frames] == [Kind.HELLO, Kind.INVOKE]
    assert protocol.split_invoke(frames[1].body) == (b"req-1", 1234567890123, b"", b'{"a":1}')
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


_CLIENT = {"client": {"installation_id": "i-1"}, "custom": {"k": "v"}, "env": {"locale": "en_GB"}}
_ARN = "arn:aws:lambda:us-east-1:000000000000:function:f:live"


def test_the_context_frame_round_trips_and_costs_four_bytes_when_empty() -> None:
    context = protocol.encode_context(_CLIENT, _ARN)
    frame = b"".join(protocol.encode_invoke(b"req-1", 123, b'{"a":1}', context))
    (decoded,) = protocol.Decoder().feed(frame)
    assert protocol.split_invoke(decoded.body) == (b"req-1", 123, context, b'{"a":1}')
    bare = b"".join(protocol.encode_invoke(b"req-1", 123, b'{"a":1}'))
    v1 = b"".join(protocol.encode_invoke_v1(b"req-1", 123, b'{"a":1}', context))
    assert len(bare) == len(v1) + 4
    assert protocol.split_invoke(protocol.Decoder().feed(v1)[0].body, 1) == (b"req-1", 123, b"", b'{"a":1}')
    with pytest.raises(protocol.ProtocolError):  # a context length that runs past the body
        protocol.split_invoke(frame[5 : 5 + 1 + 5 + 12 + 3])
    assert protocol.encode_context(None, "") == b""


def test_function_arn_is_lambdas() -> None:
    assert function_arn("f") == "arn:aws:lambda:us-east-1:000000000000:function:f"
    assert function_arn("f", "7", region="eu-west-1", account_id="123456789012") == \
        "arn:aws:lambda:eu-west-1:123456789012:function:f:7"


def test_an_arn_alone_is_encoded_once() -> None:
    first = protocol.encode_context(None, _ARN)
    assert json.loads(first) == {"invoked_function_arn": _ARN}
    assert protocol.encode_context(None, _ARN) is first


@pytest.mark.parametrize("raw", [b"{not json", b"[1]", b"null", b'"s"', b"[" * 100_000, b"{}" + b" " * 4000])
def test_a_client_context_must_be_a_small_json_object(raw: bytes) -> None:
    with pytest.raises(InvalidRequestContent, match="Client context must be"):
        client_context_object(raw)


def test_a_client_context_object_is_taken_as_it_is() -> None:
    assert client_context_object(b"") is None
    assert client_context_object(json.dumps(_CLIENT).encode()) == _CLIENT
