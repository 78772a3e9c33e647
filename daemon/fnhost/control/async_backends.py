"""The asynchronous queue's backend, chosen by the ``queue`` setting."""

from __future__ import annotations

from ..errors import ConfigError
from .async_queue import AsyncQueue
from .async_sqlite import SqliteQueue
from .config import Settings

SQLITE_FILE = "async.sqlite3"


def open_backend(settings: Settings) -> AsyncQueue:
    """``queue = ""``: SQLite in the state directory; ``nats://HOST:PORT``: JetStream (nats-py).

    Nothing is connected yet: ``start()`` does that. Raises ConfigError for an unknown scheme.
    """
    queue = settings.queue
    if not queue:
        return SqliteQueue(settings.state_dir / SQLITE_FILE, durability=settings.async_durability)
    if queue.startswith(("nats://", "tls://")):
        from .async_nats import JetStreamQueue  # imported only when used: nats-py is heavy

        return JetStreamQueue(queue, settings)
    raise ConfigError(f"daemon.queue {queue!r}: use \"\" (SQLite in the state directory) or nats://HOST:PORT")
