"""Local TCP ports for the servers and process groups a run starts."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port free on this machine now (the OS's pick; another process could take it before it is bound)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
