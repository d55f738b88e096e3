"""The asyncio client: :class:`AsyncSandboxClient`, :class:`AsyncSandbox` and :class:`AsyncCommandHandle`.

It mirrors the blocking client method for method, with ``await``, ``async with`` and ``async for``. I/O
is done on asyncio streams (no threads). Command output streams over SSE, or over a WebSocket when the
optional ``websockets`` package is importable and ``transport`` allows it; both reconnect from byte
offsets after a dropped connection or a daemon restart.
"""
from __future__ import annotations

import asyncio
import json
import os
import ssl
import tempfile
from typing import (Any, AsyncIterator, Awaitable, BinaryIO, Dict, Generator, List, Literal, Mapping, Optional,
                    Sequence, Union, overload)

from . import errors
from ._async_http import NETWORK_ERRORS, AsyncTransport, Conn, read_head
from ._common import (SNAPSHOT_POLL_INTERVAL, Backoff, CheckpointRef, Command, CommandSpec, NetworkSpec,
                      OutputCallback, ProgressCallback, ProgressWatch, SandboxData, ServiceURLData, SSEParser,
                      StreamState, VolumeRef, VolumeSpec, check_timeout, command_spec, create_body, iter_sandboxes,
                      list_query, make_config, pull_body, result_from_wait, seg, service_request_parts, signal_name,
                      snapshot_done, snapshot_wait_timeout, update_body, volume_ref, with_query)
from ._tunnel import AsyncTunnel
from .agents import AgentInfo, AsyncAgentSession, agent_body
from .contexts import AsyncCodeContext, ContextInfo, Execution, context_body
from .client import SnapshotSource, _mode
from .models import (ApiKey, Checkpoint, CommandInfo, EgressPolicyLike, ExecutionResult, FileInfo, Health,
                     ListeningPort, LogPage, OutputChunk, SandboxMetrics, ServiceResponse, Snapshot, Volume)

try:  # optional: Debian's python3-websockets
    import websockets  # type: ignore[import-not-found]
    import websockets.client  # type: ignore[import-not-found]
    HAVE_WEBSOCKETS = True
except ImportError:  # pragma: no cover - depends on the host
    websockets = None
    HAVE_WEBSOCKETS = False

__all__ = ["AsyncSandboxClient", "AsyncSandbox", "AsyncCommandHandle", "AsyncServiceURL", "AsyncTunnel", "HAVE_WEBSOCKETS"]

Transport = Literal["auto", "sse", "websocket"]
AsyncFileData = Union[bytes, bytearray, memoryview, str, BinaryIO, AsyncIterator[bytes]]


class AsyncSandboxClient:
    """The asyncio twin of :class:`~sbx.SandboxClient` (same arguments), plus:

    Args:
        transport: how command output is streamed: ``"auto"`` (WebSocket when the ``websockets``
            package is importable, else SSE), ``"sse"`` or ``"websocket"``.

    Use ``async with AsyncSandboxClient() as client:`` or call ``await client.close()``. A client
    belongs to the event loop it is first used on.
    """

    def __init__(self, url: Optional[str] = None, api_key: Optional[str] = None, *, timeout: float = 60.0,
                 retry_timeout: float = 30.0, headers: Optional[Mapping[str, str]] = None,
                 transport: Transport = "auto") -> None:
        self._cfg = make_config(url, api_key, timeout, retry_timeout, headers)
        self._http = AsyncTransport(self._cfg)
        if transport == "websocket" and not HAVE_WEBSOCKETS:
            raise ImportError("transport='websocket' needs the websockets package (Debian: python3-websockets)")
        if transport not in ("auto", "sse", "websocket"):
            raise ValueError(f"unknown transport {transport!r}")
        self.transport: str = "websocket" if transport == "websocket" or (transport == "auto" and HAVE_WEBSOCKETS) else "sse"

    @property
    def url(self) -> str:
        return self._cfg.url

    async def close(self) -> None:
        """Closes pooled connections."""
        await self._http.close()

    async def __aenter__(self) -> "AsyncSandboxClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<AsyncSandboxClient {self.url} transport={self.transport}>"

    async def health(self) -> Health:
        """``GET /healthz``."""
        d = (await self._http.request("GET", "/healthz")).json()
        return Health(str(d.get("status", "")), str(d.get("version", "")))

    async def daemon_metrics(self) -> str:
        """The daemon's Prometheus metrics text (admin only)."""
        r = await self._http.request("GET", "/metrics", headers={"Accept": "text/plain"})
        return r.body.decode("utf-8", "replace")

    async def create_sandbox(self, *, snapshot: Optional[str] = None,
                             checkpoint: Union[str, Checkpoint, None] = None, name: Optional[str] = None,
                             env: Optional[Mapping[str, str]] = None, metadata: Optional[Mapping[str, str]] = None,
                             cpus: Optional[float] = None, memory_mb: Optional[int] = None,
                             pids: Optional[int] = None, disk_mb: Optional[int] = None,
                             idle_ttl_seconds: Optional[int] = None, delete_after_stop_seconds: Optional[int] = None,
                             timeout_seconds: Optional[int] = None, volumes: Optional[Sequence[VolumeSpec]] = None,
                             network: Optional[NetworkSpec] = None,
                             extra: Optional[Mapping[str, Any]] = None) -> "AsyncSandbox":
        """See :meth:`sbx.SandboxClient.create_sandbox` (``checkpoint``: a Checkpoint, ``"ckp_..."`` or
        ``"SANDBOX:NAME"``; ``volumes``: VolumeMounts, ``(volume, path[, read_only])`` tuples or dicts;
        ``network``: an EgressPolicy, a Network, ``"none"``, ``"egress"`` or a dict)."""
        body = create_body(snapshot, name, env, metadata, cpus, memory_mb, pids, disk_mb, idle_ttl_seconds,
                           delete_after_stop_seconds, timeout_seconds, extra, checkpoint, volumes, network)
        try:
            d = (await self._http.request("POST", "/v1/sandboxes", json_body=body, idempotent=False)).json()
        except errors.APIError as e:
            if e.status is not None and e.status >= 500:
                raise errors.CreationError(e.message, code=e.code, status=e.status) from e
            raise
        return AsyncSandbox(self, d)

    def sandbox(self, **kwargs: Any) -> "_SandboxContext":
        """Creates a sandbox that is deleted when the ``async with`` block ends. Both
        ``async with client.sandbox(...) as sb`` and ``async with await client.sandbox(...) as sb`` work."""
        return _SandboxContext(self.create_sandbox(**kwargs))

    async def get_sandbox(self, sandbox_id: str) -> "AsyncSandbox":
        """The sandbox with this id or name."""
        return AsyncSandbox(self, (await self._http.request("GET", f"/v1/sandboxes/{seg(sandbox_id)}")).json())

    async def list_sandboxes(self, *, state: Optional[str] = None,
                             metadata: Optional[Mapping[str, str]] = None) -> List["AsyncSandbox"]:
        """See :meth:`sbx.SandboxClient.list_sandboxes`."""
        path = with_query("/v1/sandboxes", dict(list_query(state, metadata)))
        return [AsyncSandbox(self, d) for d in iter_sandboxes((await self._http.request("GET", path)).json())]

    async def update_sandbox(self, sandbox_id: str, *, idle_ttl_seconds: Optional[int] = None,
                             delete_after_stop_seconds: Optional[int] = None, timeout_seconds: Optional[int] = None,
                             metadata: Optional[Mapping[str, str]] = None,
                             egress: Optional[EgressPolicyLike] = None) -> "AsyncSandbox":
        """See :meth:`sbx.SandboxClient.update_sandbox`."""
        body = update_body(idle_ttl_seconds, delete_after_stop_seconds, timeout_seconds, metadata, egress)
        r = await self._http.request("PATCH", f"/v1/sandboxes/{seg(sandbox_id)}", json_body=body)
        return AsyncSandbox(self, r.json())

    async def delete_sandbox(self, sandbox_id: str, *, missing_ok: bool = False) -> None:
        """Deletes a sandbox with its files."""
        try:
            await self._http.request("DELETE", f"/v1/sandboxes/{seg(sandbox_id)}")
        except errors.NotFoundError:
            if not missing_ok:
                raise

    # --- snapshots ----------------------------------------------------------------------------------

    async def import_snapshot(self, source: SnapshotSource, *, name: str, wait: bool = True,
                              timeout: Optional[float] = 600.0) -> Snapshot:
        """See :meth:`sbx.SandboxClient.import_snapshot` (a path or file object is streamed; ``source``
        may also be an async iterator of bytes)."""
        path = with_query("/v1/snapshots", {"name": name})
        hdrs = {"Content-Type": "application/x-tar"}
        if isinstance(source, (str, os.PathLike)):
            with open(source, "rb") as f:
                r = await self._http.request("POST", path, body=f, headers=hdrs, timeout=None, idempotent=False)
        else:
            body: Any = bytes(source) if isinstance(source, (bytearray, memoryview)) else source
            r = await self._http.request("POST", path, body=body, headers=hdrs, timeout=None, idempotent=False)
        snap = Snapshot.from_json(r.json())
        return await self.wait_snapshot(snap.id, timeout=timeout) if wait else snap

    async def pull_snapshot(self, image: str, *, name: str, insecure: bool = False,
                            username: Optional[str] = None, password: Optional[str] = None,
                            token: Optional[str] = None, wait: bool = True, timeout: Optional[float] = 600.0,
                            on_progress: Optional[ProgressCallback] = None) -> Snapshot:
        """See :meth:`sbx.SandboxClient.pull_snapshot` (``on_progress`` may also be a coroutine function)."""
        body = pull_body(image, name, insecure, username, password, token)
        if on_progress is not None and not wait:
            raise ValueError("on_progress needs wait=True (or pass it to wait_snapshot)")
        r = await self._http.request("POST", "/v1/snapshots", json_body=body, idempotent=False)
        snap = Snapshot.from_json(r.json())
        return await self._wait_snapshot(snap, timeout, on_progress) if wait else snap

    async def wait_snapshot(self, snapshot: str, *, timeout: Optional[float] = 600.0,
                            on_progress: Optional[ProgressCallback] = None) -> Snapshot:
        """See :meth:`sbx.SandboxClient.wait_snapshot`."""
        return await self._wait_snapshot(snapshot, timeout, on_progress)

    async def _wait_snapshot(self, snapshot: Union[str, Snapshot], timeout: Optional[float],
                             on_progress: Optional[ProgressCallback]) -> Snapshot:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        watch = ProgressWatch(on_progress)
        snap = snapshot if isinstance(snapshot, Snapshot) else await self.get_snapshot(snapshot)
        while True:
            p = watch.changed(snap)
            if p is not None and on_progress is not None:
                r = on_progress(p)
                if asyncio.iscoroutine(r):
                    await r
            if snapshot_done(snap):
                return snap
            if deadline is not None and loop.time() >= deadline:
                raise snapshot_wait_timeout(snap, timeout)
            await asyncio.sleep(SNAPSHOT_POLL_INTERVAL)
            snap = await self.get_snapshot(snap.id or str(snapshot))

    async def list_snapshots(self) -> List[Snapshot]:
        """Every snapshot, ``host`` first."""
        d = (await self._http.request("GET", "/v1/snapshots")).json()
        return [Snapshot.from_json(x) for x in d.get("snapshots") or []]

    async def get_snapshot(self, snapshot: str) -> Snapshot:
        """The snapshot with this id or name."""
        return Snapshot.from_json((await self._http.request("GET", f"/v1/snapshots/{seg(snapshot)}")).json())

    async def delete_snapshot(self, snapshot: str, *, missing_ok: bool = False) -> None:
        """See :meth:`sbx.SandboxClient.delete_snapshot`."""
        try:
            await self._http.request("DELETE", f"/v1/snapshots/{seg(snapshot)}")
        except errors.NotFoundError:
            if not missing_ok:
                raise

    # --- volumes ------------------------------------------------------------------------------------

    async def create_volume(self, name: str, *, size_mb: Optional[int] = None) -> Volume:
        """See :meth:`sbx.SandboxClient.create_volume`."""
        body: Dict[str, Any] = {"name": name}
        if size_mb is not None:
            body["size_mb"] = int(size_mb)
        r = await self._http.request("POST", "/v1/volumes", json_body=body, idempotent=False)
        return Volume.from_json(r.json())

    async def list_volumes(self) -> List[Volume]:
        """The key's volumes (the admin's: every one)."""
        d = (await self._http.request("GET", "/v1/volumes")).json()
        return [Volume.from_json(v) for v in d.get("volumes") or []]

    async def get_volume(self, volume: VolumeRef) -> Volume:
        """The volume with this name or id (NotFoundError if none)."""
        return Volume.from_json((await self._http.request("GET", f"/v1/volumes/{seg(volume_ref(volume))}")).json())

    async def delete_volume(self, volume: VolumeRef, *, missing_ok: bool = False) -> None:
        """See :meth:`sbx.SandboxClient.delete_volume` (BusyError while a sandbox mounts it)."""
        try:
            await self._http.request("DELETE", f"/v1/volumes/{seg(volume_ref(volume))}")
        except errors.NotFoundError:
            if not missing_ok:
                raise

    # --- keys (admin) -------------------------------------------------------------------------------

    async def create_key(self, name: Optional[str] = None, *, max_sandboxes: Optional[int] = None,
                         max_memory_mb: Optional[int] = None) -> ApiKey:
        """See :meth:`sbx.SandboxClient.create_key`."""
        body: Dict[str, Any] = {}
        if name is not None:
            body["name"] = name
        quotas = {k: v for k, v in (("max_sandboxes", max_sandboxes), ("max_memory_mb", max_memory_mb)) if v is not None}
        if quotas:
            body["quotas"] = quotas
        return ApiKey.from_json((await self._http.request("POST", "/v1/keys", json_body=body, idempotent=False)).json())

    async def list_keys(self) -> List[ApiKey]:
        """Every tenant key (admin only), without secrets."""
        return [ApiKey.from_json(k) for k in (await self._http.request("GET", "/v1/keys")).json().get("keys") or []]

    async def delete_key(self, key_id: str) -> None:
        """Revokes a key."""
        await self._http.request("DELETE", f"/v1/keys/{seg(key_id)}")


class _SandboxContext:
    """What ``AsyncSandboxClient.sandbox()`` returns: awaitable (gives the sandbox) and an async context
    manager (creates it on entry, deletes it on exit)."""

    def __init__(self, create: "Awaitable[AsyncSandbox]") -> None:
        self._create = create
        self._sb: Optional[AsyncSandbox] = None

    def __await__(self) -> Generator[Any, None, "AsyncSandbox"]:
        return self._create.__await__()

    async def __aenter__(self) -> "AsyncSandbox":
        self._sb = await self._create
        return self._sb

    async def __aexit__(self, *exc: Any) -> None:
        if self._sb is not None:
            await self._sb.delete(missing_ok=True)


class AsyncSandbox(SandboxData):
    """The asyncio twin of :class:`sbx.Sandbox`; ``async with`` deletes it at the end of the block."""

    def __init__(self, client: AsyncSandboxClient, data: Dict[str, Any]) -> None:
        self._client = client
        self._data = data

    @property
    def _http(self) -> AsyncTransport:
        return self._client._http

    @property
    def _path(self) -> str:
        return f"/v1/sandboxes/{seg(self.id)}"

    @property
    def client(self) -> AsyncSandboxClient:
        return self._client

    async def __aenter__(self) -> "AsyncSandbox":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.delete(missing_ok=True)

    def _set(self, d: Any) -> "AsyncSandbox":
        if isinstance(d, dict) and d.get("id"):
            self._data = d
        return self

    async def _post(self, op: str, body: Any = None) -> "AsyncSandbox":
        return self._set((await self._http.request("POST", self._path + op, json_body=body)).json())

    async def refresh(self) -> "AsyncSandbox":
        """Reads the sandbox again; returns self."""
        return self._set((await self._http.request("GET", self._path)).json())

    async def update(self, *, idle_ttl_seconds: Optional[int] = None, delete_after_stop_seconds: Optional[int] = None,
                     timeout_seconds: Optional[int] = None, metadata: Optional[Mapping[str, str]] = None,
                     egress: Optional[EgressPolicyLike] = None) -> "AsyncSandbox":
        """See :meth:`sbx.Sandbox.update`."""
        body = update_body(idle_ttl_seconds, delete_after_stop_seconds, timeout_seconds, metadata, egress)
        return self._set((await self._http.request("PATCH", self._path, json_body=body)).json())

    async def stop(self) -> "AsyncSandbox":
        """Ends every process; files stay."""
        return await self._post("/stop")

    async def start(self) -> "AsyncSandbox":
        """Starts a stopped or failed sandbox."""
        try:
            return await self._post("/start")
        except errors.APIError as e:
            if e.status is not None and e.status >= 500:
                raise errors.CreationError(e.message, code=e.code, status=e.status) from e
            raise

    async def pause(self) -> "AsyncSandbox":
        """Freezes every process."""
        return await self._post("/pause")

    async def resume(self) -> "AsyncSandbox":
        """Thaws a paused sandbox."""
        return await self._post("/resume")

    async def renew(self, timeout_seconds: Optional[int] = None) -> "AsyncSandbox":
        """Restarts the lifetime (see :meth:`sbx.Sandbox.renew`)."""
        return await self._post("/renew", {"timeout_seconds": timeout_seconds} if timeout_seconds is not None else {})

    async def metrics(self) -> SandboxMetrics:
        """CPU, memory, pids, disk and I/O usage now."""
        return SandboxMetrics.from_json((await self._http.request("GET", self._path + "/metrics")).json())

    async def delete(self, *, missing_ok: bool = False) -> None:
        """Deletes the sandbox and its files."""
        await self._client.delete_sandbox(self.id, missing_ok=missing_ok)
        self._data = dict(self._data, state="deleted")

    # --- checkpoints and fork -----------------------------------------------------------------------

    async def checkpoint(self, name: Optional[str] = None) -> Checkpoint:
        """See :meth:`sbx.Sandbox.checkpoint`."""
        body = {"name": name} if name is not None else {}
        r = await self._http.request("POST", self._path + "/checkpoints", json_body=body, timeout=None,
                                     idempotent=False)
        return Checkpoint.from_json(r.json())

    async def checkpoints(self) -> List[Checkpoint]:
        """The sandbox's checkpoints, oldest first."""
        d = (await self._http.request("GET", self._path + "/checkpoints")).json()
        return [Checkpoint.from_json(c) for c in d.get("checkpoints") or []]

    async def get_checkpoint(self, name: CheckpointRef) -> Checkpoint:
        """The checkpoint with this name (NotFoundError if none)."""
        return Checkpoint.from_json((await self._http.request("GET", self._checkpoint_path(name))).json())

    async def delete_checkpoint(self, name: CheckpointRef, *, missing_ok: bool = False) -> None:
        """See :meth:`sbx.Sandbox.delete_checkpoint`."""
        try:
            await self._http.request("DELETE", self._checkpoint_path(name))
        except errors.NotFoundError:
            if not missing_ok:
                raise

    async def restore(self, checkpoint: CheckpointRef) -> "AsyncSandbox":
        """See :meth:`sbx.Sandbox.restore`; returns self, updated."""
        r = await self._http.request("POST", self._checkpoint_path(checkpoint, "/restore"), timeout=None,
                                     idempotent=False)
        return self._set(r.json())

    async def fork(self, count: int = 1) -> List["AsyncSandbox"]:
        """See :meth:`sbx.Sandbox.fork`."""
        try:
            r = await self._http.request("POST", self._path + "/fork", json_body={"count": int(count)}, timeout=None,
                                         idempotent=False)
        except errors.APIError as e:
            if e.status is not None and e.status >= 500:
                raise errors.CreationError(e.message, code=e.code, status=e.status) from e
            raise
        return [AsyncSandbox(self._client, x) for x in iter_sandboxes(r.json())]

    # --- snapshots ----------------------------------------------------------------------------------

    async def capture_snapshot(self, name: str, *, wait: bool = True, timeout: Optional[float] = 600.0) -> Snapshot:
        """See :meth:`sbx.Sandbox.capture_snapshot`."""
        r = await self._http.request("POST", self._path + "/capture", json_body={"name": name}, idempotent=False)
        snap = Snapshot.from_json(r.json())
        return await self._client._wait_snapshot(snap, timeout, None) if wait else snap

    # --- commands -----------------------------------------------------------------------------------

    @overload
    async def run(self, command: Command, *, wait: Literal[True] = ..., timeout: Optional[float] = ...,
                  env: Optional[Mapping[str, str]] = ..., cwd: Optional[str] = ...,
                  stdin: Union[str, bytes, None] = ..., on_stdout: Optional[OutputCallback] = ...,
                  on_stderr: Optional[OutputCallback] = ..., stdin_open: Optional[bool] = ...,
                  command_id: Optional[str] = ..., ttl_seconds: Optional[float] = ...,
                  idle_timeout: Optional[float] = ..., kill_on_disconnect: Optional[bool] = ...,
                  disconnect_grace: Optional[float] = ..., pty: bool = ..., cols: Optional[int] = ...,
                  rows: Optional[int] = ..., user: Optional[str] = ...) -> ExecutionResult: ...

    @overload
    async def run(self, command: Command, *, wait: Literal[False], timeout: Optional[float] = ...,
                  env: Optional[Mapping[str, str]] = ..., cwd: Optional[str] = ...,
                  stdin: Union[str, bytes, None] = ..., on_stdout: Optional[OutputCallback] = ...,
                  on_stderr: Optional[OutputCallback] = ..., stdin_open: Optional[bool] = ...,
                  command_id: Optional[str] = ..., ttl_seconds: Optional[float] = ...,
                  idle_timeout: Optional[float] = ..., kill_on_disconnect: Optional[bool] = ...,
                  disconnect_grace: Optional[float] = ..., pty: bool = ..., cols: Optional[int] = ...,
                  rows: Optional[int] = ..., user: Optional[str] = ...) -> "AsyncCommandHandle": ...

    async def run(self, command: Command, *, wait: bool = True, timeout: Optional[float] = None,
                  env: Optional[Mapping[str, str]] = None, cwd: Optional[str] = None,
                  stdin: Union[str, bytes, None] = None, on_stdout: Optional[OutputCallback] = None,
                  on_stderr: Optional[OutputCallback] = None, stdin_open: Optional[bool] = None,
                  command_id: Optional[str] = None, ttl_seconds: Optional[float] = None,
                  idle_timeout: Optional[float] = None, kill_on_disconnect: Optional[bool] = None,
                  disconnect_grace: Optional[float] = None, pty: bool = False, cols: Optional[int] = None,
                  rows: Optional[int] = None, user: Optional[str] = None) -> Union[ExecutionResult, "AsyncCommandHandle"]:
        """See :meth:`sbx.Sandbox.run`. Callbacks may be plain functions or coroutine functions."""
        if stdin_open is None:
            stdin_open = not wait
        spec = command_spec(command, command_id=command_id, env=env, cwd=cwd, timeout=timeout, stdin=stdin,
                            stdin_open=stdin_open, ttl_seconds=ttl_seconds, idle_timeout=idle_timeout,
                            kill_on_disconnect=kill_on_disconnect, disconnect_grace=disconnect_grace,
                            pty=pty, cols=cols, rows=rows, user=user)
        if wait and on_stdout is None and on_stderr is None and spec.stdin_after is None:
            cmd = (await self._http.request("POST", self._path + "/commands", json_body=dict(spec.body, wait=True),
                                            timeout=None)).json()
            result, truncated = result_from_wait(cmd)
            if not truncated:
                return check_timeout(result)
            return await AsyncCommandHandle(self, spec.id, info=cmd).wait()
        handle = await self._start(spec, stdin_open)
        if not wait:
            return handle
        async for chunk in handle:
            cb = on_stdout if chunk.stream == "stdout" else on_stderr
            if cb is not None and chunk.data:
                r = cb(chunk.data)
                if asyncio.iscoroutine(r):
                    await r
        return await handle.wait()

    async def _start(self, spec: CommandSpec, stdin_open: bool) -> "AsyncCommandHandle":
        cmd = (await self._http.request("POST", self._path + "/commands", json_body=spec.body)).json()
        h = AsyncCommandHandle(self, spec.id, info=cmd)
        if spec.stdin_after is not None:
            await h.send_input(spec.stdin_after)
            if not stdin_open:
                await h.close_stdin()
        return h

    async def shell(self, command: Command = "/bin/sh", *, cols: int = 80, rows: int = 24,
                    env: Optional[Mapping[str, str]] = None, cwd: Optional[str] = None,
                    command_id: Optional[str] = None, idle_timeout: Optional[float] = None,
                    kill_on_disconnect: Optional[bool] = None, user: Optional[str] = None) -> "AsyncCommandHandle":
        """See :meth:`sbx.Sandbox.shell`."""
        return await self.run(command, wait=False, pty=True, cols=cols, rows=rows, env=env, cwd=cwd,
                              command_id=command_id, idle_timeout=idle_timeout,
                              kill_on_disconnect=kill_on_disconnect, user=user)

    # --- network ------------------------------------------------------------------------------------

    async def service(self, port: int, *, expires_in: Optional[int] = None) -> "AsyncServiceURL":
        """See :meth:`sbx.Sandbox.service`."""
        body = {"expires_in_seconds": expires_in} if expires_in is not None else {}
        d = (await self._http.request("POST", f"{self._path}/ports/{int(port)}/url", json_body=body)).json()
        return AsyncServiceURL(d, timeout=self._client._cfg.timeout)

    async def ports(self) -> List[ListeningPort]:
        """See :meth:`sbx.Sandbox.ports`."""
        d = (await self._http.request("GET", self._path + "/ports")).json()
        return [ListeningPort.from_json(x) for x in d.get("ports") or []]

    def tunnel(self, remote_port: int, local_port: Optional[int] = None, *, host: str = "127.0.0.1") -> AsyncTunnel:
        """See :meth:`sbx.Sandbox.tunnel`: ``async with sb.tunnel(8000) as t:`` (or ``await t.start()``
        and ``await t.close()``); the listener runs on the current event loop."""
        return AsyncTunnel(self._client._cfg, self._path, remote_port, local_port, host)

    async def reconnect(self, command_id: str, *, stdout_offset: int = 0, stderr_offset: int = 0) -> "AsyncCommandHandle":
        """See :meth:`sbx.Sandbox.reconnect`."""
        info = await self.command(command_id)
        return AsyncCommandHandle(self, command_id, stdout_offset=stdout_offset, stderr_offset=stderr_offset,
                                  info=info.raw)

    async def command(self, command_id: str) -> CommandInfo:
        """A command's status."""
        return CommandInfo.from_json((await self._http.request("GET", f"{self._path}/commands/{seg(command_id)}")).json())

    async def commands(self) -> List[CommandInfo]:
        """Every command the sandbox keeps."""
        d = (await self._http.request("GET", self._path + "/commands")).json()
        return [CommandInfo.from_json(c) for c in d.get("commands") or []]

    async def logs(self, command_id: str, *, cursor: int = 0, limit: Optional[int] = None) -> LogPage:
        """See :meth:`sbx.Sandbox.logs`."""
        path = with_query(f"{self._path}/commands/{seg(command_id)}/logs", {"cursor": cursor, "limit": limit})
        return LogPage.from_json((await self._http.request("GET", path)).json())

    # --- agent sessions (sbx.agents) ----------------------------------------------------------------

    async def agent(self, prompt: Optional[str] = None, *, model: Optional[str] = None,
                    system_prompt: Optional[str] = None, allowed_tools: Optional[Sequence[str]] = None,
                    permission_mode: Optional[str] = None, max_turns: Optional[int] = None,
                    cwd: Optional[str] = None, mcp_servers: Optional[Mapping[str, Any]] = None,
                    resume: Optional[str] = None, env: Optional[Mapping[str, str]] = None,
                    command: Union[str, Sequence[str], None] = None, stderr: bool = False) -> AsyncAgentSession:
        """See :meth:`sbx.Sandbox.agent`."""
        body = agent_body(prompt, model=model, system_prompt=system_prompt, allowed_tools=allowed_tools,
                          permission_mode=permission_mode, max_turns=max_turns, cwd=cwd, mcp_servers=mcp_servers,
                          resume=resume, env=env, command=command)
        d = (await self._http.request("POST", self._path + "/agents", json_body=body, idempotent=False)).json()
        return AsyncAgentSession(self, d["id"], info=d, stderr=stderr)

    async def attach_agent(self, agent_id: str, *, from_offset: int = 0, stderr: bool = False) -> AsyncAgentSession:
        """See :meth:`sbx.Sandbox.attach_agent`."""
        info = await self.get_agent(agent_id)
        return AsyncAgentSession(self, agent_id, from_offset=from_offset, info=info.raw, stderr=stderr)

    async def get_agent(self, agent_id: str) -> AgentInfo:
        return AgentInfo.from_json((await self._http.request("GET", f"{self._path}/agents/{seg(agent_id)}")).json())

    async def agents(self) -> List[AgentInfo]:
        """See :meth:`sbx.Sandbox.agents`."""
        d = (await self._http.request("GET", self._path + "/agents")).json()
        return [AgentInfo.from_json(a) for a in d.get("agents") or []]

    # --- code contexts (sbx.contexts) --------------------------------------------------------------

    async def create_context(self, language: str = "python", *, cwd: Optional[str] = None,
                             env: Optional[Mapping[str, str]] = None) -> AsyncCodeContext:
        """See :meth:`sbx.Sandbox.create_context`."""
        d = (await self._http.request("POST", self._path + "/contexts", json_body=context_body(language, cwd, env),
                                      idempotent=False)).json()
        return AsyncCodeContext(self, d)

    async def get_context(self, context_id: str) -> AsyncCodeContext:
        return AsyncCodeContext(self, (await self._http.request("GET", f"{self._path}/contexts/{seg(context_id)}")).json())

    async def contexts(self) -> List[ContextInfo]:
        """See :meth:`sbx.Sandbox.contexts`."""
        d = (await self._http.request("GET", self._path + "/contexts")).json()
        return [ContextInfo.from_json(c) for c in d.get("contexts") or []]

    async def run_code(self, code: str, *, language: str = "python", timeout: Optional[float] = None,
                       on_stdout: Any = None, on_stderr: Any = None) -> Execution:
        """See :meth:`sbx.Sandbox.run_code`."""
        ctx = await self.create_context(language)
        try:
            return await ctx.run(code, timeout=timeout, on_stdout=on_stdout, on_stderr=on_stderr)
        finally:
            await ctx.delete(missing_ok=True)

    # --- files --------------------------------------------------------------------------------------

    async def write(self, path: str, data: AsyncFileData, *, mode: Union[int, str, None] = None) -> FileInfo:
        """See :meth:`sbx.Sandbox.write`; ``data`` may also be an async iterator of bytes."""
        body: Any = data
        if isinstance(data, str):
            body = data.encode("utf-8")
        elif isinstance(data, (bytearray, memoryview)):
            body = bytes(data)
        q = {"path": path, "mode": _mode(mode)}
        r = await self._http.request("PUT", with_query(self._path + "/files", q), body=body,
                                     headers={"Content-Type": "application/octet-stream"}, timeout=None)
        return FileInfo.from_json(r.json())

    async def read(self, path: str, *, offset: int = 0, length: Optional[int] = None) -> bytes:
        """A file's bytes (from ``offset``, at most ``length`` of them)."""
        if length == 0:
            return b""
        headers = {"Accept": "application/octet-stream"}
        if offset or length is not None:
            end = "" if length is None else str(offset + length - 1)
            headers["Range"] = f"bytes={offset}-{end}"
        r = await self._http.request("GET", with_query(self._path + "/files", {"path": path}), headers=headers,
                                     timeout=None, ok=(416,))
        return b"" if r.status == 416 else r.body

    async def read_text(self, path: str, encoding: str = "utf-8") -> str:
        """A file's contents as text."""
        return (await self.read(path)).decode(encoding, "replace")

    async def upload(self, local_path: Union[str, "os.PathLike[str]"], path: str, *,
                     mode: Union[int, str, None] = None) -> FileInfo:
        """Streams a local file into the sandbox."""
        if mode is None:
            mode = os.stat(local_path).st_mode & 0o7777
        with open(local_path, "rb") as f:
            return await self.write(path, f, mode=mode)

    async def download(self, path: str, local_path: Union[str, "os.PathLike[str]"]) -> int:
        """Streams a file out of the sandbox into ``local_path`` (temporary file renamed into place)."""
        r = await self._http.stream(with_query(self._path + "/files", {"path": path}))
        local = os.fspath(local_path)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(local)), prefix=".sbx-dl-")
        n = 0
        try:
            with os.fdopen(fd, "wb") as f:
                async for b in r.iter(1 << 20):
                    f.write(b)
                    n += len(b)
            os.replace(tmp, local)
            return n
        except BaseException:
            os.unlink(tmp)
            raise
        finally:
            r.conn.close()

    async def stat(self, path: str) -> FileInfo:
        """A file's type, size, mode and mtime."""
        r = await self._http.request("GET", with_query(self._path + "/files/stat", {"path": path}))
        return FileInfo.from_json(r.json())

    async def exists(self, path: str) -> bool:
        """Whether the path exists."""
        try:
            await self.stat(path)
            return True
        except errors.NotFoundError:
            return False

    async def ls(self, path: str = "/root") -> List[FileInfo]:
        """The entries of a directory."""
        d = (await self._http.request("GET", with_query(self._path + "/files/list", {"path": path}))).json()
        return [FileInfo.from_json(e) for e in d.get("entries") or []]

    async def mkdir(self, path: str, *, mode: Union[int, str, None] = None) -> FileInfo:
        """Creates a directory and missing parents."""
        body: Dict[str, Any] = {"path": path}
        if mode is not None:
            body["mode"] = _mode(mode)
        return FileInfo.from_json((await self._http.request("POST", self._path + "/files/mkdir", json_body=body)).json())

    async def remove(self, path: str, *, recursive: bool = False) -> None:
        """Removes a file or directory."""
        q = {"path": path, "recursive": True if recursive else None}
        await self._http.request("DELETE", with_query(self._path + "/files", q))

    async def move(self, src: str, dst: str, *, overwrite: bool = False) -> FileInfo:
        """Renames ``src`` to ``dst``."""
        body = {"from": src, "to": dst, "overwrite": overwrite}
        r = await self._http.request("POST", self._path + "/files/move", json_body=body, idempotent=False)
        return FileInfo.from_json(r.json())


class AsyncCommandHandle:
    """The asyncio twin of :class:`sbx.CommandHandle`: ``async for chunk in handle``, ``await
    handle.wait()`` (or ``await handle.result``), ``await handle.send_input(...)``.

    Over the WebSocket transport, stdin, ``close_stdin`` and signals go through the open socket while
    the handle is being iterated, and through HTTP otherwise.
    """

    def __init__(self, sandbox: AsyncSandbox, command_id: str, *, stdout_offset: int = 0, stderr_offset: int = 0,
                 info: Optional[Dict[str, Any]] = None) -> None:
        self._sb = sandbox
        self._state = StreamState(command_id, stdout_offset, stderr_offset)
        self._info = info or {}
        self._path = f"{sandbox._path}/commands/{seg(command_id)}"
        self._ws: Any = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"<AsyncCommandHandle {self.command_id} pid={self.pid} done={self.done}>"

    @property
    def command_id(self) -> str:
        return self._state.command_id

    @property
    def sandbox(self) -> AsyncSandbox:
        return self._sb

    @property
    def pid(self) -> Optional[int]:
        pid = (self._state.exit or self._info).get("pid")
        return int(pid) if pid is not None else None

    @property
    def done(self) -> bool:
        return self._state.done

    @property
    def exit_code(self) -> Optional[int]:
        return self._state.exit.get("exit_code") if self._state.exit else None

    @property
    def offsets(self) -> Dict[str, int]:
        return self._state.query()

    def __aiter__(self) -> AsyncIterator[OutputChunk]:
        return self._follow()

    async def _follow(self) -> AsyncIterator[OutputChunk]:
        st = self._state
        backoff = Backoff(self._sb._client._cfg.retry_timeout)
        use_ws = self._sb._client.transport == "websocket"
        while not st.done:
            try:
                if use_ws:
                    async for chunk in self._follow_ws(backoff):
                        yield chunk
                else:
                    async for chunk in self._follow_sse(backoff):
                        yield chunk
                if not st.done:
                    await self._pause(backoff, EOFError("stream ended before the exit event"))
            except NETWORK_ERRORS as e:
                await self._pause(backoff, e)
            except Exception as e:  # websockets' own connection errors
                if HAVE_WEBSOCKETS and isinstance(e, (websockets.exceptions.ConnectionClosed,
                                                      websockets.exceptions.InvalidHandshake)):
                    if isinstance(e, websockets.exceptions.InvalidStatusCode) and e.status_code < 500:
                        # an API error answered to the upgrade: ask over HTTP to get the mapped error
                        await self.info()
                    await self._pause(backoff, e)
                else:
                    raise

    async def _follow_sse(self, backoff: Backoff) -> AsyncIterator[OutputChunk]:
        st = self._state
        r = await self._sb._http.stream(with_query(self._path + "/stream", st.query()),
                                        headers={"Accept": "text/event-stream"})
        try:
            parser = SSEParser()
            async for b in r.iter():
                for name, data in parser.feed(b):
                    chunk = st.on_event(name, data)
                    if chunk is not None:
                        backoff.reset()
                        yield chunk
                if st.done:
                    return
        finally:
            r.conn.close()

    async def _follow_ws(self, backoff: Backoff) -> AsyncIterator[OutputChunk]:
        st = self._state
        cfg = self._sb._client._cfg
        scheme = "wss" if cfg.scheme == "https" else "ws"
        url = f"{scheme}://{cfg.host}:{cfg.port}{cfg.prefix}{with_query(self._path + '/stream', st.query())}"
        hdrs = {k: v for k, v in cfg.base_headers().items() if k.lower() not in ("accept", "user-agent")}
        ws = await websockets.client.connect(url, extra_headers=hdrs, max_size=None, ping_interval=None,
                                             open_timeout=cfg.timeout, compression=None)
        self._ws = ws
        try:
            async for msg in ws:
                if isinstance(msg, bytes):
                    continue
                m = json.loads(msg)
                chunk = st.on_event(str(m.get("type")), msg)
                if chunk is not None:
                    backoff.reset()
                    yield chunk
                if st.done:
                    return
        finally:
            self._ws = None
            await ws.close()

    async def _pause(self, backoff: Backoff, e: BaseException) -> None:
        delay = backoff.next_delay()
        if delay is None:
            raise errors.ConnectionError(f"stream of command {self.command_id}: could not reconnect within "
                                         f"{backoff.budget} s: {type(e).__name__}: {e}") from e
        await asyncio.sleep(delay)

    async def wait(self) -> ExecutionResult:
        """Waits for the exit; raises CommandTimeoutError when the daemon killed it at its timeout."""
        async for _ in self._follow():
            pass
        return check_timeout(self._state.result())

    @property
    def result(self) -> Awaitable[ExecutionResult]:
        """``await handle.result``: same as ``await handle.wait()``."""
        return self.wait()

    async def info(self) -> CommandInfo:
        """The command's current status from the daemon."""
        d = (await self._sb._http.request("GET", self._path)).json()
        self._info = d
        return CommandInfo.from_json(d)

    async def logs(self, *, cursor: int = 0, limit: Optional[int] = None) -> LogPage:
        """See :meth:`sbx.Sandbox.logs`."""
        return await self._sb.logs(self.command_id, cursor=cursor, limit=limit)

    async def _ws_send(self, msg: Any) -> bool:
        ws = self._ws
        if ws is None:
            return False
        try:
            await ws.send(msg)
            return True
        except Exception:  # the socket is going away: fall back to HTTP
            return False

    async def send_input(self, data: Union[str, bytes]) -> None:
        """Writes to the command's stdin."""
        body = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        if await self._ws_send(body):
            return
        await self._sb._http.request("POST", self._path + "/stdin", body=body, idempotent=False,
                                     headers={"Content-Type": "application/octet-stream"})

    async def close_stdin(self) -> None:
        """Closes the command's stdin."""
        if await self._ws_send(json.dumps({"type": "close_stdin"})):
            return
        await self._sb._http.request("POST", with_query(self._path + "/stdin", {"close": True}), body=b"")

    async def signal(self, sig: Union[int, str]) -> None:
        """Sends a signal."""
        if await self._ws_send(json.dumps({"type": "signal", "signal": signal_name(sig)})):
            return
        await self._sb._http.request("POST", self._path + "/signal", json_body={"signal": signal_name(sig)})

    async def kill(self, signal: Union[int, str, None] = None) -> None:
        """SIGKILLs the command's process group, or sends ``signal`` when given."""
        if signal is not None:
            await self.signal(signal)
        else:
            await self._sb._http.request("POST", self._path + "/kill")

    async def resize(self, cols: int, rows: int) -> None:
        """See :meth:`sbx.CommandHandle.resize`."""
        await self._sb._http.request("POST", self._path + "/resize", json_body={"cols": int(cols), "rows": int(rows)})


class AsyncServiceURL(ServiceURLData):
    """The asyncio twin of :class:`sbx.ServiceURL`: ``await svc.get(path)``, ``await svc.post(path,
    body)``, on asyncio streams (a connection per request)."""

    def __init__(self, data: Dict[str, Any], *, timeout: float = 60.0) -> None:
        super().__init__(data)
        self._timeout = timeout

    async def request(self, method: str, path: str = "/", body: Any = None, *,
                      headers: Optional[Mapping[str, str]] = None, timeout: Optional[float] = -1.0) -> ServiceResponse:
        """See :meth:`sbx.ServiceURL.request`."""
        t = self._timeout if timeout is not None and timeout < 0 else timeout
        return await asyncio.wait_for(self._request(method, path, body, headers), t)

    async def _request(self, method: str, path: str, body: Any,
                       headers: Optional[Mapping[str, str]]) -> ServiceResponse:
        scheme, host, port, target = self.target(path)
        data, hdrs = service_request_parts(self.token, body, headers)
        hdrs = dict(hdrs, Host=f"{host}:{port}", Connection="close")
        hdrs["Content-Length"] = str(len(data or b""))
        if data is None and method not in ("POST", "PUT", "PATCH"):
            del hdrs["Content-Length"]
        ctx = ssl.create_default_context() if scheme == "https" else None
        r, w = await asyncio.open_connection(host, port, ssl=ctx, limit=1 << 20)
        c = Conn(r, w)
        try:
            head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
            w.write(head.encode("latin-1") + (data or b""))
            await w.drain()
            resp = await read_head(c, method == "HEAD")
            payload = await resp.read()
            return ServiceResponse(resp.status, dict(resp.headers), payload)
        finally:
            c.close()

    async def get(self, path: str = "/", **kw: Any) -> ServiceResponse:
        return await self.request("GET", path, **kw)

    async def post(self, path: str = "/", body: Any = None, **kw: Any) -> ServiceResponse:
        return await self.request("POST", path, body, **kw)
