"""Byte ranges of remote files: HTTP(S) range requests and S3 (through s3fs), cached on disk.

Only ranges are read, never whole files. Every response is checked against the version of the
file seen first (size, ETag, Last-Modified): a file replaced on the server between two reads is
refused, never mixed. A dropped connection or a server error is retried a few times, resuming
after the last byte received; after that it is one line naming the URL, and a later retry
resumes (ranges already fetched stay in the on-disk cache,
:class:`~paramscope.core.files.remote_cache.RangeCache`).

Credentials come from the usual places and never appear in a message, a source name or the
cache: for HTTP(S) the URL's ``user:password@``, ``~/.netrc``, or ``HF_TOKEN`` for Hugging Face
hosts; for S3 botocore's chain (environment, ``~/.aws/config``, instance roles). Certificates
are checked against the system's authorities, or those in ``SSL_CERT_FILE`` (``AWS_CA_BUNDLE``
for S3): the standard variables for a private authority.
"""

from __future__ import annotations

import base64
import http.client
import netrc
import os
import re
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import unquote, urlsplit, urlunsplit

from paramscope.core.errors import SourceError, shown

_REMOTE = re.compile(r"^(https?|s3)://", re.IGNORECASE)
#: Attempts after the first for one range (a dropped connection resumes after the last byte).
RETRIES = 3
RETRY_PAUSE_S = 0.2
TIMEOUT_S = 30.0
_READ_PIECE = 1 << 20


def is_remote(spec: str) -> bool:
    """Whether ``spec`` is a URL paramscope reads over the network (checked before paths)."""
    return _REMOTE.match(spec.strip()) is not None


def shown_url(url: str) -> str:
    """``url`` fit for messages and titles: no ``user:password@``, a query (a signed URL's
    secret) shown as ``?...``, control characters escaped."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    query = "..." if parts.query else ""
    return shown(urlunsplit((parts.scheme.lower(), netloc, parts.path, query, "")))


@dataclass(frozen=True)
class RemoteStamp:
    """What identifies one version of a remote file: replaced on the server, it differs."""

    size: int
    etag: str | None = None
    modified: str | None = None

    @property
    def cacheable(self) -> bool:
        """A size alone cannot tell two versions apart: such files are never cached."""
        return bool(self.etag or self.modified)


class RangeReader(Protocol):
    """One remote file, read by byte ranges."""

    url: str  # as shown (see :func:`shown_url`)

    def first(self, length: int) -> tuple[RemoteStamp, bytes]:
        """The version of the file now, and its first ``length`` bytes (fewer if it is shorter)."""

    def read(self, stamp: RemoteStamp, start: int, stop: int) -> bytes:
        """Bytes ``[start, stop)`` of version ``stamp``; a SourceError if the file changed."""

    def read_into(self, stamp: RemoteStamp, start: int, target: memoryview) -> None:
        """:meth:`read` of ``len(target)`` bytes from ``start``, written into ``target``."""


def changed_error(url: str) -> SourceError:
    return SourceError(f"{url}: changed on the server since it was opened (replaced or rewritten); reopen it")


def failed_error(url: str, problem: str) -> SourceError:
    return SourceError(f"{url}: {problem}; retry to resume (ranges already read are kept)")


# ---------------------------------------------------------------------------------------- HTTP

_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+)")
_HF_HOSTS = ("huggingface.co", "hf.co")


class _Transient(Exception):
    """A failure worth another attempt: the connection dropped, a 5xx, a timeout."""


class HttpReader:
    """Range requests with the standard library (no extra package for http/https)."""

    def __init__(self, url: str, timeout: float = TIMEOUT_S, retries: int = RETRIES) -> None:
        parts = urlsplit(url)
        self.url = shown_url(url)
        self._target = urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, parts.query, ""))
        self._auth = _http_auth(parts)
        self.timeout = timeout
        self.retries = retries

    def first(self, length: int) -> tuple[RemoteStamp, bytes]:
        return self._attempts(lambda: self._first(length))

    def read(self, stamp: RemoteStamp, start: int, stop: int) -> bytes:
        data = bytearray(max(0, stop - start))
        self.read_into(stamp, start, memoryview(data))
        return bytes(data)

    def read_into(self, stamp: RemoteStamp, start: int, target: memoryview) -> None:
        filled = [0]  # bytes already in ``target``: a retry asks only for the rest
        if len(target):
            self._attempts(lambda: self._fill(stamp, start, target, filled))

    def _attempts(self, fetch):  # noqa: ANN001, ANN202  (one retry loop for both requests)
        for attempt in range(self.retries + 1):
            try:
                return fetch()
            except _Transient as exc:
                if attempt == self.retries:
                    raise failed_error(self.url, f"{exc} (after {self.retries + 1} attempts)") from None
                time.sleep(RETRY_PAUSE_S * (attempt + 1))
        raise AssertionError("unreachable")  # pragma: no cover

    def _first(self, length: int) -> tuple[RemoteStamp, bytes]:
        with self._open(f"bytes=0-{max(0, length - 1)}", None) as resp:
            if resp.status == 200:  # the server ignores Range: take the file only if it is small
                size = int(resp.headers.get("Content-Length") or -1)
                if size < 0 or size > length:
                    raise SourceError(
                        f"{self.url}: the server does not answer range requests, so it cannot be read "
                        "in parts; download it first and open the local copy"
                    )
                return self._stamp(resp, size), self._body(resp, size)
            begin, _, total = self._content_range(resp)
            if begin != 0:
                raise SourceError(f"{self.url}: the server answered another range than asked")
            stamp = self._stamp(resp, total)
            return stamp, self._body(resp, min(length, total))

    def _fill(self, stamp: RemoteStamp, start: int, target: memoryview, filled: list[int]) -> None:
        """Received bytes go straight into ``target`` (a tensor's memory): no copy on the way."""
        at, stop = start + filled[0], start + len(target)
        with self._open(f"bytes={at}-{stop - 1}", stamp) as resp:
            if resp.status != 206:
                raise SourceError(f"{self.url}: the server stopped answering range requests (HTTP {resp.status})")
            begin, _, total = self._content_range(resp)
            if begin != at:
                raise SourceError(f"{self.url}: the server answered another range than asked")
            if self._stamp(resp, total) != stamp:
                raise changed_error(self.url)
            while filled[0] < len(target):
                filled[0] += self._piece_into(resp, target[filled[0] : filled[0] + _READ_PIECE])

    def _open(self, byte_range: str, stamp: RemoteStamp | None) -> http.client.HTTPResponse:
        request = urllib.request.Request(self._target, headers={"Range": byte_range, "Accept-Encoding": "identity"})
        if self._auth:
            request.add_unredirected_header("Authorization", self._auth)  # never sent to a redirect's host
        if stamp is not None and stamp.etag:
            request.add_header("If-Match", stamp.etag)
        try:
            return urllib.request.urlopen(request, timeout=self.timeout)  # noqa: S310 (http/https only)
        except urllib.error.HTTPError as exc:
            exc.close()
            raise self._http_error(exc.code, stamp) from None
        except (OSError, http.client.HTTPException) as exc:
            untrusted = getattr(exc, "reason", exc)
            if isinstance(untrusted, ssl.SSLCertVerificationError):  # no retry mends that
                raise SourceError(
                    f"{self.url}: the server's certificate is not trusted ({untrusted.verify_message}); "
                    "for a private certificate authority, set SSL_CERT_FILE to its certificate (PEM)"
                ) from None
            raise _Transient(_reason(exc)) from None

    def _http_error(self, code: int, stamp: RemoteStamp | None) -> Exception:
        if code == 412 and stamp is not None:
            return changed_error(self.url)
        if code >= 500 or code in (408, 429):
            return _Transient(f"server error HTTP {code}")
        if code == 416:
            return changed_error(self.url) if stamp is not None else SourceError(f"{self.url}: is empty")
        if code in (401, 403):
            return SourceError(
                f"{self.url}: access denied (HTTP {code}); credentials are read from the URL, ~/.netrc "
                "or HF_TOKEN"
            )
        if code == 404:
            return SourceError(f"{self.url}: not found on the server (HTTP 404)")
        return SourceError(f"{self.url}: the server refused the request (HTTP {code})")

    def _content_range(self, resp: http.client.HTTPResponse) -> tuple[int, int, int]:
        match = _CONTENT_RANGE.fullmatch((resp.headers.get("Content-Range") or "").strip())
        if match is None:
            raise SourceError(f"{self.url}: the server's answer has no valid Content-Range")
        begin, end, total = match.groups()
        return int(begin or 0), int(end or -1), int(total)

    @staticmethod
    def _stamp(resp: http.client.HTTPResponse, size: int) -> RemoteStamp:
        return RemoteStamp(size, resp.headers.get("ETag"), resp.headers.get("Last-Modified"))

    def _body(self, resp: http.client.HTTPResponse, count: int) -> bytes:
        data = bytearray(count)
        view, filled = memoryview(data), 0
        while filled < count:
            filled += self._piece_into(resp, view[filled : filled + _READ_PIECE])
        return bytes(data)

    @staticmethod
    def _piece_into(resp: http.client.HTTPResponse, target: memoryview) -> int:
        try:
            count = resp.readinto(target)
        except (OSError, http.client.HTTPException) as exc:
            raise _Transient(f"connection dropped ({_reason(exc)})") from None
        if not count:
            raise _Transient("connection closed before the end of the range")
        return count


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
    return f"{type(exc).__name__}: {reason}" if not isinstance(reason, str) else reason


def _http_auth(parts) -> str | None:  # noqa: ANN001  (a SplitResult)
    """An Authorization header from the URL's user info, ~/.netrc, or HF_TOKEN, or None."""
    if parts.username is not None:
        raw = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        return "Basic " + base64.b64encode(raw.encode()).decode()
    host = parts.hostname or ""
    try:
        entry = netrc.netrc().authenticators(host)
    except (OSError, netrc.NetrcParseError):
        entry = None
    if entry is not None:
        login, _, password = entry
        return "Basic " + base64.b64encode(f"{login}:{password or ''}".encode()).decode()
    token = os.environ.get("HF_TOKEN")
    if token and any(host == h or host.endswith("." + h) for h in _HF_HOSTS):
        return f"Bearer {token}"
    return None


# ------------------------------------------------------------------------------------------ S3


def s3_filesystem():  # noqa: ANN201  (s3fs is optional)
    """An s3fs file system with botocore's usual credentials and endpoint (AWS_ENDPOINT_URL)."""
    try:
        import s3fs
    except ImportError:
        raise SourceError(
            "s3:// sources need the optional s3fs package: pip install 'paramscope[remote]'"
        ) from None
    return s3fs.S3FileSystem(skip_instance_cache=True)


class S3Reader:
    """Ranged GETs through s3fs, each conditional on the ETag seen first (If-Match)."""

    def __init__(self, url: str, fs=None) -> None:  # noqa: ANN001
        self.url = shown_url(url)
        self._fs = fs if fs is not None else s3_filesystem()
        parts = urlsplit(url)
        self._bucket, self._key = parts.netloc.rpartition("@")[2], parts.path.lstrip("/")

    def first(self, length: int) -> tuple[RemoteStamp, bytes]:
        try:
            info = self._fs.info(f"{self._bucket}/{self._key}")
        except FileNotFoundError:
            raise SourceError(f"{self.url}: not found") from None
        except PermissionError:
            raise self._denied() from None
        except OSError as exc:
            raise failed_error(self.url, _reason(exc)) from None
        if info.get("type") == "directory":
            raise SourceError(f"{self.url}: is a folder; end the URL with '/' to open the weights in it")
        modified = info.get("LastModified")
        stamp = RemoteStamp(int(info["size"]), info.get("ETag"), str(modified) if modified else None)
        return stamp, self.read(stamp, 0, min(length, stamp.size))

    def read(self, stamp: RemoteStamp, start: int, stop: int) -> bytes:
        if stop <= start:
            return b""
        from fsspec.asyn import sync

        extra = {"IfMatch": stamp.etag} if stamp.etag else {}
        try:
            resp = self._fs.call_s3(
                "get_object", Bucket=self._bucket, Key=self._key, Range=f"bytes={start}-{stop - 1}", **extra
            )
            try:
                data = sync(self._fs.loop, resp["Body"].read)
            finally:
                resp["Body"].close()
        except FileNotFoundError:
            raise changed_error(self.url) from None  # it was there when opened
        except PermissionError:
            raise self._denied() from None
        except OSError as exc:
            if "pre-condition" in str(exc).lower() or "precondition" in str(exc).lower():
                raise changed_error(self.url) from None
            raise failed_error(self.url, _reason(exc)) from None
        except Exception as exc:  # aiohttp/botocore errors that s3fs does not translate
            raise failed_error(self.url, f"{type(exc).__name__}: {exc}") from None
        if stamp.etag and resp.get("ETag") not in (None, stamp.etag):
            raise changed_error(self.url)
        if len(data) != stop - start:
            raise failed_error(self.url, f"got {len(data)} of {stop - start} bytes")
        return data

    def read_into(self, stamp: RemoteStamp, start: int, target: memoryview) -> None:
        target[:] = self.read(stamp, start, start + len(target))

    def _denied(self) -> SourceError:
        return SourceError(
            f"{self.url}: access denied; credentials come from the environment (AWS_ACCESS_KEY_ID, "
            "AWS_PROFILE) or ~/.aws"
        )


def reader_for(url: str) -> RangeReader:
    scheme = urlsplit(url).scheme.lower()
    if scheme == "s3":
        return S3Reader(url)
    return HttpReader(url)
