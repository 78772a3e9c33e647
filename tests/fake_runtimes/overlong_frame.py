"""A worker whose reply's header declares more bytes than it sends.

``overlong_frame.py stay``: it sends a RESULT cut short, then sleeps (SIGTERM ends it).
``overlong_frame.py exit``: the same, then it exits.
``overlong_frame.py huge``: the header declares more than the protocol's 16 MiB maximum.
"""

import sys
import time

from _channel import Channel

from fnhost.execution import protocol

mode = sys.argv[1]
channel = Channel()
channel.handshake()
request_id, _deadline, _context, _payload = channel.next_invoke()
if mode == "huge":
    frame = protocol.encode_reply(protocol.Kind.RESULT, request_id, bytes(protocol.MAX_FRAME + 1))
else:
    frame = protocol.encode_reply(protocol.Kind.RESULT, request_id, b'{"ok": true}' + b" " * 4096)
channel.write(frame[:64])  # the header and the start of the body; the rest never comes
if mode == "exit":
    sys.exit(0)
while True:
    time.sleep(60)
