"""systemd integration: the notify protocol (READY, STATUS, WATCHDOG, STOPPING, RELOADING) and the unit file.

The notify protocol is one datagram of ``KEY=VALUE`` lines to the socket named in
``$NOTIFY_SOCKET`` (``@`` for the abstract namespace); see sd_notify(3). It is small enough that a
library would add more than it saves.
"""

from __future__ import annotations

import os
import socket
import time

import structlog

log = structlog.get_logger("fnhost.systemd")


class Notifier:
    """Sends sd_notify messages; does nothing when not started by systemd with Type=notify."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self._address = ("\0" + address[1:]) if address.startswith("@") else address
        self._sock: socket.socket | None = None
        if self._address:
            # Non-blocking: a listener that stops reading must never stall the event loop.
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        # WATCHDOG_PID guards against a variable inherited by some other process.
        self.watchdog_interval_s: float | None = None
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_interval_s = int(usec) / 1_000_000 / 2  # ping at half the deadline, as sd_watchdog_enabled(3) advises

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, *lines: str) -> None:
        if self._sock is None:
            return
        try:
            self._sock.sendto("\n".join(lines).encode(), self._address)
        except OSError as exc:  # systemd gone or restarted: never fatal for the daemon
            log.warning("sd_notify_failed", error=exc.strerror)

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def reloading(self) -> None:
        # systemd ≥ 253 wants the monotonic time with RELOADING=1 (Type=notify-reload).
        self.send("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}", "STATUS=reloading configuration")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=draining")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


UNIT_TEMPLATE = """\
# fnhost.service: printed by `fnhost systemd-unit`. Install it as
# /etc/systemd/system/fnhost.service, then: systemctl daemon-reload && systemctl enable --now fnhost
[Unit]
Description=fnhost: AWS Lambda functions on this host
Documentation=https://pypi.org/project/fnhost/
After=network.target

[Service]
Type=notify
NotifyAccess=main
ExecStart={exec_start} serve --config /etc/fnhost/fnhost.toml
ExecReload=/bin/kill -HUP $MAINPID
# The daemon drains on SIGTERM (in-flight invocations finish within shutdown_grace_s); systemd
# sends SIGKILL to what remains only after TimeoutStopSec. mixed: SIGTERM goes to the daemon
# alone, which stops its workers itself; the final SIGKILL reaches every process of the unit.
KillMode=mixed
TimeoutStopSec=45
Restart=on-failure
RestartSec=2
WatchdogSec=30
# State: the registry, code store and build outputs; the socket lives there too unless
# [daemon] listen names another path (e.g. unix:/run/fnhost/fnhost.sock).
StateDirectory=fnhost
StateDirectoryMode=0711
RuntimeDirectory=fnhost
RuntimeDirectoryMode=0755
ConfigurationDirectory=fnhost
Environment=FNHOST_STATE_DIR=/var/lib/fnhost
# Root is needed to run each function under its own unprivileged uid and to create memory
# cgroups; Delegate gives the daemon its own cgroup subtree for the workers' memory limits.
User=root
Delegate=yes
UMask=0027
LimitNOFILE=65536
# Hardening that leaves workers able to run: they need exec, their own /tmp and the toolchains.
NoNewPrivileges=yes
ProtectSystem=full
ProtectHome=read-only
PrivateTmp=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=no
ProtectClock=yes
ProtectHostname=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
RestrictNamespaces=yes
LockPersonality=yes
SystemCallArchitectures=native
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK

[Install]
WantedBy=multi-user.target
"""


def unit_file(exec_start: str) -> str:
    return UNIT_TEMPLATE.format(exec_start=exec_start)
