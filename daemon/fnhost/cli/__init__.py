"""The ``fnhost`` command: ``serve`` runs the daemon; every other command is a gRPC client.

``main`` holds the daemon's and the functions' commands, ``versions`` those of published versions
and aliases, ``common`` what they share (errors, output).
"""

from .main import main

__all__ = ["main"]
