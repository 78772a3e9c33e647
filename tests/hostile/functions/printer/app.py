"""Prints as fast as it can until the daemon stops it at its timeout: a log flood.

100-byte lines, 10 kB a write: the daemon's cost is per line, the writer's per write.
"""

import sys

LINES = ("x" * 99 + "\n") * 100


def handler(event, context):
    write = sys.stdout.write
    while True:
        write(LINES)
