"""A real HTTP server on 127.0.0.1 serving fixture routes, for connector and fetcher tests.

A route is a path (with query string, or without to match any query) mapped to a `Reply` or to
a function of the request returning one. Replies can be slow, trickle their body, lie about
their length, redirect, or be huge without holding the body in memory.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


@dataclass
class Reply:
    status: int = 200
    body: bytes | Iterable[bytes] = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "text/html; charset=utf-8"
    delay_s: float = 0.0  # before the status line
    chunk_delay_s: float = 0.0  # between body chunks (a trickle)
    content_length: int | None = None  # to announce a length other than the real one


@dataclass
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


Handler = Callable[[Request], Reply]


class LoopbackServer:
    """`with LoopbackServer() as srv: srv.route('/feed', Reply(...)); srv.url('/feed')`."""

    def __init__(self) -> None:
        self.routes: dict[str, Reply | Handler] = {}
        self.requests: list[Request] = []
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                req = Request(
                    self.command,
                    parts.path,
                    parts.query,
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                server.requests.append(req)
                target = server.routes.get(self.path) or server.routes.get(parts.path)
                if target is None:
                    reply = Reply(404, b"not found", content_type="text/plain")
                else:
                    reply = target(req) if callable(target) else target
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                chunks = [reply.body] if isinstance(reply.body, bytes) else reply.body
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                if isinstance(reply.body, bytes) and reply.content_length is None:
                    self.send_header("Content-Length", str(len(reply.body)))
                elif reply.content_length is not None:
                    self.send_header("Content-Length", str(reply.content_length))
                else:
                    self.send_header("Connection", "close")
                self.end_headers()
                if self.command == "HEAD":
                    return
                try:
                    for chunk in chunks:
                        self.wfile.write(chunk)
                        self.wfile.flush()
                        if reply.chunk_delay_s:
                            time.sleep(reply.chunk_delay_s)
                except (BrokenPipeError, ConnectionResetError):
                    return
                if reply.content_length is not None or not isinstance(reply.body, bytes):
                    self.close_connection = True

            do_GET = _serve
            do_POST = _serve
            do_HEAD = _serve

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def route(self, path: str, reply: Reply | Handler) -> None:
        self.routes[path] = reply

    def hits(self, path: str) -> int:
        return sum(1 for r in self.requests if r.path == path)

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
