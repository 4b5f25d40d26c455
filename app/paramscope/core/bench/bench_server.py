"""A range-request file server for ``paramscope bench``, run as its own process on 127.0.0.1.

``python -m paramscope.core.bench.bench_server FOLDER LATENCY_MS`` serves FOLDER's files, answers
``Range: bytes=A-B`` with 206 (whole files with 200), sends an ETag from each file's size and
modification time, answers a stale ``If-Match`` with 412, and waits LATENCY_MS before every
answer, the round trip to an object store. Bodies go out by ``sendfile`` straight from the page
cache, so sparse files of hundreds of GB cost neither disk nor the server's CPU. It prints its
port on the first line, then serves until killed. Standard library only: it starts in a blink.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


def _handler(root: Path, latency_s: float) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # one line per request would swamp the bench
            pass

        def do_GET(self) -> None:  # noqa: N802 (the http.server convention)
            time.sleep(latency_s)
            path = root / unquote(self.path.split("?")[0].lstrip("/"))
            if ".." in Path(self.path).parts or not path.is_file():
                self._empty(404)
                return
            info = path.stat()
            etag = f'"{info.st_size:x}-{info.st_mtime_ns:x}"'
            if self.headers.get("If-Match") not in (None, etag):
                self._empty(412)
                return
            start, stop = 0, info.st_size
            match = _RANGE.match(self.headers.get("Range", ""))
            if match:
                start = int(match.group(1))
                stop = min(info.st_size, int(match.group(2)) + 1) if match.group(2) else info.st_size
                if start >= info.st_size:
                    self._empty(416)
                    return
            self.send_response(206 if match else 200)
            if match:
                self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{info.st_size}")
            self.send_header("Content-Length", str(stop - start))
            self.send_header("ETag", etag)
            self.end_headers()
            with open(path, "rb") as handle:
                self.connection.sendfile(handle, start, stop - start)

        def _empty(self, code: int) -> None:
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the opener's parallel reads must never be refused


def serve(root: Path, latency_ms: float) -> None:
    """Serve ``root`` on a free port of 127.0.0.1 (printed first) until the process is killed."""
    server = _Server(("127.0.0.1", 0), _handler(root, latency_ms / 1000.0))
    print(server.server_address[1], flush=True)
    server.serve_forever(poll_interval=0.05)


class ServerProcess:
    """``with ServerProcess(folder, 20) as base:`` a server process and its ``http://...`` base URL."""

    def __init__(self, root: Path, latency_ms: float) -> None:
        self.root, self.latency_ms = root, latency_ms
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> str:
        command = [sys.executable, "-m", "paramscope.core.bench.bench_server", str(self.root), str(self.latency_ms)]
        self._process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=dict(os.environ))
        assert self._process.stdout is not None
        port = self._process.stdout.readline().strip()
        if not port.isdigit():
            self.__exit__()
            raise RuntimeError(f"the bench's range server did not start (said {port!r})")
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            if self._process.stdout is not None:
                self._process.stdout.close()
            self._process = None


if __name__ == "__main__":
    serve(Path(sys.argv[1]), float(sys.argv[2]))
