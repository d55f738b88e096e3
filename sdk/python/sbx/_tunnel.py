"""TCP tunnels (``sb.tunnel(remote_port)``): a local listener whose connections are carried to a port inside
the sandbox over sbxd's WebSocket tunnel endpoint, as yamux streams (docs/api.md, "TCP tunnels"). Needs
the optional ``websockets`` package. The async :class:`AsyncTunnel` does the work; the sync
:class:`Tunnel` runs one on an event loop in a background thread."""
from __future__ import annotations

import asyncio
import struct
import threading
from typing import Any, Dict, Optional

from . import errors
from ._common import Config

try:  # optional: Debian's python3-websockets
    import websockets  # type: ignore[import-not-found]
    import websockets.client  # type: ignore[import-not-found]
    HAVE_WEBSOCKETS = True
except ImportError:  # pragma: no cover - depends on the host
    websockets = None
    HAVE_WEBSOCKETS = False

__all__ = ["AsyncTunnel", "Tunnel", "HAVE_WEBSOCKETS"]

_HDR = struct.Struct(">BBHII")
T_DATA, T_WINDOW, T_PING, T_GOAWAY = 0, 1, 2, 3
F_SYN, F_ACK, F_FIN, F_RST = 1, 2, 4, 8
WINDOW = 256 * 1024
MAX_FRAME = 16 * 1024
STATUS = {0: "connected", 2: "nothing listens on that port inside the sandbox", 3: "unsupported version"}


class _Stream:
    def __init__(self, session: "_Session", sid: int) -> None:
        self.session = session
        self.id = sid
        self.queue: "asyncio.Queue[Optional[bytes]]" = asyncio.Queue()
        self.send_window = WINDOW
        self.window_changed = asyncio.Event()
        self.reset = False

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            while self.send_window <= 0:
                if self.reset or self.session.closed:
                    raise ConnectionResetError("tunnel stream reset")
                self.window_changed.clear()
                await self.window_changed.wait()
            n = min(len(view), self.send_window, MAX_FRAME)
            self.send_window -= n
            await self.session.send(T_DATA, 0, self.id, bytes(view[:n]))
            view = view[n:]

    def end(self) -> None:
        self.queue.put_nowait(None)
        self.window_changed.set()


class _Session:
    """A yamux client session on one WebSocket."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.next_id = 1
        self.streams: Dict[int, _Stream] = {}
        self.closed = False
        self.lock = asyncio.Lock()
        self.reader = asyncio.ensure_future(self._read())

    async def send(self, typ: int, flags: int, sid: int, payload: bytes = b"", length: Optional[int] = None) -> None:
        frame = _HDR.pack(0, typ, flags, sid, len(payload) if length is None else length) + payload
        async with self.lock:
            await self.ws.send(frame)

    def open(self) -> _Stream:
        st = _Stream(self, self.next_id)
        self.next_id += 2
        self.streams[st.id] = st
        return st

    async def _read(self) -> None:
        buf = bytearray()
        try:
            async for msg in self.ws:
                buf += msg.encode("latin-1") if isinstance(msg, str) else msg
                while len(buf) >= 12:
                    _v, typ, flags, sid, length = _HDR.unpack_from(buf)
                    if typ == T_DATA:
                        if len(buf) < 12 + length:
                            break
                        payload = bytes(buf[12:12 + length])
                        del buf[:12 + length]
                    else:
                        payload = b""
                        del buf[:12]
                    st = self.streams.get(sid)
                    if typ == T_PING:
                        if flags & F_SYN:
                            await self.send(T_PING, F_ACK, 0, length=length)
                        continue
                    if typ == T_GOAWAY:
                        return
                    if st is None:
                        continue
                    if typ == T_WINDOW:
                        st.send_window += length
                        st.window_changed.set()
                    elif payload:
                        st.queue.put_nowait(payload)
                    if flags & F_RST:
                        st.reset = True
                        st.end()
                    elif flags & F_FIN:
                        st.end()
        except Exception:  # noqa: BLE001 - the socket ended: every stream ends
            pass
        finally:
            self.closed = True
            for st in list(self.streams.values()):
                st.reset = True
                st.end()

    async def close(self) -> None:
        self.closed = True
        try:
            await self.send(T_GOAWAY, 0, 0, length=0)
        except Exception:  # noqa: BLE001
            pass
        await self.ws.close()
        self.reader.cancel()


class AsyncTunnel:
    """A local TCP listener (``127.0.0.1:local_port``) whose connections reach ``remote_port`` inside the
    sandbox. ``async with sb.tunnel(8000) as t: ... t.local_port``. A connection to a port nothing
    listens on inside is closed at once."""

    def __init__(self, cfg: Config, sandbox_path: str, remote_port: int, local_port: Optional[int] = None,
                 host: str = "127.0.0.1") -> None:
        if not HAVE_WEBSOCKETS:
            raise errors.UnimplementedError("tunnel() needs the websockets package (python3-websockets)",
                                            code="unimplemented")
        if not 1 <= int(remote_port) <= 65535:
            raise ValueError("remote_port must be 1-65535")
        self._cfg = cfg
        self._path = sandbox_path + "/tunnel"
        self.remote_port = int(remote_port)
        self.local_port = int(local_port or 0)
        self.host = host
        self._session: Optional[_Session] = None
        self._server: Optional[asyncio.AbstractServer] = None
        self._tasks: "set[asyncio.Task[Any]]" = set()

    def __repr__(self) -> str:
        return f"<Tunnel {self.host}:{self.local_port} -> sandbox port {self.remote_port}>"

    async def start(self) -> "AsyncTunnel":
        cfg = self._cfg
        scheme = "wss" if cfg.scheme == "https" else "ws"
        url = f"{scheme}://{cfg.host}:{cfg.port}{cfg.prefix}{self._path}"
        hdrs = {k: v for k, v in cfg.base_headers().items() if k.lower() not in ("accept", "user-agent")}
        try:
            ws = await websockets.client.connect(url, extra_headers=hdrs, max_size=None, ping_interval=None,
                                                 open_timeout=cfg.timeout, compression=None)
        except websockets.exceptions.InvalidHandshake as e:
            status = getattr(e, "status_code", None) or getattr(getattr(e, "response", None), "status_code", None)
            if status is None:
                raise errors.ConnectionError(f"tunnel: {type(e).__name__}: {e}") from e
            body = getattr(getattr(e, "response", None), "body", None) or b""
            raise errors.error_from_response(int(status), body) from e
        except OSError as e:
            raise errors.ConnectionError(f"tunnel: {type(e).__name__}: {e}") from e
        self._session = _Session(ws)
        self._server = await asyncio.start_server(self._serve, self.host, self.local_port)
        self.local_port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in list(self._tasks):
            t.cancel()
        if self._session is not None:
            await self._session.close()
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> "AsyncTunnel":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        sess = self._session
        try:
            if sess is None or sess.closed:
                return
            st = sess.open()
            try:
                await sess.send(T_DATA, F_SYN, st.id, b"\x01" + struct.pack(">H", self.remote_port))
                first = await st.queue.get()
                if not first or first[0] != 0:
                    return
                rest = first[1:]
                await sess.send(T_WINDOW, 0, st.id, length=len(first))
                if rest:
                    writer.write(rest)
                up = asyncio.ensure_future(self._upstream(reader, st))
                try:
                    while True:
                        data = await st.queue.get()
                        if data is None:
                            break
                        writer.write(data)
                        await writer.drain()
                        await sess.send(T_WINDOW, 0, st.id, length=len(data))
                    if not st.reset and writer.can_write_eof():
                        writer.write_eof()
                    await up
                finally:
                    up.cancel()
            finally:
                sess.streams.pop(st.id, None)
        except (OSError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            if task is not None:
                self._tasks.discard(task)

    @staticmethod
    async def _upstream(reader: asyncio.StreamReader, st: _Stream) -> None:
        try:
            while True:
                data = await reader.read(MAX_FRAME)
                if not data:
                    await st.session.send(T_WINDOW, F_FIN, st.id, length=0)
                    return
                await st.write(data)
        except (OSError, ConnectionError):
            if not st.session.closed:
                await st.session.send(T_WINDOW, F_RST, st.id, length=0)


class Tunnel:
    """The blocking :class:`AsyncTunnel`: ``with sb.tunnel(8000) as t:`` connect to
    ``127.0.0.1:t.local_port``. The listener runs on an event loop in a daemon thread."""

    def __init__(self, cfg: Config, sandbox_path: str, remote_port: int, local_port: Optional[int] = None,
                 host: str = "127.0.0.1") -> None:
        self._inner = AsyncTunnel(cfg, sandbox_path, remote_port, local_port, host)
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None

    @property
    def local_port(self) -> int:
        return self._inner.local_port

    @property
    def remote_port(self) -> int:
        return self._inner.remote_port

    @property
    def host(self) -> str:
        return self._inner.host

    def __repr__(self) -> str:
        return repr(self._inner)

    def start(self) -> "Tunnel":
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="sbx-tunnel", daemon=True)
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._inner.start(), loop).result()
        except BaseException:
            self._stop_loop()
            raise
        return self

    def close(self) -> None:
        if self._loop is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._inner.close(), self._loop).result(10)
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        loop.close()

    def __enter__(self) -> "Tunnel":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()
