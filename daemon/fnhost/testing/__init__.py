"""Helpers for fnhost's own tests and benchmark suite, run from a checkout.

- ``harness``: ``fnhost serve`` in a child process on a temporary state directory and unix socket,
  waited for, read, and stopped without leaving a worker behind;
- ``fixtures``: the fixture functions under ``tests/fixtures/`` (one reading of each runtime's
  ``handlers.toml``), and a copy of them every worker user can read.

Nothing in the daemon imports this package.
"""
