"""A TCP proxy in front of a real server that a test can cut and restore: the server
"unavailable" the way a network outage makes it, for the fault tests.

While cut, every open connection is reset and every new one is accepted and reset at once (what
a client sees when a load balancer or the network drops it); the server itself keeps running,
untouched, so a test can look at its state directly while its clients cannot reach it.
``trip_on(...)`` cuts at a chosen moment: when a client sends bytes that contain every marker
(a request naming a table, a statement), and that request is never forwarded.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

#: Bytes of a connection's recent traffic kept to find markers split across reads.
WINDOW = 256 * 1024
REQUEST_STARTS = (b"GET ", b"POST ", b"PUT ", b"PATCH ", b"DELETE ", b"HEAD ")


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0), not an orderly FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class CuttableProxy:
    def __init__(self, upstream_host: str, upstream_port: int):
        self.upstream = (upstream_host, upstream_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.tripped = threading.Event()
        self.requests_refused = 0
        self._cut = False
        self._markers: tuple[bytes, ...] = ()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name="proxy-accept").start()

    # -- control -------------------------------------------------------------------------------

    def trip_on(self, *markers: bytes) -> None:
        """Cut as soon as a client sends bytes containing every one of ``markers``."""
        self.tripped.clear()
        self._markers = tuple(m.lower() for m in markers)

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            self._markers = ()
            sockets, self._open = list(self._open), set()
        self.tripped.set()
        for sock in sockets:
            _reset(sock)

    def restore(self) -> None:
        with self._lock:
            self._cut = False

    def close(self) -> None:
        self._closed = True
        self.cut()
        with contextlib.suppress(OSError):
            self.listener.close()

    def __enter__(self) -> CuttableProxy:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- plumbing ------------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self._cut:
                self.requests_refused += 1
                _reset(client)
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=10)
                server.settimeout(None)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                self._open.update((client, server))
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_client: bool) -> None:
        seen = b""
        try:
            while True:
                chunk = source.recv(65536)
                if not chunk:
                    break
                if from_client and self._markers:
                    if chunk.startswith(REQUEST_STARTS):
                        seen = b""  # a new HTTP request: markers must all be in one
                    seen = (seen + chunk.lower())[-WINDOW:]
                    if all(marker in seen for marker in self._markers):
                        self.cut()  # this request never reaches the server
                        return
                if self._cut:
                    return
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)
