"""What every fake runtime shares: its control fds and blocking frame I/O.

Frames are built and parsed only with ``fnhost.execution.protocol``, so a fake cannot drift from
what the daemon speaks; each fake then breaks the protocol in its own single way.
"""

from __future__ import annotations

import os

from fnhost.execution import protocol


class Channel:
    def __init__(self, version: int = protocol.PROTOCOL_VERSION) -> None:
        self.version = version  # the worker protocol this fake says it speaks in HELLO
        fds = os.environ.pop(protocol.CONTROL_FDS_ENV)  # "in,out", as the real shims get them
        self.fd_in, self.fd_out = (int(fd) for fd in fds.split(","))
        self._decoder = protocol.Decoder()
        self._frames: list[protocol.Frame] = []

    def read(self) -> protocol.Frame:
        while not self._frames:
            data = os.read(self.fd_in, 65536)
            if not data:
                os._exit(0)  # the daemon closed our input: it is gone, or it stopped us
            self._frames.extend(self._decoder.feed(data))
        return self._frames.pop(0)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd_out, view):]

    def handshake(self) -> None:
        """HELLO, then INIT answered with INIT_OK: a healthy start."""
        self.write(protocol.encode_json(protocol.Kind.HELLO, {
            "protocol": self.version, "runtime": "fake", "runtime_version": "0",
            "pid": os.getpid(),
        }))
        frame = self.read()
        assert frame.kind is protocol.Kind.INIT, frame.kind
        self.write(protocol.encode(protocol.Kind.INIT_OK))

    def next_invoke(self) -> protocol.Invoke:
        """The next INVOKE: (request id, deadline in epoch ms, context JSON, payload)."""
        frame = self.read()
        assert frame.kind is protocol.Kind.INVOKE, frame.kind
        return protocol.split_invoke(frame.body, self.version)
