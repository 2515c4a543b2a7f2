"""A real HTTP server on loopback serving fixed routes, for tests of URL fetching (images, OCR, transcription).

``with UrlServer({"/a.pdf": (200, "application/pdf", data)}) as server: server.url("/a.pdf")``; ``server.seen``
records (path, Host header) of every request. Built-in routes: ``/to/<url>`` redirects to <url> (``PORT`` in it
becomes this server's port), ``/stall`` answers only when the server stops, ``/chunked/<n>`` streams n bytes of
octet-stream without a Content-Length.
"""

from __future__ import annotations

import http.server
import socket
import threading
from types import TracebackType
from typing import Any

Route = tuple[int, str, bytes]  # status, content type, body


class UrlServer:
    def __init__(self, routes: dict[str, Route] | None = None, *, host: str = "127.0.0.1") -> None:
        self.routes = routes or {}
        self.seen: list[tuple[str, str]] = []
        self._release = threading.Event()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.seen.append((self.path, self.headers.get("Host", "")))
                owner._answer(self)

            def log_message(self, *args: Any) -> None:
                pass

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        server_class = type("Server", (http.server.ThreadingHTTPServer,), {"address_family": family})
        self._httpd = server_class((host, 0), Handler)
        self.host, self.port = host, self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    def url(self, path: str = "/") -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{path}"

    def __enter__(self) -> UrlServer:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def _answer(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        path = handler.path
        if path.startswith("/to/"):
            handler.send_response(302)
            handler.send_header("Location", path[4:].replace("PORT", str(self.port)))
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        if path == "/stall":
            self._release.wait(30)
            return
        if path.startswith("/chunked/"):
            handler.send_response(200)
            handler.send_header("Content-Type", "application/octet-stream")
            handler.end_headers()  # no Content-Length: the body ends when the connection closes
            handler.wfile.write(bytes(int(path[9:])))
            handler.close_connection = True
            return
        status, kind, body = self.routes.get(path, (404, "text/plain", b"no such route"))
        handler.send_response(status)
        handler.send_header("Content-Type", kind)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
