"""A worker that answers an INVOKE with a RESULT carrying another request's id."""

from _channel import Channel

from fnhost.execution import protocol

channel = Channel()
channel.handshake()
while True:
    request_id, _deadline, _context, payload = channel.next_invoke()
    channel.write(protocol.encode_reply(protocol.Kind.RESULT, b"not-" + request_id, payload))
