"""AWS calls signed and sent by hand: SigV4, a bare kept-alive HTTP/1.1 socket, and a
botocore client whose chosen calls take that road (pipeline.sqs.signed).

What the requests look like is botocore's: the tests compare the signature,
headers and body with what botocore builds for the same call. Anything that
goes wrong on the way (a refused or dropped connection, an answer that cannot
be read) raises OSError or http.client's exceptions, and the caller sends the
call through botocore instead.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import os
import socket
import ssl
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

__all__ = ["MAX_IDLE", "Connection", "SignedClient", "sign_v4"]

MAX_IDLE = 16  # kept-alive connections per process (a threads lane has 8 + its loop)
MAX_LINE = 65536  # an answer's status or header line (http.client's own limit)
MAX_HEADERS = 100


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def sign_v4(*, method: str, path: str, headers: dict[str, str], payload: bytes,
            access_key: str, secret_key: str, region: str, service: str,
            amz_date: str, key_cache: dict[tuple[str, str], bytes] | None = None) -> str:
    """The Authorization header of a SigV4 request with no query string; `headers` are
    the ones signed (lower-case names, `host` included) and must carry `x-amz-date`."""
    names = sorted(headers)
    signed = ";".join(names)
    canonical = "\n".join([method, path or "/", "",
                           *(f"{name}:{' '.join(headers[name].split())}" for name in names),
                           "", signed, hashlib.sha256(payload).hexdigest()])
    day = amz_date[:8]
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    cache_key = (secret_key, scope)
    key = key_cache.get(cache_key) if key_cache is not None else None
    if key is None:
        key = _hmac(_hmac(_hmac(_hmac(f"AWS4{secret_key}".encode(), day), region), service),
                    "aws4_request")
        if key_cache is not None:
            key_cache.clear()  # one day and key at a time
            key_cache[cache_key] = key
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return (f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
            f"SignedHeaders={signed}, Signature={signature}")


def _number(text: bytes, base: int) -> int:
    try:
        value = int(text, base)
    except ValueError:
        raise http.client.HTTPException(f"not a length: {text[:40]!r}") from None
    if value < 0:
        raise http.client.HTTPException(f"negative length {value}")
    return value


class Connection:
    """One kept-alive HTTP/1.1 connection: a request out, its answer back.

    http.client cost more CPU per call than the signing and the JSON together: a
    request object assembled header by header, and every answer's headers parsed
    by the email package (a hand-signed SendMessage 347 us of CPU through it, 136
    us over the bare socket, against the emulator). An answer here is a status, a
    Content-Length or chunked body, and whether the server keeps the connection;
    anything it cannot read raises http.client's own exceptions (or OSError), and
    the call goes to botocore.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock: socket.socket | None = sock
        self._file = sock.makefile("rb")

    def exchange(self, request: bytes) -> tuple[int, bytes, bool]:
        """Send `request` (head and body); returns status, body and keep-alive."""
        if self.sock is None:
            raise http.client.NotConnected("closed")
        self.sock.sendall(request)
        version, status = self._status()
        length: int | None = None
        chunked = False
        keep = version == b"HTTP/1.1"
        for _ in range(MAX_HEADERS):
            line = self._line()
            if line in (b"\r\n", b"\n"):
                break
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = _number(value, 10)
            elif name == b"transfer-encoding":
                chunked = value.strip().lower() != b"identity"
            elif name == b"connection":
                keep = value.strip().lower() == b"keep-alive" if version != b"HTTP/1.1" \
                    else value.strip().lower() != b"close"
        else:
            raise http.client.HTTPException(f"more than {MAX_HEADERS} headers")
        if chunked:
            return status, self._chunked(), keep
        if length is None:  # the body ends with the connection
            return status, self._file.read(), False
        return status, self._exactly(length), keep

    def _line(self) -> bytes:
        line = self._file.readline(MAX_LINE + 1)
        if not line:
            raise http.client.RemoteDisconnected("the server closed the connection")
        if len(line) > MAX_LINE:
            raise http.client.LineTooLong("header line")
        return line

    def _status(self) -> tuple[bytes, int]:
        line = self._line()
        version, _, rest = line.partition(b" ")
        code = rest[:3]
        if not version.startswith(b"HTTP/1.") or not code.isdigit():
            raise http.client.BadStatusLine(repr(line[:80]))
        return version, int(code)

    def _exactly(self, length: int) -> bytes:
        data = self._file.read(length)
        if len(data) != length:
            raise http.client.IncompleteRead(data, length - len(data))
        return data

    def _chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = _number(self._line().split(b";", 1)[0], 16)
            if size == 0:
                while self._line() not in (b"\r\n", b"\n"):  # trailers
                    pass
                return b"".join(parts)
            parts.append(self._exactly(size))
            self._line()  # the chunk's CRLF

    def close(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            self._file.close()
            sock.close()


class SignedClient:
    """A botocore client, some of whose calls a subclass sends by hand (`_post`) on
    kept-alive connections of this process; every other attribute is the client's."""

    service = ""

    def __init__(self, client: Any, credentials: Callable[[], Any],
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._client = client
        self._credentials = credentials  # -> botocore ReadOnlyCredentials (refreshed)
        self._now = now
        meta = client.meta
        url = urlsplit(meta.endpoint_url)
        self._https = url.scheme == "https"
        self._host = url.hostname or ""
        self._port = url.port
        default_port = 443 if self._https else 80
        # the Host header botocore signs: the port only when it is not the scheme's
        self._netloc = (self._host if url.port in (None, default_port)
                        else f"{self._host}:{url.port}")
        self._path = url.path or "/"
        self._region = meta.region_name
        config = meta.config
        self._connect_timeout = float(config.connect_timeout or 60)
        self._read_timeout = float(config.read_timeout or 60)
        self._user_agent = config.user_agent or ""
        self._keys: dict[tuple[str, str], bytes] = {}
        # kept-alive connections not in use, of process _pid (threads borrow one each)
        self._idle: list[Connection] = []
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._closed = False

    @property
    def client(self) -> Any:
        return self._client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def signed(self, headers: dict[str, str], payload: bytes) -> dict[str, str]:
        """`headers` (lower-case names: the content type and the call's own) with the
        host, the date, the session token and the SigV4 authorization of a POST."""
        creds = self._credentials()
        headers["host"] = self._netloc
        headers["x-amz-date"] = self._now().strftime("%Y%m%dT%H%M%SZ")
        if creds.token:
            headers["x-amz-security-token"] = creds.token
        headers["authorization"] = sign_v4(
            method="POST", path=self._path, headers=headers,
            payload=payload, access_key=creds.access_key, secret_key=creds.secret_key,
            region=self._region, service=self.service, amz_date=headers["x-amz-date"],
            key_cache=self._keys)
        return headers

    def _post(self, headers: dict[str, str], payload: bytes) -> tuple[int, bytes]:
        """POST `payload` with `headers` signed; returns the answer's status and body."""
        headers = self.signed(headers, payload)
        headers["user-agent"] = self._user_agent
        headers["content-length"] = str(len(payload))
        head = "".join([f"POST {self._path} HTTP/1.1\r\n",
                        *(f"{name}: {value}\r\n" for name, value in headers.items()), "\r\n"])
        conn = self._connection()
        try:
            status, answer, keep = conn.exchange(head.encode("latin-1") + payload)
        except BaseException:
            conn.close()  # in an unknown state: never reused
            raise
        if not keep or self._closed:
            conn.close()
        else:
            self._release(conn)
        return status, answer

    def _connection(self) -> Connection:
        """An idle kept-alive connection of this process, or a new one."""
        with self._lock:
            if self._pid != os.getpid():
                # inherited through a fork: the sockets are the parent's to use
                self._idle, self._pid = [], os.getpid()
            if self._idle:
                return self._idle.pop()
        sock = socket.create_connection((self._host, self._port or (443 if self._https else 80)),
                                        timeout=self._connect_timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._https:
                sock = self._tls().wrap_socket(sock, server_hostname=self._host)
            sock.settimeout(self._read_timeout)
        except BaseException:
            sock.close()
            raise
        return Connection(sock)

    def _release(self, conn: Connection) -> None:
        with self._lock:
            if self._pid == os.getpid() and len(self._idle) < MAX_IDLE:
                self._idle.append(conn)
                return
        conn.close()

    @staticmethod
    def _tls() -> ssl.SSLContext:
        # the CA bundle botocore verifies against (AWS_CA_BUNDLE, else certifi's or its
        # own); a certificate that still fails verification sends the call through
        # botocore, which then refuses it as it always did
        from botocore.httpsession import get_cert_path

        return ssl.create_default_context(cafile=os.environ.get("AWS_CA_BUNDLE")
                                          or get_cert_path(True))

    def close(self) -> None:
        """Close the idle connections (one in use is closed when its request ends)."""
        with self._lock:
            idle, self._idle = (self._idle if self._pid == os.getpid() else []), []
            self._closed = True
        for conn in idle:
            conn.close()
