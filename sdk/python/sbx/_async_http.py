"""Non-blocking HTTP/1.1 transport on asyncio streams (``asyncio.open_connection``): a keep-alive pool,
Content-Length and chunked bodies both ways, retries where they cannot duplicate anything, and error
mapping. No threads."""
from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any, AsyncIterator, BinaryIO, Dict, List, Optional, Tuple, Union

from . import errors
from ._common import Backoff, Config

# Failures that mean "no usable answer came back on this connection".
NETWORK_ERRORS: Tuple[type, ...] = (OSError, asyncio.IncompleteReadError, EOFError)

AsyncBody = Union[bytes, str, BinaryIO, AsyncIterator[bytes], None]


class ProtocolError(EOFError):
    """The daemon's answer was not valid HTTP/1.1 (treated like a broken connection)."""


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def usable(self) -> bool:
        return not self.reader.at_eof() and not self.writer.is_closing()

    def close(self) -> None:
        try:
            self.writer.close()
        except (OSError, RuntimeError):
            pass


class AsyncResponse:
    """An answer whose head is read; the body is read with :meth:`read` or :meth:`iter`."""

    def __init__(self, conn: Conn, status: int, headers: Dict[str, str], head_only: bool) -> None:
        self.conn = conn
        self.status = status
        self.headers = headers
        te = headers.get("transfer-encoding", "").lower()
        self.chunked = "chunked" in te
        cl = headers.get("content-length")
        self.remaining: Optional[int] = int(cl) if cl is not None and not self.chunked else None
        if head_only or status in (204, 304) or 100 <= status < 200:
            self.remaining = 0
            self.chunked = False
        self.keep_alive = headers.get("connection", "").lower() != "close" and (self.chunked or self.remaining is not None)
        self.complete = False
        self._chunk_left = 0

    async def iter(self, size: int = 65536) -> AsyncIterator[bytes]:
        """The body as it arrives."""
        r = self.conn.reader
        if self.chunked:
            while True:
                if self._chunk_left == 0:
                    line = await r.readuntil(b"\r\n")
                    n = int(line.split(b";", 1)[0].strip() or b"0", 16)
                    if n == 0:
                        while (await r.readuntil(b"\r\n")) != b"\r\n":  # trailers
                            pass
                        self.complete = True
                        return
                    self._chunk_left = n
                b = await r.read(min(size, self._chunk_left))
                if not b:
                    raise asyncio.IncompleteReadError(b"", self._chunk_left)
                self._chunk_left -= len(b)
                if self._chunk_left == 0:
                    await r.readexactly(2)
                yield b
        elif self.remaining is not None:
            while self.remaining > 0:
                b = await r.read(min(size, self.remaining))
                if not b:
                    raise asyncio.IncompleteReadError(b"", self.remaining)
                self.remaining -= len(b)
                yield b
            self.complete = True
        else:
            while True:
                b = await r.read(size)
                if not b:
                    self.complete = True
                    return
                yield b

    async def read(self) -> bytes:
        parts = [b async for b in self.iter()]
        return b"".join(parts)

    def json(self, body: bytes) -> Any:
        return json.loads(body) if body else None


class Response:
    def __init__(self, status: int, headers: Dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class AsyncTransport:
    """One per client; connections are pooled per event loop use (the client is not shared across
    loops)."""

    def __init__(self, cfg: Config, pool_size: int = 8) -> None:
        self.cfg = cfg
        self._idle: List[Conn] = []
        self._pool_size = pool_size
        self._ssl = ssl.create_default_context() if cfg.scheme == "https" else None

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for c in idle:
            c.close()
        for c in idle:
            try:
                await c.writer.wait_closed()
            except (OSError, RuntimeError):
                pass

    async def connect(self) -> Conn:
        r, w = await asyncio.open_connection(self.cfg.host, self.cfg.port, ssl=self._ssl, limit=1 << 20)
        return Conn(r, w)

    async def _take(self) -> Conn:
        if self._idle:
            await asyncio.sleep(0)  # lets the loop notice connections the daemon closed meanwhile
        while self._idle:
            c = self._idle.pop()
            if c.usable():
                return c
            c.close()
        return await self.connect()

    def _give(self, c: Conn) -> None:
        if len(self._idle) < self._pool_size and c.usable():
            self._idle.append(c)
        else:
            c.close()

    async def send(self, c: Conn, method: str, path: str, headers: Dict[str, str], body: AsyncBody) -> AsyncResponse:
        """Writes one request on ``c`` and reads the answer's head."""
        hdrs = dict(headers)
        hdrs["Host"] = f"{self.cfg.host}:{self.cfg.port}"
        chunked = False
        if isinstance(body, bytes):
            hdrs["Content-Length"] = str(len(body))
        elif body is not None:
            hdrs["Transfer-Encoding"] = "chunked"
            chunked = True
        elif method in ("POST", "PUT", "PATCH"):
            hdrs["Content-Length"] = "0"
        head = f"{method} {self.cfg.prefix}{path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
        w = c.writer
        w.write(head.encode("latin-1"))
        if isinstance(body, bytes):
            w.write(body)
        elif chunked:
            async for part in _body_parts(body):
                if part:
                    w.write(b"%x\r\n" % len(part) + part + b"\r\n")
                    await w.drain()
            w.write(b"0\r\n\r\n")
        await w.drain()
        return await read_head(c, method == "HEAD")

    async def request(self, method: str, path: str, *, json_body: Any = None, body: AsyncBody = None,
                      headers: Optional[Dict[str, str]] = None, timeout: Optional[float] = -1.0,
                      idempotent: bool = True, ok: Tuple[int, ...] = ()) -> Response:
        """Like the sync transport's ``request``: the whole answer, mapped errors, retries for
        ``retry_timeout`` when the daemon cannot be reached (after sending only when ``idempotent``)."""
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
        backoff = Backoff(self.cfg.retry_timeout)
        while True:
            sent = False
            c: Optional[Conn] = None
            try:
                c = await self._take()
                sent = True
                resp = await asyncio.wait_for(self._exchange(c, method, path, hdrs, body), timeout)
            except asyncio.TimeoutError as e:
                if c is not None:
                    c.close()
                raise errors.TimeoutError(f"{method} {path}: no answer within {timeout} s",
                                          code="deadline_exceeded") from e
            except NETWORK_ERRORS as e:
                if c is not None:
                    c.close()
                retry = not sent or (idempotent and replayable)
                delay = backoff.next_delay() if retry else None
                if delay is None:
                    raise errors.ConnectionError(f"{method} {path}: {type(e).__name__}: {e}") from e
                await asyncio.sleep(delay)
                continue
            if resp.status >= 400 and resp.status not in ok:
                raise errors.error_from_response(resp.status, resp.body)
            return resp

    async def _exchange(self, c: Conn, method: str, path: str, hdrs: Dict[str, str], body: AsyncBody) -> Response:
        try:
            r = await self.send(c, method, path, hdrs, body)
            data = await r.read()
        except BaseException:
            c.close()
            raise
        # sbxd may answer an error before reading the request body, then close the connection without
        # saying so: never reuse a connection after that.
        if r.keep_alive and r.complete and not (r.status >= 400 and body is not None):
            self._give(c)
        else:
            c.close()
        return Response(r.status, r.headers, data)

    async def stream(self, path: str, headers: Optional[Dict[str, str]] = None) -> AsyncResponse:
        """A long-lived GET on a connection of its own (the caller closes ``resp.conn``). Raises the
        mapped error for a status >= 400 and network errors as they are."""
        hdrs = self.cfg.base_headers()
        if headers:
            hdrs.update(headers)
        c = await self.connect()
        try:
            r = await self.send(c, "GET", path, hdrs, None)
            if r.status >= 400:
                data = await r.read()
                c.close()
                raise errors.error_from_response(r.status, data)
        except BaseException:
            c.close()
            raise
        return r


async def read_head(c: Conn, head_only: bool) -> AsyncResponse:
    while True:
        try:
            raw = await c.reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError as e:
            raise ProtocolError("answer head too long") from e
        lines = raw.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise ProtocolError(f"bad status line {lines[0]!r}")
        status = int(parts[1])
        headers: Dict[str, str] = {}
        for line in lines[1:]:
            if line:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
        if status == 100:
            continue
        return AsyncResponse(c, status, headers, head_only)


async def _body_parts(body: Any) -> AsyncIterator[bytes]:
    if hasattr(body, "__aiter__"):
        async for part in body:
            yield bytes(part)
    else:
        while True:
            part = body.read(1 << 16)  # a local file: short blocking reads
            if not part:
                return
            yield bytes(part)
