"""Blocking HTTP/1.1 transport over :mod:`http.client`: a small keep-alive pool, retries on connection
failures where they cannot duplicate anything, and error mapping."""
from __future__ import annotations

import http.client
import json
import select
import ssl
import threading
import time
from typing import Any, BinaryIO, Dict, Iterator, List, Optional, Tuple, Union

from . import errors
from ._common import Backoff, Config

Body = Union[bytes, str, BinaryIO, None]

# Failures that mean "no usable answer came back on this connection".
NETWORK_ERRORS: Tuple[type, ...] = (OSError, http.client.HTTPException)


class Response:
    """A fully read answer."""

    def __init__(self, status: int, headers: Dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class SyncTransport:
    """Thread-safe: each request takes a connection from the pool (or opens one) and gives it back
    once its answer is read whole."""

    def __init__(self, cfg: Config, pool_size: int = 8) -> None:
        self.cfg = cfg
        self._idle: List[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._pool_size = pool_size
        self._closed = False

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
            self._closed = True
        for c in idle:
            c.close()

    def _new(self, timeout: Optional[float]) -> http.client.HTTPConnection:
        if self.cfg.scheme == "https":
            return http.client.HTTPSConnection(self.cfg.host, self.cfg.port, timeout=timeout,
                                               context=ssl.create_default_context())
        return http.client.HTTPConnection(self.cfg.host, self.cfg.port, timeout=timeout)

    def _take(self, timeout: Optional[float]) -> Tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            while self._idle:
                c = self._idle.pop()
                if _alive(c):
                    c.timeout = timeout
                    if c.sock is not None:
                        c.sock.settimeout(timeout)
                    return c, True
                c.close()
        return self._new(timeout), False

    def _give(self, c: http.client.HTTPConnection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < self._pool_size:
                self._idle.append(c)
                return
        c.close()

    def request(self, method: str, path: str, *, json_body: Any = None, body: Body = None,
                headers: Optional[Dict[str, str]] = None, timeout: Optional[float] = -1.0,
                idempotent: bool = True, ok: Tuple[int, ...] = ()) -> Response:
        """Sends a request and reads the whole answer; raises the mapped :class:`~sbx.errors.SandboxError`
        for a status >= 400 (unless listed in ``ok``).

        Connection failures are retried for ``retry_timeout`` seconds: always when the request could not
        have reached the daemon (connect refused), and after it was sent only when ``idempotent``.
        ``timeout`` -1 means the client's default; None waits forever (long waits, streams).
        """
        if timeout is not None and timeout < 0:
            timeout = self.cfg.timeout
        hdrs = self.cfg.base_headers()
        if json_body is not None:
            body = json.dumps(json_body).encode("utf-8")
            hdrs["Content-Type"] = "application/json"
        elif isinstance(body, str):
            body = body.encode("utf-8")
        if headers:
            hdrs.update(headers)
        replayable = body is None or isinstance(body, bytes)
        start_pos = None
        if not replayable:
            try:
                start_pos = body.tell()  # type: ignore[union-attr]
                replayable = body.seekable()  # type: ignore[union-attr]
            except (AttributeError, OSError, ValueError):
                replayable = False
        if isinstance(body, bytes):
            hdrs["Content-Length"] = str(len(body))
        elif body is None and method in ("POST", "PUT", "PATCH"):
            hdrs["Content-Length"] = "0"
        backoff = Backoff(self.cfg.retry_timeout)
        url = self.cfg.prefix + path
        while True:
            c, _reused = self._take(timeout)
            sent = False
            try:
                c.connect() if c.sock is None else None
                sent = True
                if start_pos is not None and replayable:
                    body.seek(start_pos)  # type: ignore[union-attr]
                c.request(method, url, body=body, headers=hdrs,
                          encode_chunked=body is not None and not isinstance(body, bytes))
                r = c.getresponse()
                data = r.read()
                status, rh = r.status, {k.lower(): v for k, v in r.getheaders()}
                # sbxd may answer an error before reading the request body, then close the connection
                # without saying so (`Connection: close`): never reuse a connection after that.
                if r.will_close or (status >= 400 and body is not None):
                    c.close()
                else:
                    self._give(c)
            except NETWORK_ERRORS as e:
                c.close()
                if isinstance(e, TimeoutError):
                    raise errors.TimeoutError(f"{method} {path}: no answer within {timeout} s",
                                              code="deadline_exceeded") from e
                retry = not sent or (idempotent and replayable)
                delay = backoff.next_delay() if retry else None
                if delay is None:
                    raise errors.ConnectionError(f"{method} {path}: {type(e).__name__}: {e}") from e
                time.sleep(delay)
                continue
            if status >= 400 and status not in ok:
                raise errors.error_from_response(status, data)
            return Response(status, rh, data)

    def stream(self, path: str, headers: Optional[Dict[str, str]] = None) -> Tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """Opens a long-lived GET (SSE, downloads) on a connection of its own; the caller closes the
        connection. Raises the mapped error for a status >= 400 and network errors as they are."""
        hdrs = self.cfg.base_headers()
        if headers:
            hdrs.update(headers)
        c = self._new(None)
        try:
            c.request("GET", self.cfg.prefix + path, headers=hdrs)
            r = c.getresponse()
        except BaseException:
            c.close()
            raise
        if r.status >= 400:
            data = r.read()
            c.close()
            raise errors.error_from_response(r.status, data)
        return c, r


def _alive(c: http.client.HTTPConnection) -> bool:
    """A pooled connection is usable when its socket has nothing to read: readable means the daemon
    closed it (or it is out of sync)."""
    s = c.sock
    if s is None:
        return False
    try:
        r, _, _ = select.select([s], [], [], 0)
    except (OSError, ValueError):
        return False
    return not r


def iter_body(r: http.client.HTTPResponse, size: int = 65536) -> Iterator[bytes]:
    """The answer's body as it arrives (chunked or not)."""
    while True:
        b = r.read1(size)
        if not b:
            return
        yield b

