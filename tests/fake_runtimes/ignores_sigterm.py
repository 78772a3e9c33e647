"""A worker deaf to SIGTERM: it starts well, then sleeps forever in its first invocation.

It forks a grandchild (also deaf to SIGTERM, and in the same process group) before its HELLO, so
a test can see that the daemon's SIGKILL reaches the whole group, not only the leader. It never
reads its control pipe again once invoked, so the EOF of a stop goes unnoticed as well.
"""

import os
import signal
import time

from _channel import Channel

signal.signal(signal.SIGTERM, signal.SIG_IGN)  # inherited by the grandchild, across fork
channel = Channel()
if os.fork() == 0:
    while True:
        time.sleep(60)
channel.handshake()
channel.next_invoke()
while True:
    time.sleep(60)
