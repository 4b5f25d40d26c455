"""A real HTTP server on 127.0.0.1 that honours Range requests, for the remote-reading tests.

It serves files from a folder (replace one on disk to simulate a re-upload), sends ETag and
Last-Modified, answers If-Match with 412, counts the body bytes and requests it serves per path,
and injects faults: a number of 500s, a connection dropped after some bytes, a delay, Range
ignored. With ``tls`` (a server-side SSLContext) it speaks https.
"""

from __future__ import annotations

import hashlib
import os
import re
import ssl
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


class RangeServer:
    def __init__(self, root: Path, etags: bool = True, tls: ssl.SSLContext | None = None) -> None:
        self.root = Path(root)
        self.etags = etags
        self.served: dict[str, int] = {}  # path -> body bytes sent
        self.requests: list[tuple[str, str]] = []  # (path, Range header)
        self.fail_next = 0  # answer this many requests with 500
        self.drop_after: int | None = None  # send this many body bytes of the next GET, then drop
        self.delay_s = 0.0
        self.ignore_range = False
        self.headers_seen: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.scheme = "http"
        if tls is not None:  # https: the handshake happens as each connection is accepted
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
            self.scheme = "https"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def base(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{self.scheme}://{host}:{port}"

    def url(self, name: str) -> str:
        return f"{self.base}/{name}"

    def total_served(self) -> int:
        return sum(self.served.values())

    def __enter__(self) -> RangeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet tests
                pass

            def do_GET(self) -> None:  # noqa: N802
                server._answer(self)

        return Handler

    def _answer(self, h: BaseHTTPRequestHandler) -> None:
        name = unquote(h.path.split("?")[0].lstrip("/"))
        with self._lock:
            self.requests.append((name, h.headers.get("Range", "")))
            self.headers_seen.append(dict(h.headers))
            fail = self.fail_next > 0
            if fail:
                self.fail_next -= 1
            drop, self.drop_after = self.drop_after, None
        if self.delay_s:
            time.sleep(self.delay_s)
        path = self.root / name
        if fail:
            return self._status(h, 500)
        if not path.is_file():
            return self._status(h, 404)
        data = path.read_bytes()
        info = path.stat()
        etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
        if self.etags and h.headers.get("If-Match") not in (None, etag):
            return self._status(h, 412)
        start, stop, code = 0, len(data), 200
        match = _RANGE.match(h.headers.get("Range", ""))
        if match and not self.ignore_range:
            start = int(match.group(1))
            stop = min(len(data), int(match.group(2)) + 1) if match.group(2) else len(data)
            if start >= len(data):
                h.send_response(416)
                h.send_header("Content-Range", f"bytes */{len(data)}")
                h.send_header("Content-Length", "0")
                h.end_headers()
                return None
            code = 206
        body = data[start:stop]
        h.send_response(code)
        if code == 206:
            h.send_header("Content-Range", f"bytes {start}-{stop - 1}/{len(data)}")
        h.send_header("Content-Length", str(len(body)))
        if self.etags:
            h.send_header("ETag", etag)
            h.send_header("Last-Modified", formatdate(info.st_mtime, usegmt=True))
        h.end_headers()
        if drop is not None:
            body = body[:drop]
        with self._lock:  # counted before it is sent: the client may look as soon as it has it
            self.served[name] = self.served.get(name, 0) + len(body)
        h.wfile.write(body)
        if drop is not None:
            h.wfile.flush()
            h.close_connection = True
            h.connection.shutdown(2)  # the client sees the connection end before the range does
        return None

    @staticmethod
    def _status(h: BaseHTTPRequestHandler, code: int) -> None:
        h.send_response(code)
        h.send_header("Content-Length", "0")
        h.end_headers()


def replace_file(path: Path, data: bytes) -> None:
    """Replace ``path`` as an upload would (a new file renamed over it)."""
    temporary = path.with_suffix(".uploading")
    temporary.write_bytes(data)
    os.replace(temporary, path)
