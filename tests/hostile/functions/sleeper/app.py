"""Sleeps past its timeout; with ``ignore_sigterm`` it also ignores the daemon's SIGTERM, so only
the SIGKILL after the grace ends it."""

import signal
import time


def handler(event, context):
    event = event if isinstance(event, dict) else {}
    if event.get("ignore_sigterm"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(event.get("seconds", 3600))
    return "woke"
