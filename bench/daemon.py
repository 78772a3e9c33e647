"""The bench's own fnhost daemon: ``fnhost.testing.harness.Daemon`` (the test suite's harness) on a
temporary state directory and unix socket, exactly as an operator runs it (``python -m fnhost
serve``), with the bench's limits and the bench's fnhost on its PYTHONPATH; always stopped,
workers included.
"""

from __future__ import annotations

from pathlib import Path

from fnhost.testing.harness import Daemon, DaemonFailed

from .functions import child_env

__all__ = ["DAEMON_CONFIG", "Daemon", "DaemonFailed", "bench_daemon"]

# Generous limits: 64 JVMs starting at once on 2 cores need far longer than the default 10 s init
# timeout, and a saturated pool must queue rather than throttle while the bench warms it up.
# The CPU controller off: at 128 MB a worker gets 7 % of a vCPU (Lambda's proportion), which would
# measure the throttle instead of fnhost's invoke path; bench functions run unthrottled.
DAEMON_CONFIG = """\
[daemon]
init_timeout_s = 90.0
queue_timeout_s = 60.0
max_concurrency_cap = 64
cpu_mb_per_vcpu = 0
"""


def bench_daemon(workdir: Path) -> Daemon:
    """The daemon of one run, not started: state in ``workdir/state``, its log in ``workdir/state.log``."""
    return Daemon(workdir / "state", config=DAEMON_CONFIG, base_env=child_env())
