"""A TCP relay that can be cut, to partition one process from the API server.

After `cut()` every connection stays open and nothing is forwarded, new ones are
accepted and never answered: what a dead network path looks like to a client
(no reset, no error, only silence until its own timeouts). `heal()` ends it.
"""

from __future__ import annotations

import socket
import threading
from contextlib import suppress


class Relay:
    """127.0.0.1:`port` forwards to `target` until `cut()`."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.cut_event = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.sockets.append(client)
            if self.cut_event.is_set():
                continue  # accepted, never answered
            upstream = socket.create_connection(self.target)
            self.sockets.append(upstream)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        with suppress(OSError):
            while data := src.recv(65536):
                if not self.cut_event.is_set():
                    dst.sendall(data)

    def cut(self) -> None:
        self.cut_event.set()

    def heal(self) -> None:
        """Forward again, as a partition that ends: the connections open across the
        cut are reset (their streams lost bytes; clients reconnect), new ones reach
        the target."""
        old, self.sockets = self.sockets, []
        for s in old:
            with suppress(OSError):
                s.close()
        self.cut_event.clear()

    def close(self) -> None:
        self.listener.close()
        for s in self.sockets:
            with suppress(OSError):
                s.close()
