"""Which listeners the daemon may open, and what it says at start-up about what stays open.

A listener reachable from other hosts needs TLS and client authentication (a token or client
certificates for gRPC, access keys for SigV4 on the HTTP listeners), or the operator's explicit
``--insecure``: without them anyone on the network could deploy code and run it on this host.
"""

from __future__ import annotations

import os

import structlog

from ..control.config import Settings, loopback
from .url_server import refusal as _url_refusal

log = structlog.get_logger("fnhost.daemon")


def listener_refusal(settings: Settings) -> str | None:
    """Why the daemon must not listen where ``settings`` say (gRPC or HTTP), or None.

    TCP reachable from other hosts needs TLS and client authentication (a token, or client
    certificates; on the HTTP listener, access keys for SigV4): without them anyone on the
    network could deploy code and run it on this host.
    """
    return _grpc_refusal(settings) or _http_refusal(settings) or _url_refusal(settings)


def _http_refusal(settings: Settings) -> str | None:
    address = settings.http_listen
    if address == "none" or settings.insecure or loopback(address) is not False:
        return None
    tls = bool(settings.tls_cert and settings.tls_key)
    keys = bool(settings.http_credentials_file)
    if tls and keys:
        return None
    missing = " and ".join(m for m, ok in (("TLS", tls), ("access keys", keys)) if not ok)
    return (
        f"refusing to serve Lambda's HTTP API on {address} without {missing}: it is reachable from other "
        "hosts, and anyone who reaches it could deploy and run code here. Pass --tls-cert FILE --tls-key FILE "
        "and set daemon.http_credentials_file (access keys every request must be signed with), or use "
        "--http-listen 127.0.0.1:PORT, unix:PATH or none; --insecure (daemon.insecure = true) listens anyway"
    )


def _grpc_refusal(settings: Settings) -> str | None:
    tls = bool(settings.tls_cert and settings.tls_key)
    authenticated = bool(settings.token_file or settings.tls_client_ca)
    if settings.insecure or loopback(settings.address) is not False or (tls and authenticated):
        return None
    missing = " and ".join(m for m, ok in (("TLS", tls), ("client authentication", authenticated)) if not ok)
    return (
        f"refusing to listen on {settings.address} without {missing}: it is reachable from other hosts, "
        "and anyone who reaches it could deploy and run code here. Pass --tls-cert FILE --tls-key FILE "
        "and --token-file FILE (or --tls-client-ca FILE), or listen on a unix socket or a loopback "
        "address; --insecure (daemon.insecure = true) listens anyway"
    )


def warn_about_exposure(settings: Settings) -> None:
    """Say at start-up what the listener and the worker identities leave open."""
    reach = loopback(settings.address)
    tls = bool(settings.tls_cert and settings.tls_key)
    if reach is not None and settings.token_file and not tls:
        log.warning("token_without_tls", address=settings.address,
                    note="the bearer token and every payload travel in clear; pass --tls-cert and --tls-key")
    if reach is True and not (settings.token_file or settings.tls_client_ca):
        log.warning("tcp_without_authentication", address=settings.address,
                    note="any process on this host, functions' workers included, can deploy, delete and "
                         "invoke functions; pass --token-file, or listen on the unix socket (mode 0660)")
    if reach is False and settings.insecure and not (tls and (settings.token_file or settings.tls_client_ca)):
        log.warning("insecure_listener", address=settings.address,
                    note="--insecure: reachable from other hosts without TLS and client authentication")
    http = settings.http_listen
    if http != "none" and not settings.http_credentials_file:
        if loopback(http) is False:
            log.warning("insecure_http_listener", address=http,
                        note="--insecure: Lambda's HTTP API is reachable from other hosts without access keys")
        elif loopback(http):
            log.warning("http_without_authentication", address=http,
                        note="any process on this host, functions' workers included, can deploy, delete and "
                             "invoke functions over Lambda's API; set daemon.http_credentials_file")
    if os.geteuid() != 0:
        log.warning("no_function_isolation", user=os.geteuid(),
                    note="the daemon is not root, so every function runs as the daemon's own user: functions "
                         "can read each other's code, scratch space and output, the state directory and the "
                         "token file, and signal each other; run the daemon as root for a uid per function")
    elif settings.worker_user == "root":
        log.warning("functions_run_as_root", note="worker_user = \"root\": functions run as root, unconfined")
    elif settings.worker_user:
        log.warning("functions_share_a_user", user=settings.worker_user,
                    note="every function runs as this one user and can reach the others' files and processes")
