"""A healthy worker that answers each INVOKE with what reached it: the context and the payload.

``echo_context.py [VERSION]``: it says VERSION (default: the daemon's) in HELLO and reads INVOKE
frames of that version, so a test can see what the daemon sends a worker of either protocol.
The RESULT is ``{"version", "context": <the context JSON's text or null>, "payload": <text>}``.
"""

import json
import sys

from _channel import Channel

from fnhost.execution import protocol

channel = Channel(int(sys.argv[1]) if len(sys.argv) > 1 else protocol.PROTOCOL_VERSION)
channel.handshake()
while True:
    request_id, _deadline, context, payload = channel.next_invoke()
    answer = {"version": channel.version, "context": context.decode() if context else None,
              "payload": payload.decode()}
    channel.write(protocol.encode_reply(protocol.Kind.RESULT, request_id, json.dumps(answer).encode()))
