"""The blocking client: :class:`SandboxClient`, :class:`Sandbox` and :class:`CommandHandle`."""
from __future__ import annotations

import http.client
import os
import shutil
import ssl
import tempfile
import time
from typing import (TYPE_CHECKING, Any, BinaryIO, Dict, Iterator, List, Literal, Mapping, Optional, Sequence, Union,
                    overload)

from . import errors
from ._common import (SNAPSHOT_POLL_INTERVAL, Backoff, CheckpointRef, Command, CommandSpec, NetworkSpec,
                      OutputCallback, ProgressCallback, ProgressWatch, SandboxData, ServiceURLData, SSEParser,
                      StreamState, VolumeRef, VolumeSpec, check_timeout, command_spec, create_body, emit,
                      iter_sandboxes, list_query, make_config, pull_body, result_from_wait, seg, service_request_parts,
                      signal_name, snapshot_done, snapshot_wait_timeout, update_body, volume_ref, with_query)
from ._sync_http import NETWORK_ERRORS, SyncTransport, iter_body
from .agents import AgentInfo, AgentSession, agent_body
from .contexts import CodeContext, ContextInfo, Execution, context_body
from .models import (ApiKey, Checkpoint, CommandInfo, EgressPolicyLike, ExecutionResult, FileInfo, Health,
                     ListeningPort, LogPage, OutputChunk, SandboxMetrics, ServiceResponse, Snapshot, Volume)

__all__ = ["SandboxClient", "Sandbox", "CommandHandle", "ServiceURL"]

if TYPE_CHECKING:  # pragma: no cover
    from ._tunnel import Tunnel

FileData = Union[bytes, bytearray, memoryview, str, BinaryIO]
SnapshotSource = Union[str, "os.PathLike[str]", bytes, BinaryIO]


class SandboxClient:
    """A connection to one sbx daemon.

    Args:
        url: the daemon's address; default ``$SBX_URL``, else ``http://127.0.0.1:7070``.
        api_key: sent as ``Authorization: Bearer``; default ``$SBX_API_KEY`` (none when unset).
        timeout: seconds to wait for an ordinary answer (long waits and streams have none).
        retry_timeout: how long to keep retrying when the daemon cannot be reached (e.g. while it
            restarts) before raising :class:`~sbx.errors.ConnectionError`; also the reconnect budget of
            command streams (counted from the last byte received).
        headers: extra headers sent with every request.

    The client is thread-safe and keeps a small pool of keep-alive connections; ``close()`` (or using
    it as a context manager) closes them.
    """

    def __init__(self, url: Optional[str] = None, api_key: Optional[str] = None, *, timeout: float = 60.0,
                 retry_timeout: float = 30.0, headers: Optional[Mapping[str, str]] = None) -> None:
        self._cfg = make_config(url, api_key, timeout, retry_timeout, headers)
        self._http = SyncTransport(self._cfg)

    @property
    def url(self) -> str:
        """The daemon's base URL."""
        return self._cfg.url

    def close(self) -> None:
        """Closes pooled connections. The client stays usable (new connections are opened)."""
        self._http.close()
        self._http = SyncTransport(self._cfg)

    def __enter__(self) -> "SandboxClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._http.close()

    def __repr__(self) -> str:
        return f"<SandboxClient {self.url}>"

    # --- daemon -------------------------------------------------------------------------------------

    def health(self) -> Health:
        """``GET /healthz``: the daemon's status and version (no key needed)."""
        d = self._http.request("GET", "/healthz").json()
        return Health(str(d.get("status", "")), str(d.get("version", "")))

    def daemon_metrics(self) -> str:
        """The daemon's Prometheus metrics (text exposition format; admin only)."""
        return self._http.request("GET", "/metrics", headers={"Accept": "text/plain"}).body.decode("utf-8", "replace")

    # --- sandboxes ----------------------------------------------------------------------------------

    def create_sandbox(self, *, snapshot: Optional[str] = None, checkpoint: Union[str, Checkpoint, None] = None,
                       name: Optional[str] = None, env: Optional[Mapping[str, str]] = None,
                       metadata: Optional[Mapping[str, str]] = None, cpus: Optional[float] = None,
                       memory_mb: Optional[int] = None, pids: Optional[int] = None, disk_mb: Optional[int] = None,
                       idle_ttl_seconds: Optional[int] = None, delete_after_stop_seconds: Optional[int] = None,
                       timeout_seconds: Optional[int] = None, volumes: Optional[Sequence[VolumeSpec]] = None,
                       network: Optional[NetworkSpec] = None,
                       extra: Optional[Mapping[str, Any]] = None) -> "Sandbox":
        """Creates a sandbox and returns it running (``POST /v1/sandboxes``).

        Args:
            snapshot: root file system to start from: ``"host"`` (the default) or a snapshot's name or
                id (:meth:`import_snapshot`, :meth:`pull_snapshot`, :meth:`Sandbox.capture_snapshot`).
            checkpoint: start with the files of a checkpoint (:meth:`Sandbox.checkpoint`): a
                :class:`~sbx.models.Checkpoint`, its id (``"ckp_..."``) or ``"SANDBOX:NAME"`` (the sandbox's
                id or name). The snapshot is the checkpoint's (so not with ``snapshot``) and so is the disk
                size (``disk_mb``, if given, must match).
            name: unique name (``[A-Za-z0-9_.-]{1,64}``) usable instead of the id.
            env: environment of every command in the sandbox.
            metadata: string labels, filterable with ``list_sandboxes(metadata=...)``.
            cpus, memory_mb, pids, disk_mb: resource limits (defaults 1 CPU, 512 MiB, 512, 10 GiB).
            idle_ttl_seconds: stop (not delete) after this long without activity (default 600; 0 never).
            delete_after_stop_seconds: delete after being stopped this long (default 0: never).
            timeout_seconds: lifetime: deleted this long after creation or the last ``renew()``.
            volumes: volumes to mount (up to 16; :meth:`create_volume`), each a
                :class:`~sbx.models.VolumeMount`, a ``(volume, path)`` or ``(volume, path, read_only)``
                tuple, or a ``{"volume": ..., "path": ..., "read_only": ...}`` dict; ``volume`` is a name,
                an id or a :class:`~sbx.models.Volume`, ``path`` absolute. Listed in :attr:`Sandbox.volumes`.
            network: the sandbox's network (default: none, loopback only). An
                :class:`~sbx.models.EgressPolicy` gives it mode ``egress`` with that policy (what it may
                connect to: ``EgressPolicy(allow=["pypi.org", "*.pythonhosted.org"])``); ``"egress"`` gives
                it the default policy (deny everything until :meth:`Sandbox.update` allows something);
                a :class:`~sbx.models.Network` or a dict in the API's form
                (``{"mode": "egress", "egress": {"default": ..., "allow": [...], "deny": [...]}}``) work
                too. The mode is fixed for the sandbox's life; read it back from :attr:`Sandbox.network`.
            extra: more top-level fields, passed as they are (for API fields newer than this SDK).

        Raises:
            QuotaExceededError: the API key's quota would be exceeded.
            ResourceExhaustedError: the daemon's sandbox limit is reached, or its egress subnet has no
                address left.
            NotFoundError: an unknown ``snapshot``, ``checkpoint`` or volume.
            InvalidArgumentError: a bad field (a volume path that is relative, ``/``, under ``/proc``, an egress
                entry that is neither an IPv4 address, a CIDR nor a domain, ...).
            CreationError: the daemon failed to build the sandbox.
        """
        body = create_body(snapshot, name, env, metadata, cpus, memory_mb, pids, disk_mb, idle_ttl_seconds,
                           delete_after_stop_seconds, timeout_seconds, extra, checkpoint, volumes, network)
        try:
            d = self._http.request("POST", "/v1/sandboxes", json_body=body, idempotent=False).json()
        except errors.APIError as e:
            if e.status is not None and e.status >= 500:
                raise errors.CreationError(e.message, code=e.code, status=e.status) from e
            raise
        return Sandbox(self, d)

    def sandbox(self, **kwargs: Any) -> "Sandbox":
        """Like :meth:`create_sandbox`; meant for ``with client.sandbox(...) as sb:``, which deletes the
        sandbox when the block ends (any :class:`Sandbox` does that in a ``with``)."""
        return self.create_sandbox(**kwargs)

    def get_sandbox(self, sandbox_id: str) -> "Sandbox":
        """The sandbox with this id or name (a deleted one is still found by id for 24 h)."""
        return Sandbox(self, self._http.request("GET", f"/v1/sandboxes/{seg(sandbox_id)}").json())

    def list_sandboxes(self, *, state: Optional[str] = None,
                       metadata: Optional[Mapping[str, str]] = None) -> List["Sandbox"]:
        """Sandboxes visible to the key, oldest first; ``state`` keeps one state (``"deleted"`` lists the
        tombstones of the last 24 h), ``metadata`` keeps those with all the given entries."""
        path = with_query("/v1/sandboxes", dict(list_query(state, metadata)))
        return [Sandbox(self, d) for d in iter_sandboxes(self._http.request("GET", path).json())]

    def update_sandbox(self, sandbox_id: str, *, idle_ttl_seconds: Optional[int] = None,
                       delete_after_stop_seconds: Optional[int] = None, timeout_seconds: Optional[int] = None,
                       metadata: Optional[Mapping[str, str]] = None,
                       egress: Optional[EgressPolicyLike] = None) -> "Sandbox":
        """Changes lifecycle settings, replaces the metadata or the egress policy (``PATCH``); only given
        fields change. A changed ``timeout_seconds`` restarts the lifetime from now.

        ``egress`` (an :class:`~sbx.models.EgressPolicy` or a dict ``{"default", "allow", "deny"}``)
        replaces the whole policy of a sandbox with network mode ``egress``, effective at once for new
        connections (addresses pinned for domains of the old policy are dropped). On a sandbox with mode
        ``none`` it raises :class:`~sbx.errors.InvalidArgumentError`: the mode is fixed at create."""
        body = update_body(idle_ttl_seconds, delete_after_stop_seconds, timeout_seconds, metadata, egress)
        return Sandbox(self, self._http.request("PATCH", f"/v1/sandboxes/{seg(sandbox_id)}", json_body=body).json())

    def delete_sandbox(self, sandbox_id: str, *, missing_ok: bool = False) -> None:
        """Deletes a sandbox with its files. ``missing_ok`` ignores an unknown id."""
        try:
            self._http.request("DELETE", f"/v1/sandboxes/{seg(sandbox_id)}")
        except errors.NotFoundError:
            if not missing_ok:
                raise

    # --- snapshots ----------------------------------------------------------------------------------

    def import_snapshot(self, source: SnapshotSource, *, name: str, wait: bool = True,
                        timeout: Optional[float] = 600.0) -> Snapshot:
        """Imports an image tarball as a snapshot (admin only; ``POST /v1/snapshots``).

        Args:
            source: a local path, the tarball's bytes, or a binary file object (streamed): ``docker
                save`` output or an OCI image layout as a tar, plain, gzip or zstd.
            name: the snapshot's unique name (``[A-Za-z0-9_.-]{1,64}``; ``host`` is reserved).
            wait: poll until the import ends (default); False returns the ``building`` snapshot at once
                (then :meth:`wait_snapshot`).
            timeout: seconds to wait for the import to end (None: forever).

        Raises:
            SnapshotImportError: the import failed (``.reason`` says why; the failed snapshot stays until
                deleted). ConflictError: the name is taken. TooLargeError: over ``--max-image-mb``.
            TimeoutError: still building after ``timeout``.
        """
        path = with_query("/v1/snapshots", {"name": name})
        hdrs = {"Content-Type": "application/x-tar"}
        if isinstance(source, (str, os.PathLike)):
            with open(source, "rb") as f:
                d = self._http.request("POST", path, body=f, headers=hdrs, timeout=None, idempotent=False).json()
        else:
            body: Any = bytes(source) if isinstance(source, (bytearray, memoryview)) else source
            d = self._http.request("POST", path, body=body, headers=hdrs, timeout=None, idempotent=False).json()
        snap = Snapshot.from_json(d)
        return self.wait_snapshot(snap.id, timeout=timeout) if wait else snap

    def pull_snapshot(self, image: str, *, name: str, insecure: bool = False, username: Optional[str] = None,
                      password: Optional[str] = None, token: Optional[str] = None, wait: bool = True,
                      timeout: Optional[float] = 600.0,
                      on_progress: Optional[ProgressCallback] = None) -> Snapshot:
        """Pulls an image from a registry as a snapshot (admin only; ``POST /v1/snapshots`` with JSON).
        sbxd downloads it (Distribution API v2, every digest verified; layers it already stores are not
        downloaded again), then unpacks it as for :meth:`import_snapshot`.

        Args:
            image: ``host[:port]/repository[:tag]`` (tag ``latest`` when none) or
                ``host[:port]/repository@sha256:<hex>``; the registry must be named.
            name: the snapshot's unique name (``[A-Za-z0-9_.-]{1,64}``; ``host`` is reserved).
            insecure: talk plain HTTP to the registry (default: HTTPS verified against the system CAs).
            username, password: basic auth (also sent to a bearer token service), both or neither.
            token: a registry token, sent as ``Authorization: Bearer`` (not with username/password).
            wait: poll until the pull ends (default); False returns the ``building`` snapshot at once
                (then :meth:`wait_snapshot`).
            timeout: seconds to wait for the pull to end (None: forever).
            on_progress: called with a :class:`~sbx.models.SnapshotProgress` (``bytes_done``,
                ``bytes_total``) each time the download's progress changes while waiting (needs ``wait``).

        Raises:
            SnapshotPullError: the pull failed (``.reason`` is sbxd's: refused credentials, an unknown
                manifest, a digest mismatch, a transport error...; the failed snapshot stays until
                deleted). ConflictError: the name is taken. InvalidArgumentError: a bad reference or name.
            PermissionDeniedError: not the admin key. TimeoutError: still building after ``timeout``.
            ValueError: inconsistent credentials, or ``on_progress`` without ``wait``.
        """
        body = pull_body(image, name, insecure, username, password, token)
        if on_progress is not None and not wait:
            raise ValueError("on_progress needs wait=True (or pass it to wait_snapshot)")
        snap = Snapshot.from_json(self._http.request("POST", "/v1/snapshots", json_body=body,
                                                     idempotent=False).json())
        return self._wait_snapshot(snap, timeout, on_progress) if wait else snap

    def wait_snapshot(self, snapshot: str, *, timeout: Optional[float] = 600.0,
                      on_progress: Optional[ProgressCallback] = None) -> Snapshot:
        """Polls a snapshot (id or name) until its import, pull or capture ends; returns it ``ready``.
        ``on_progress`` is called as for :meth:`pull_snapshot`.

        Raises:
            SnapshotImportError: it ``failed`` (:class:`~sbx.errors.SnapshotPullError` for a pull,
            :class:`~sbx.errors.SnapshotCaptureError` for a capture). TimeoutError: still building after
            ``timeout`` seconds.
        """
        return self._wait_snapshot(snapshot, timeout, on_progress)

    def _wait_snapshot(self, snapshot: Union[str, Snapshot], timeout: Optional[float],
                       on_progress: Optional[ProgressCallback]) -> Snapshot:
        deadline = None if timeout is None else time.monotonic() + timeout
        watch = ProgressWatch(on_progress)
        # A Snapshot just answered by a POST counts as the first poll.
        snap = snapshot if isinstance(snapshot, Snapshot) else self.get_snapshot(snapshot)
        while True:
            p = watch.changed(snap)
            if p is not None and on_progress is not None:
                on_progress(p)
            if snapshot_done(snap):
                return snap
            if deadline is not None and time.monotonic() >= deadline:
                raise snapshot_wait_timeout(snap, timeout)
            time.sleep(SNAPSHOT_POLL_INTERVAL)
            snap = self.get_snapshot(snap.id or str(snapshot))

    def list_snapshots(self) -> List[Snapshot]:
        """Every snapshot, ``host`` first (building and failed ones included)."""
        d = self._http.request("GET", "/v1/snapshots").json()
        return [Snapshot.from_json(x) for x in d.get("snapshots") or []]

    def get_snapshot(self, snapshot: str) -> Snapshot:
        """The snapshot with this id or name (NotFoundError if none)."""
        return Snapshot.from_json(self._http.request("GET", f"/v1/snapshots/{seg(snapshot)}").json())

    def delete_snapshot(self, snapshot: str, *, missing_ok: bool = False) -> None:
        """Deletes a snapshot (admin only) and the layers no other snapshot uses.

        Raises:
            ConflictError: a sandbox uses it, or it is still building. PermissionDeniedError: ``host``.
        """
        try:
            self._http.request("DELETE", f"/v1/snapshots/{seg(snapshot)}")
        except errors.NotFoundError:
            if not missing_ok:
                raise

    # --- volumes ------------------------------------------------------------------------------------

    def create_volume(self, name: str, *, size_mb: Optional[int] = None) -> Volume:
        """Creates a named volume (``POST /v1/volumes``): a disk of its own that outlives sandboxes and can
        be mounted into several at once (``create_sandbox(volumes=[(name, "/data")])``).

        Args:
            name: unique per API key (``[A-Za-z0-9_.-]{1,64}``).
            size_mb: its size, 16-1048576 MiB (default 1024); space is taken on the host as files are
                written, and a write past the size fails with ``ENOSPC`` inside the sandbox.

        Raises:
            ConflictError: the name is taken. InvalidArgumentError: a bad name or size.
            ResourceExhaustedError: the daemon has 256 volumes already.
        """
        body: Dict[str, Any] = {"name": name}
        if size_mb is not None:
            body["size_mb"] = int(size_mb)
        return Volume.from_json(self._http.request("POST", "/v1/volumes", json_body=body, idempotent=False).json())

    def list_volumes(self) -> List[Volume]:
        """The key's volumes (the admin's: every one)."""
        d = self._http.request("GET", "/v1/volumes").json()
        return [Volume.from_json(v) for v in d.get("volumes") or []]

    def get_volume(self, volume: VolumeRef) -> Volume:
        """The volume with this name or id (or a fresh copy of a :class:`Volume`, e.g. its ``used_bytes``);
        NotFoundError if none."""
        return Volume.from_json(self._http.request("GET", f"/v1/volumes/{seg(volume_ref(volume))}").json())

    def delete_volume(self, volume: VolumeRef, *, missing_ok: bool = False) -> None:
        """Deletes a volume (name, id or :class:`Volume`) and its files. ``missing_ok`` ignores an unknown one.

        Raises:
            BusyError: a sandbox (running, paused or stopped) mounts it; delete those first.
        """
        try:
            self._http.request("DELETE", f"/v1/volumes/{seg(volume_ref(volume))}")
        except errors.NotFoundError:
            if not missing_ok:
                raise

    # --- keys (admin) -------------------------------------------------------------------------------

    def create_key(self, name: Optional[str] = None, *, max_sandboxes: Optional[int] = None,
                   max_memory_mb: Optional[int] = None) -> ApiKey:
        """Creates a tenant API key (admin only). The secret is in ``.key`` of the answer, only there.
        A quota of 0 or None is unlimited."""
        body: Dict[str, Any] = {}
        if name is not None:
            body["name"] = name
        quotas = {k: v for k, v in (("max_sandboxes", max_sandboxes), ("max_memory_mb", max_memory_mb)) if v is not None}
        if quotas:
            body["quotas"] = quotas
        return ApiKey.from_json(self._http.request("POST", "/v1/keys", json_body=body, idempotent=False).json())

    def list_keys(self) -> List[ApiKey]:
        """Every tenant key (admin only), without secrets."""
        return [ApiKey.from_json(k) for k in self._http.request("GET", "/v1/keys").json().get("keys") or []]

    def delete_key(self, key_id: str) -> None:
        """Revokes a key at once; its sandboxes stay (admin only)."""
        self._http.request("DELETE", f"/v1/keys/{seg(key_id)}")


class Sandbox(SandboxData):
    """A sandbox: its last-seen state (``id``, ``name``, ``state``, ``metadata``, ... see
    :class:`~sbx._common.SandboxData`) and everything you can do with it. Used in a ``with`` block it is
    deleted when the block ends."""

    def __init__(self, client: SandboxClient, data: Dict[str, Any]) -> None:
        self._client = client
        self._data = data

    @property
    def _http(self) -> SyncTransport:
        return self._client._http

    @property
    def _path(self) -> str:
        return f"/v1/sandboxes/{seg(self.id)}"

    @property
    def client(self) -> SandboxClient:
        return self._client

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.delete(missing_ok=True)

    def _set(self, d: Any) -> "Sandbox":
        if isinstance(d, dict) and d.get("id"):
            self._data = d
        return self

    # --- lifecycle ----------------------------------------------------------------------------------

    def refresh(self) -> "Sandbox":
        """Reads the sandbox again; returns self."""
        return self._set(self._http.request("GET", self._path).json())

    def update(self, *, idle_ttl_seconds: Optional[int] = None, delete_after_stop_seconds: Optional[int] = None,
               timeout_seconds: Optional[int] = None, metadata: Optional[Mapping[str, str]] = None,
               egress: Optional[EgressPolicyLike] = None) -> "Sandbox":
        """See :meth:`SandboxClient.update_sandbox` (``egress=`` replaces the egress policy); returns
        self, updated."""
        body = update_body(idle_ttl_seconds, delete_after_stop_seconds, timeout_seconds, metadata, egress)
        return self._set(self._http.request("PATCH", self._path, json_body=body).json())

    def stop(self) -> "Sandbox":
        """Ends every process; files stay. Idempotent."""
        return self._set(self._http.request("POST", self._path + "/stop").json())

    def start(self) -> "Sandbox":
        """Starts a stopped or failed sandbox (resumes a paused one). Idempotent.

        Raises:
            QuotaExceededError: restarting would exceed the key's memory quota.
        """
        try:
            return self._set(self._http.request("POST", self._path + "/start").json())
        except errors.APIError as e:
            if e.status is not None and e.status >= 500:
                raise errors.CreationError(e.message, code=e.code, status=e.status) from e
            raise

    def pause(self) -> "Sandbox":
        """Freezes every process (no CPU, memory kept). Idempotent."""
        return self._set(self._http.request("POST", self._path + "/pause").json())

    def resume(self) -> "Sandbox":
        """Thaws a paused sandbox. Idempotent."""
        return self._set(self._http.request("POST", self._path + "/resume").json())

    def renew(self, timeout_seconds: Optional[int] = None) -> "Sandbox":
        """Restarts the lifetime: ``expires_at`` becomes now + ``timeout_seconds`` (which also replaces
        the sandbox's ``timeout_seconds``), or now + its current one."""
        body = {"timeout_seconds": timeout_seconds} if timeout_seconds is not None else {}
        return self._set(self._http.request("POST", self._path + "/renew", json_body=body).json())

    def metrics(self) -> SandboxMetrics:
        """CPU, memory, pids, disk and I/O usage now."""
        return SandboxMetrics.from_json(self._http.request("GET", self._path + "/metrics").json())

    def delete(self, *, missing_ok: bool = False) -> None:
        """Deletes the sandbox and its files."""
        self._client.delete_sandbox(self.id, missing_ok=missing_ok)
        self._data = dict(self._data, state="deleted")

    # --- checkpoints and fork -----------------------------------------------------------------------

    def checkpoint(self, name: Optional[str] = None) -> Checkpoint:
        """Copies everything the sandbox wrote (its disk) into a checkpoint, with the file system frozen
        for the length of the copy (processes keep running; their writes wait). Processes and memory
        are not part of it. Returns when the copy is done.

        Args:
            name: unique per sandbox (``[A-Za-z0-9_.-]{1,64}``); default: the checkpoint's id.

        Raises:
            ConflictError: the name is taken. BusyError: another checkpoint, restore or fork of the
            sandbox is in progress. ResourceExhaustedError: the sandbox has 64 checkpoints already.
        """
        body = {"name": name} if name is not None else {}
        return Checkpoint.from_json(self._http.request("POST", self._path + "/checkpoints", json_body=body,
                                                       timeout=None, idempotent=False).json())

    def checkpoints(self) -> List[Checkpoint]:
        """The sandbox's checkpoints, oldest first."""
        d = self._http.request("GET", self._path + "/checkpoints").json()
        return [Checkpoint.from_json(c) for c in d.get("checkpoints") or []]

    def get_checkpoint(self, name: CheckpointRef) -> Checkpoint:
        """The checkpoint with this name (NotFoundError if none)."""
        return Checkpoint.from_json(self._http.request("GET", self._checkpoint_path(name)).json())

    def delete_checkpoint(self, name: CheckpointRef, *, missing_ok: bool = False) -> None:
        """Deletes a checkpoint (BusyError while a sandbox is being created from it). ``missing_ok``
        ignores an unknown name."""
        try:
            self._http.request("DELETE", self._checkpoint_path(name))
        except errors.NotFoundError:
            if not missing_ok:
                raise

    def restore(self, checkpoint: CheckpointRef) -> "Sandbox":
        """Puts the sandbox's files back as they were at a checkpoint (by name, or a
        :class:`~sbx.models.Checkpoint` of this sandbox); returns self, updated. Its processes end; a
        running or paused sandbox is started again (with no processes), a stopped one stays stopped.

        Raises:
            NotFoundError: no such checkpoint. BusyError: a checkpoint, restore or fork is in progress.
        """
        return self._set(self._http.request("POST", self._checkpoint_path(checkpoint, "/restore"), timeout=None,
                                            idempotent=False).json())

    def fork(self, count: int = 1) -> List["Sandbox"]:
        """``count`` (1-16) new sandboxes, each with a copy of this sandbox's files as they are now and
        its snapshot, env, metadata, resources and lifecycle settings; no name, no processes. All or
        nothing. Delete them when done (each is a context manager).

        Raises:
            QuotaExceededError, ResourceExhaustedError: ``count`` more sandboxes do not fit.
            BusyError: a checkpoint, restore or fork of the sandbox is in progress.
            CreationError: the daemon failed to build one of them (none is left).
        """
        try:
            d = self._http.request("POST", self._path + "/fork", json_body={"count": int(count)}, timeout=None,
                                   idempotent=False).json()
        except errors.APIError as e:
            if e.status is not None and e.status >= 500:
                raise errors.CreationError(e.message, code=e.code, status=e.status) from e
            raise
        return [Sandbox(self._client, x) for x in iter_sandboxes(d)]

    # --- snapshots ----------------------------------------------------------------------------------

    def capture_snapshot(self, name: str, *, wait: bool = True, timeout: Optional[float] = 600.0) -> Snapshot:
        """Makes a snapshot of the sandbox's files (``POST /v1/sandboxes/{id}/capture``): everything it
        wrote, deleted or replaced over its snapshot becomes one new layer over that snapshot's layers
        (shared, not copied), with its config. New sandboxes start from it with
        ``create_sandbox(snapshot=name)``; it outlives this sandbox. Processes and memory are not part of
        it. A running or paused sandbox's disk is frozen during the copy (writers wait; commands keep
        running); meanwhile stop, start, delete, checkpoints, fork and file calls raise
        :class:`~sbx.errors.BusyError`.

        Args:
            name: the snapshot's unique name (``[A-Za-z0-9_.-]{1,64}``, across all snapshots; ``host`` is
                reserved). The caller's key owns it (a tenant's capture is seen by that tenant only).
            wait: poll until the capture ends (default); False returns the ``building`` snapshot at once
                (then :meth:`SandboxClient.wait_snapshot`).
            timeout: seconds to wait for the capture to end (None: forever).

        Raises:
            SnapshotCaptureError: the capture failed (``.reason``: a file owned outside the sandbox's id
                range, a name starting with ``.wh.``, too much content; the failed snapshot stays until
                deleted). ConflictError: the name is taken, or the sandbox is still being created.
            BusyError: another capture, checkpoint, restore or fork of the sandbox is in progress.
            NotFoundError: no such sandbox. InvalidArgumentError: a bad name.
            TimeoutError: still building after ``timeout``.
        """
        d = self._http.request("POST", self._path + "/capture", json_body={"name": name}, idempotent=False).json()
        snap = Snapshot.from_json(d)
        return self._client._wait_snapshot(snap, timeout, None) if wait else snap

    # --- commands -----------------------------------------------------------------------------------

    @overload
    def run(self, command: Command, *, wait: Literal[True] = ..., timeout: Optional[float] = ...,
            env: Optional[Mapping[str, str]] = ..., cwd: Optional[str] = ..., stdin: Union[str, bytes, None] = ...,
            on_stdout: Optional[OutputCallback] = ..., on_stderr: Optional[OutputCallback] = ...,
            stdin_open: Optional[bool] = ..., command_id: Optional[str] = ..., ttl_seconds: Optional[float] = ...,
            idle_timeout: Optional[float] = ..., kill_on_disconnect: Optional[bool] = ...,
            disconnect_grace: Optional[float] = ..., pty: bool = ..., cols: Optional[int] = ...,
            rows: Optional[int] = ..., user: Optional[str] = ...) -> ExecutionResult: ...

    @overload
    def run(self, command: Command, *, wait: Literal[False], timeout: Optional[float] = ...,
            env: Optional[Mapping[str, str]] = ..., cwd: Optional[str] = ..., stdin: Union[str, bytes, None] = ...,
            on_stdout: Optional[OutputCallback] = ..., on_stderr: Optional[OutputCallback] = ...,
            stdin_open: Optional[bool] = ..., command_id: Optional[str] = ..., ttl_seconds: Optional[float] = ...,
            idle_timeout: Optional[float] = ..., kill_on_disconnect: Optional[bool] = ...,
            disconnect_grace: Optional[float] = ..., pty: bool = ..., cols: Optional[int] = ...,
            rows: Optional[int] = ..., user: Optional[str] = ...) -> "CommandHandle": ...

    def run(self, command: Command, *, wait: bool = True, timeout: Optional[float] = None,
            env: Optional[Mapping[str, str]] = None, cwd: Optional[str] = None, stdin: Union[str, bytes, None] = None,
            on_stdout: Optional[OutputCallback] = None, on_stderr: Optional[OutputCallback] = None,
            stdin_open: Optional[bool] = None, command_id: Optional[str] = None, ttl_seconds: Optional[float] = None,
            idle_timeout: Optional[float] = None, kill_on_disconnect: Optional[bool] = None,
            disconnect_grace: Optional[float] = None, pty: bool = False, cols: Optional[int] = None,
            rows: Optional[int] = None, user: Optional[str] = None) -> Union[ExecutionResult, "CommandHandle"]:
        """Runs a command in the sandbox.

        Args:
            command: a string (run by ``/bin/sh -c``) or an argv list (resolved with ``PATH``).
            wait: True (default) returns the :class:`ExecutionResult` once the command exits; False
                returns a :class:`CommandHandle` at once (iterate it for output, ``.result`` to wait).
            timeout: seconds after which the daemon kills it; then :class:`CommandTimeoutError` is raised
                (with the partial output in ``.result``).
            env, cwd: merged over the sandbox's env; working directory (default ``/root``).
            user: who it runs as: a name from the sandbox's ``/etc/passwd`` (``"daemon"``), a uid
                (``"1000"``) or ``"UID:GID"``; default root (or an image's ``User``). An unknown or
                malformed one raises :class:`InvalidArgumentError`.
            stdin: text or bytes given to the command's stdin, which is then closed.
            on_stdout, on_stderr: called with each piece of output text as it arrives.
            stdin_open: keep stdin open for :meth:`CommandHandle.send_input` (default: True with
                ``wait=False``, else False).
            command_id: your id for the command (``[A-Za-z0-9_.-]{1,64}``); default a random one. The
                daemon treats it as get-or-create, which is what makes retries safe.
            ttl_seconds, idle_timeout, kill_on_disconnect, disconnect_grace: the command's lifecycle
                (docs/api.md); ``idle_timeout=-1`` for background services nobody watches.
            pty: run on a pseudo-terminal of ``cols`` x ``rows`` (default 80 x 24): output is all
                ``stdout`` (with ``\r\n`` and echo), stdin is typed keys (``"\x03"`` is ^C), and
                :meth:`CommandHandle.resize` changes the window. See also :meth:`shell`.

        A non-zero exit status is not an exception. Connection losses are retried transparently (the
        command is never started twice; output resumes from the byte offsets already received).
        """
        if stdin_open is None:
            stdin_open = not wait
        spec = command_spec(command, command_id=command_id, env=env, cwd=cwd, timeout=timeout, stdin=stdin,
                            stdin_open=stdin_open, ttl_seconds=ttl_seconds, idle_timeout=idle_timeout,
                            kill_on_disconnect=kill_on_disconnect, disconnect_grace=disconnect_grace,
                            pty=pty, cols=cols, rows=rows, user=user)
        if wait and on_stdout is None and on_stderr is None and spec.stdin_after is None:
            cmd = self._http.request("POST", self._path + "/commands", json_body=dict(spec.body, wait=True),
                                     timeout=None).json()
            result, truncated = result_from_wait(cmd)
            if not truncated:
                return check_timeout(result)
            return CommandHandle(self, spec.id, info=cmd).wait()
        handle = self._start(spec, stdin_open)
        if not wait:
            return handle
        for chunk in handle:
            emit(on_stdout if chunk.stream == "stdout" else on_stderr, chunk)
        return handle.wait()

    def _start(self, spec: CommandSpec, stdin_open: bool) -> "CommandHandle":
        cmd = self._http.request("POST", self._path + "/commands", json_body=spec.body).json()
        h = CommandHandle(self, spec.id, info=cmd)
        if spec.stdin_after is not None:
            h.send_input(spec.stdin_after)
            if not stdin_open:
                h.close_stdin()
        return h

    def shell(self, command: Command = "/bin/sh", *, cols: int = 80, rows: int = 24,
              env: Optional[Mapping[str, str]] = None, cwd: Optional[str] = None, command_id: Optional[str] = None,
              idle_timeout: Optional[float] = None, kill_on_disconnect: Optional[bool] = None,
              user: Optional[str] = None) -> "CommandHandle":
        """An interactive shell on a terminal: ``run(command, pty=True, wait=False)``. Type into it with
        ``send_input`` (``"exit\n"`` or ``"\x04"`` ends it), read it by iterating the handle, resize it
        with ``resize(cols, rows)``."""
        return self.run(command, wait=False, pty=True, cols=cols, rows=rows, env=env, cwd=cwd,
                        command_id=command_id, idle_timeout=idle_timeout, kill_on_disconnect=kill_on_disconnect,
                        user=user)

    def reconnect(self, command_id: str, *, stdout_offset: int = 0, stderr_offset: int = 0) -> "CommandHandle":
        """A handle on an existing command (e.g. one started by another process, or before a crash).
        Iterating it replays the output from the given byte offsets (default: from the start).

        Raises:
            NotFoundError: no such command; ExpiredError: it finished and its ``ttl_seconds`` ran out.
        """
        info = self.command(command_id)
        return CommandHandle(self, command_id, stdout_offset=stdout_offset, stderr_offset=stderr_offset,
                             info=info.raw)

    def command(self, command_id: str) -> CommandInfo:
        """A command's status."""
        return CommandInfo.from_json(self._http.request("GET", f"{self._path}/commands/{seg(command_id)}").json())

    def commands(self) -> List[CommandInfo]:
        """Every command the sandbox keeps (running, and finished ones not expired), oldest first."""
        d = self._http.request("GET", self._path + "/commands").json()
        return [CommandInfo.from_json(c) for c in d.get("commands") or []]

    def logs(self, command_id: str, *, cursor: int = 0, limit: Optional[int] = None) -> LogPage:
        """One page of a command's combined stdout+stderr log from ``cursor`` (for polling background
        commands without holding a stream). Continue with ``cursor=page.next_cursor`` until ``page.eof``."""
        path = with_query(f"{self._path}/commands/{seg(command_id)}/logs", {"cursor": cursor, "limit": limit})
        return LogPage.from_json(self._http.request("GET", path).json())

    # --- agent sessions (sbx.agents) ----------------------------------------------------------------

    def agent(self, prompt: Optional[str] = None, *, model: Optional[str] = None,
              system_prompt: Optional[str] = None, allowed_tools: Optional[Sequence[str]] = None,
              permission_mode: Optional[str] = None, max_turns: Optional[int] = None, cwd: Optional[str] = None,
              mcp_servers: Optional[Mapping[str, Any]] = None, resume: Optional[str] = None,
              env: Optional[Mapping[str, str]] = None, command: Union[str, Sequence[str], None] = None,
              stderr: bool = False) -> AgentSession:
        """Starts an agent session (the daemon's agent command, by default the ``claude`` CLI in
        stream-JSON mode, or ``command``) with a first ``prompt``; iterate the session for its events.
        ``env`` (e.g. ``ANTHROPIC_API_KEY``) reaches only the agent's process and is never echoed back.

        Raises:
            CommandNotFoundError: the agent program is not in the sandbox; ResourceExhaustedError: too
            many sessions running in it; NotRunningError: the sandbox is stopped.
        """
        body = agent_body(prompt, model=model, system_prompt=system_prompt, allowed_tools=allowed_tools,
                          permission_mode=permission_mode, max_turns=max_turns, cwd=cwd, mcp_servers=mcp_servers,
                          resume=resume, env=env, command=command)
        d = self._http.request("POST", self._path + "/agents", json_body=body, idempotent=False).json()
        return AgentSession(self, d["id"], info=d, stderr=stderr)

    def attach_agent(self, agent_id: str, *, from_offset: int = 0, stderr: bool = False) -> AgentSession:
        """A handle on an existing session whose events start at ``from_offset`` (0 replays them all;
        an event's ``next_offset`` resumes right after it). NotFoundError when there is no such session."""
        info = self.get_agent(agent_id)
        return AgentSession(self, agent_id, from_offset=from_offset, info=info.raw, stderr=stderr)

    def get_agent(self, agent_id: str) -> AgentInfo:
        return AgentInfo.from_json(self._http.request("GET", f"{self._path}/agents/{seg(agent_id)}").json())

    def agents(self) -> List[AgentInfo]:
        """Every agent session of the sandbox (running and exited), oldest first."""
        d = self._http.request("GET", self._path + "/agents").json()
        return [AgentInfo.from_json(a) for a in d.get("agents") or []]

    # --- network ------------------------------------------------------------------------------------

    def service(self, port: int, *, expires_in: Optional[int] = None) -> "ServiceURL":
        """Mints a URL through which a TCP (HTTP or WebSocket) server on ``port`` inside the sandbox is
        reached, with a token valid ``expires_in`` seconds (default 3600, at most 7 days). Nothing need
        listen yet. The answer has ``url``, ``token``, ``expires_at`` and ``get``/``post`` helpers."""
        body = {"expires_in_seconds": expires_in} if expires_in is not None else {}
        d = self._http.request("POST", f"{self._path}/ports/{int(port)}/url", json_body=body).json()
        return ServiceURL(d, timeout=self._client._cfg.timeout)

    def ports(self) -> List[ListeningPort]:
        """The TCP ports something listens on inside the sandbox, sorted (NotRunningError if stopped)."""
        d = self._http.request("GET", self._path + "/ports").json()
        return [ListeningPort.from_json(x) for x in d.get("ports") or []]

    def tunnel(self, remote_port: int, local_port: Optional[int] = None, *, host: str = "127.0.0.1") -> "Tunnel":
        """A local TCP listener whose connections reach ``remote_port`` inside the sandbox (over sbxd's
        WebSocket tunnel; needs the ``websockets`` package). Use it as a context manager::

            with sb.tunnel(5432) as t:
                psycopg.connect(host="127.0.0.1", port=t.local_port)

        ``local_port`` None picks a free one. Raises UnimplementedError without ``websockets``."""
        from ._tunnel import Tunnel
        return Tunnel(self._client._cfg, self._path, remote_port, local_port, host)

    # --- code contexts (sbx.contexts) --------------------------------------------------------------

    def create_context(self, language: str = "python", *, cwd: Optional[str] = None,
                       env: Optional[Mapping[str, str]] = None) -> CodeContext:
        """Starts a code context: a persistent ``python``, ``node`` or ``bash`` interpreter whose variables,
        imports and working directory persist between :meth:`CodeContext.run` calls. ``cwd`` (an existing
        directory) and ``env`` apply to the interpreter.

        Raises:
            InvalidArgumentError: unsupported language, or it is not installed in the sandbox's image;
            ResourceExhaustedError: the sandbox has as many contexts as it may (16 live).
        """
        d = self._http.request("POST", self._path + "/contexts", json_body=context_body(language, cwd, env),
                               idempotent=False).json()
        return CodeContext(self, d)

    def get_context(self, context_id: str) -> CodeContext:
        return CodeContext(self, self._http.request("GET", f"{self._path}/contexts/{seg(context_id)}").json())

    def contexts(self) -> List[ContextInfo]:
        """Every code context of the sandbox (idle, busy or ended), oldest first."""
        d = self._http.request("GET", self._path + "/contexts").json()
        return [ContextInfo.from_json(c) for c in d.get("contexts") or []]

    def run_code(self, code: str, *, language: str = "python", timeout: Optional[float] = None,
                 on_stdout: Optional[OutputCallback] = None, on_stderr: Optional[OutputCallback] = None) -> Execution:
        """Runs ``code`` once in a new context of ``language`` and deletes the context afterwards."""
        ctx = self.create_context(language)
        try:
            return ctx.run(code, timeout=timeout, on_stdout=on_stdout, on_stderr=on_stderr)
        finally:
            ctx.delete(missing_ok=True)

    # --- files --------------------------------------------------------------------------------------

    def write(self, path: str, data: FileData, *, mode: Union[int, str, None] = None) -> FileInfo:
        """Writes a file (atomically: readers never see half of it), creating missing parent
        directories. ``data``: text (UTF-8), bytes, or a binary file object (streamed). ``mode``:
        permission bits, e.g. ``0o755`` or ``"0755"``."""
        body: Any = data
        if isinstance(data, str):
            body = data.encode("utf-8")
        elif isinstance(data, (bytearray, memoryview)):
            body = bytes(data)
        q = {"path": path, "mode": _mode(mode)}
        d = self._http.request("PUT", with_query(self._path + "/files", q), body=body,
                               headers={"Content-Type": "application/octet-stream"}, timeout=None).json()
        return FileInfo.from_json(d)

    def read(self, path: str, *, offset: int = 0, length: Optional[int] = None) -> bytes:
        """A file's bytes (from ``offset``, at most ``length`` of them)."""
        headers = {"Accept": "application/octet-stream"}
        if offset or length is not None:
            end = "" if length is None else str(offset + max(length, 1) - 1)
            headers["Range"] = f"bytes={offset}-{end}"
            if length == 0:
                return b""
        r = self._http.request("GET", with_query(self._path + "/files", {"path": path}), headers=headers,
                               timeout=None, ok=(416,))
        return b"" if r.status == 416 else r.body

    def read_text(self, path: str, encoding: str = "utf-8") -> str:
        """A file's contents as text."""
        return self.read(path).decode(encoding, "replace")

    def upload(self, local_path: Union[str, "os.PathLike[str]"], path: str, *, mode: Union[int, str, None] = None) -> FileInfo:
        """Streams a local file into the sandbox (its permission bits unless ``mode`` is given)."""
        if mode is None:
            mode = os.stat(local_path).st_mode & 0o7777
        with open(local_path, "rb") as f:
            return self.write(path, f, mode=mode)

    def download(self, path: str, local_path: Union[str, "os.PathLike[str]"]) -> int:
        """Streams a file out of the sandbox into ``local_path`` (through a temporary file renamed into
        place); returns its size."""
        conn, r = self._http.stream(with_query(self._path + "/files", {"path": path}))
        local = os.fspath(local_path)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(local)), prefix=".sbx-dl-")
        try:
            with os.fdopen(fd, "wb") as f:
                shutil.copyfileobj(r, f, 1 << 20)
                n = f.tell()
            os.replace(tmp, local)
            return n
        except BaseException:
            os.unlink(tmp)
            raise
        finally:
            conn.close()

    def stat(self, path: str) -> FileInfo:
        """A file's type, size, mode and mtime (a symlink itself, not its target)."""
        return FileInfo.from_json(self._http.request("GET", with_query(self._path + "/files/stat", {"path": path})).json())

    def exists(self, path: str) -> bool:
        """Whether the path exists."""
        try:
            self.stat(path)
            return True
        except errors.NotFoundError:
            return False

    def ls(self, path: str = "/root") -> List[FileInfo]:
        """The entries of a directory."""
        d = self._http.request("GET", with_query(self._path + "/files/list", {"path": path})).json()
        return [FileInfo.from_json(e) for e in d.get("entries") or []]

    def mkdir(self, path: str, *, mode: Union[int, str, None] = None) -> FileInfo:
        """Creates a directory and missing parents (like ``mkdir -p``)."""
        body: Dict[str, Any] = {"path": path}
        if mode is not None:
            body["mode"] = _mode(mode)
        return FileInfo.from_json(self._http.request("POST", self._path + "/files/mkdir", json_body=body).json())

    def remove(self, path: str, *, recursive: bool = False) -> None:
        """Removes a file, or a directory (non-empty ones need ``recursive=True``: else ConflictError)."""
        q = {"path": path, "recursive": True if recursive else None}
        self._http.request("DELETE", with_query(self._path + "/files", q))

    def move(self, src: str, dst: str, *, overwrite: bool = False) -> FileInfo:
        """Renames ``src`` to ``dst``; an existing ``dst`` is replaced only with ``overwrite``."""
        body = {"from": src, "to": dst, "overwrite": overwrite}
        return FileInfo.from_json(self._http.request("POST", self._path + "/files/move", json_body=body,
                                                     idempotent=False).json())


def _mode(mode: Union[int, str, None]) -> Optional[str]:
    if mode is None:
        return None
    return f"{mode:04o}" if isinstance(mode, int) else str(mode)


class CommandHandle:
    """A running (or finished) command.

    Iterating yields :class:`OutputChunk` objects (stdout and stderr in the order the daemon read them)
    until the command exits; a dropped connection or a daemon restart is bridged by reconnecting from
    the byte offsets received so far, so every byte arrives exactly once. Breaking out of the loop and
    iterating again continues where it stopped. ``result`` (or ``wait()``) waits for the exit.
    """

    def __init__(self, sandbox: Sandbox, command_id: str, *, stdout_offset: int = 0, stderr_offset: int = 0,
                 info: Optional[Dict[str, Any]] = None) -> None:
        self._sb = sandbox
        self._state = StreamState(command_id, stdout_offset, stderr_offset)
        self._info = info or {}
        self._path = f"{sandbox._path}/commands/{seg(command_id)}"

    def __repr__(self) -> str:
        return f"<CommandHandle {self.command_id} pid={self.pid} done={self.done}>"

    @property
    def command_id(self) -> str:
        return self._state.command_id

    @property
    def sandbox(self) -> Sandbox:
        return self._sb

    @property
    def pid(self) -> Optional[int]:
        """The process id inside the sandbox."""
        pid = (self._state.exit or self._info).get("pid")
        return int(pid) if pid is not None else None

    @property
    def done(self) -> bool:
        """Whether this handle has seen the command's exit."""
        return self._state.done

    @property
    def exit_code(self) -> Optional[int]:
        """The exit status once seen (None before)."""
        return self._state.exit.get("exit_code") if self._state.exit else None

    @property
    def offsets(self) -> Dict[str, int]:
        """``{"stdout_offset": N, "stderr_offset": M}``: where this handle would resume."""
        return self._state.query()

    def __iter__(self) -> Iterator[OutputChunk]:
        return self._follow()

    def _follow(self) -> Iterator[OutputChunk]:
        st = self._state
        backoff = Backoff(self._sb._client._cfg.retry_timeout)
        while not st.done:
            try:
                conn, r = self._sb._http.stream(with_query(self._path + "/stream", st.query()),
                                                headers={"Accept": "text/event-stream"})
            except NETWORK_ERRORS as e:
                self._pause(backoff, e)
                continue
            try:
                parser = SSEParser()
                for b in iter_body(r):
                    for name, data in parser.feed(b):
                        chunk = st.on_event(name, data)
                        if chunk is not None:
                            backoff.reset()
                            yield chunk
                    if st.done:
                        break
                if not st.done:
                    self._pause(backoff, EOFError("stream ended before the exit event"))
            except NETWORK_ERRORS as e:
                self._pause(backoff, e)
            finally:
                conn.close()

    def _pause(self, backoff: Backoff, e: BaseException) -> None:
        delay = backoff.next_delay()
        if delay is None:
            raise errors.ConnectionError(f"stream of command {self.command_id}: could not reconnect within "
                                         f"{backoff.budget} s: {type(e).__name__}: {e}") from e
        time.sleep(delay)

    def wait(self) -> ExecutionResult:
        """Waits for the command to exit and returns its result (the output received by this handle).

        Raises:
            CommandTimeoutError: the daemon killed it at its ``timeout``.
        """
        for _ in self._follow():
            pass
        return check_timeout(self._state.result())

    @property
    def result(self) -> ExecutionResult:
        """Same as :meth:`wait`."""
        return self.wait()

    def info(self) -> CommandInfo:
        """The command's current status from the daemon."""
        d = self._sb._http.request("GET", self._path).json()
        self._info = d
        return CommandInfo.from_json(d)

    def logs(self, *, cursor: int = 0, limit: Optional[int] = None) -> LogPage:
        """See :meth:`Sandbox.logs`."""
        return self._sb.logs(self.command_id, cursor=cursor, limit=limit)

    def send_input(self, data: Union[str, bytes]) -> None:
        """Writes to the command's stdin (started with ``stdin_open``, the default for ``wait=False``)."""
        body = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        self._sb._http.request("POST", self._path + "/stdin", body=body, idempotent=False,
                               headers={"Content-Type": "application/octet-stream"})

    def close_stdin(self) -> None:
        """Closes the command's stdin (it reads EOF)."""
        self._sb._http.request("POST", with_query(self._path + "/stdin", {"close": True}), body=b"")

    def signal(self, sig: Union[int, str]) -> None:
        """Sends a signal (``"SIGINT"``, ``"TERM"``, ``15``, ``signal.SIGTERM``)."""
        self._sb._http.request("POST", self._path + "/signal", json_body={"signal": signal_name(sig)})

    def kill(self, signal: Union[int, str, None] = None) -> None:
        """SIGKILLs the command's process group (``error.code`` becomes ``killed``), or sends
        ``signal`` to it when given."""
        if signal is not None:
            self.signal(signal)
        else:
            self._sb._http.request("POST", self._path + "/kill")

    def resize(self, cols: int, rows: int) -> None:
        """Sets a pty command's window size (its foreground process group gets SIGWINCH). ConflictError
        for a command without a pty; nothing happens once it exited."""
        self._sb._http.request("POST", self._path + "/resize", json_body={"cols": int(cols), "rows": int(rows)})


class ServiceURL(ServiceURLData):
    """A minted service URL (``Sandbox.service(port)``): ``url``, ``path_url``, ``token``,
    ``expires_at``, ``browser_url``; ``get``/``post``/``request`` send the token header for you (no API
    key is sent to the service). Every request uses a connection of its own (sbxd's path form serves
    one request per connection)."""

    def __init__(self, data: Dict[str, Any], *, timeout: float = 60.0) -> None:
        super().__init__(data)
        self._timeout = timeout

    def request(self, method: str, path: str = "/", body: Any = None, *,
                headers: Optional[Mapping[str, str]] = None, timeout: Optional[float] = -1.0) -> ServiceResponse:
        """Sends ``method path`` to the service. ``body``: bytes, text, or anything else as JSON.
        Returns the :class:`ServiceResponse` whatever its status (``.raise_for_status()``)."""
        scheme, host, port, target = self.target(path)
        data, hdrs = service_request_parts(self.token, body, headers)
        t = self._timeout if timeout is not None and timeout < 0 else timeout
        if scheme == "https":
            c: http.client.HTTPConnection = http.client.HTTPSConnection(host, port, timeout=t,
                                                                         context=ssl.create_default_context())
        else:
            c = http.client.HTTPConnection(host, port, timeout=t)
        try:
            c.request(method, target, body=data, headers=hdrs)
            r = c.getresponse()
            return ServiceResponse(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        finally:
            c.close()

    def get(self, path: str = "/", **kw: Any) -> ServiceResponse:
        """``GET path`` (``headers=``, ``timeout=``)."""
        return self.request("GET", path, **kw)

    def post(self, path: str = "/", body: Any = None, **kw: Any) -> ServiceResponse:
        """``POST path`` with ``body`` (bytes, text, or JSON for anything else)."""
        return self.request("POST", path, body, **kw)
