"""Allocates memory until the daemon kills it at its memory_mb: 16 MiB at a time, every page written.

It stops growing at ``cap_mb`` (default 2 GiB) and sleeps: a daemon whose memory limit failed then
answers with Sandbox.Timeout, which the suites report as a wrong outcome, instead of the host
running out of memory.
"""

import time

CHUNK = 16 * 1024 * 1024
_kept = []


def handler(event, context):
    cap_mb = event.get("cap_mb", 2048) if isinstance(event, dict) else 2048
    while len(_kept) * 16 < cap_mb:
        _kept.append(b"\x01" * CHUNK)  # written, so it is resident: a bytearray of zeros may not be
    time.sleep(3600)
