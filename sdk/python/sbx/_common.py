"""Pieces shared by the sync and async clients: configuration, request bodies, the SSE parser, the
per-command stream state (offsets, decoding, exactly-once bookkeeping) and the sandbox's data view."""
from __future__ import annotations

import base64
import codecs
import json
import os
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union
from urllib.parse import quote, urlencode, urlsplit

from . import errors
from .errors import CommandTimeoutError, SnapshotCaptureError, SnapshotImportError, SnapshotPullError, StreamError
from .models import (Checkpoint, CommandInfo, EgressPolicy, EgressPolicyLike, ExecutionResult, Network, OutputChunk,
                     Resources, Snapshot, SnapshotProgress, Volume, VolumeMount)

DEFAULT_URL = "http://127.0.0.1:7070"
USER_AGENT = "sbx-python/0.1.0"

Command = Union[str, Sequence[str]]
OutputCallback = Callable[[str], Any]
# Called with a pull's download progress (sync client: a plain function; asyncio: may be a coroutine function).
ProgressCallback = Callable[[SnapshotProgress], Any]
CheckpointRef = Union[str, Checkpoint]  # a checkpoint's name, or the Checkpoint itself
VolumeRef = Union[str, Volume]  # a volume's name or id, or the Volume itself
# A volume to mount in a new sandbox: a VolumeMount, {"volume": ..., "path": ..., "read_only"?: ...}, or
# (volume, path) / (volume, path, read_only); volume a name, an id or a Volume.
VolumeSpec = Union[VolumeMount, Mapping[str, Any], Tuple[VolumeRef, str], Tuple[VolumeRef, str, bool]]
# A new sandbox's network: an EgressPolicy (mode egress with that policy), a Network, "none" or "egress"
# (the default policy: deny everything), or a dict in the API's form ({"mode": ..., "egress": {...}}).
NetworkSpec = Union[EgressPolicy, Network, str, Mapping[str, Any]]


@dataclass(frozen=True)
class Config:
    """Where the daemon is and how to talk to it (resolved once per client)."""

    scheme: str
    host: str
    port: int
    prefix: str
    api_key: Optional[str]
    timeout: float
    retry_timeout: float
    headers: Dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{self.prefix}"

    def base_headers(self) -> Dict[str, str]:
        h = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if self.api_key:
            h["Authorization"] = f"Bearer {self.api_key}"
        h.update(self.headers)
        return h


def make_config(url: Optional[str], api_key: Optional[str], timeout: float, retry_timeout: float,
                headers: Optional[Mapping[str, str]]) -> Config:
    url = url or os.environ.get("SBX_URL") or DEFAULT_URL
    if "://" not in url:
        url = "http://" + url
    u = urlsplit(url)
    if u.scheme not in ("http", "https"):
        raise ValueError(f"unsupported URL scheme in {url!r} (http or https)")
    if not u.hostname:
        raise ValueError(f"no host in {url!r}")
    port = u.port or (443 if u.scheme == "https" else 80)
    key = api_key if api_key is not None else os.environ.get("SBX_API_KEY") or None
    return Config(u.scheme, u.hostname, port, u.path.rstrip("/"), key, timeout, retry_timeout, dict(headers or {}))


def seg(s: str) -> str:
    """A path segment (sandbox id or name, command id), percent-encoded."""
    return quote(str(s), safe="")


def with_query(path: str, query: Optional[Mapping[str, Any]]) -> str:
    if not query:
        return path
    items = [(k, _qv(v)) for k, v in query.items() if v is not None]
    return f"{path}?{urlencode(items)}" if items else path


def _qv(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def new_command_id() -> str:
    """A client-chosen command id: the daemon treats it as get-or-create, so a retried create never
    starts the command twice."""
    return "py-" + uuid.uuid4().hex


def drop_none(d: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def create_body(snapshot: Optional[str], name: Optional[str], env: Optional[Mapping[str, str]],
                metadata: Optional[Mapping[str, str]], cpus: Optional[float], memory_mb: Optional[int],
                pids: Optional[int], disk_mb: Optional[int], idle_ttl_seconds: Optional[int],
                delete_after_stop_seconds: Optional[int], timeout_seconds: Optional[int],
                extra: Optional[Mapping[str, Any]],
                checkpoint: Union[str, Checkpoint, None] = None,
                volumes: Optional[Sequence[VolumeSpec]] = None,
                network: Optional[NetworkSpec] = None) -> Dict[str, Any]:
    resources = drop_none({"cpus": cpus, "memory_mb": memory_mb, "pids": pids, "disk_mb": disk_mb})
    body = drop_none({
        "snapshot": snapshot, "checkpoint": checkpoint.id if isinstance(checkpoint, Checkpoint) else checkpoint,
        "name": name, "env": dict(env) if env is not None else None,
        "metadata": dict(metadata) if metadata is not None else None, "resources": resources or None,
        "idle_ttl_seconds": idle_ttl_seconds, "delete_after_stop_seconds": delete_after_stop_seconds,
        "timeout_seconds": timeout_seconds,
        "volumes": volume_mounts(volumes) if volumes is not None else None,
        "network": network_body(network) if network is not None else None,
    })
    if extra:
        body.update(extra)
    return body


def volume_ref(volume: VolumeRef) -> str:
    """A volume's id (for a :class:`Volume`) or the name or id given; never empty."""
    ref = volume.id if isinstance(volume, Volume) else volume
    if not isinstance(ref, str) or not ref:
        raise ValueError(f"a volume is a name, an id or a Volume, not {volume!r}")
    return ref


def volume_mounts(volumes: Sequence[VolumeSpec]) -> List[Dict[str, Any]]:
    """The ``volumes`` field of a create: ``[{"volume", "path", "read_only"}]`` from each accepted form."""
    if isinstance(volumes, (str, bytes, Mapping, VolumeMount)) or (
            isinstance(volumes, tuple) and volumes and isinstance(volumes[0], (str, Volume))):
        raise ValueError("volumes is a list of mounts: [VolumeMount(...)], [(volume, path)] or "
                         "[{'volume': ..., 'path': ...}]")
    out: List[Dict[str, Any]] = []
    for m in volumes:
        if isinstance(m, VolumeMount):
            vol, path, ro = m.volume, m.path, m.read_only
        elif isinstance(m, Mapping):
            unknown = set(m) - {"volume", "path", "read_only"}
            if unknown or "volume" not in m or "path" not in m:
                raise ValueError(f"a volume mount has 'volume', 'path' and maybe 'read_only', not {dict(m)!r}")
            vol, path, ro = m["volume"], m["path"], m.get("read_only", False)
        elif isinstance(m, tuple) and len(m) in (2, 3):
            vol, path, ro = m[0], m[1], (m[2] if len(m) == 3 else False)  # type: ignore[misc]
        else:
            raise ValueError(f"a volume mount is a VolumeMount, a dict or (volume, path[, read_only]), not {m!r}")
        if not isinstance(path, str) or not isinstance(ro, bool):
            raise ValueError(f"a volume mount's path is a str and read_only a bool: {m!r}")
        out.append({"volume": volume_ref(vol), "path": path, "read_only": ro})
    return out


def network_body(network: NetworkSpec) -> Dict[str, Any]:
    """The ``network`` field of a create from each accepted form."""
    if isinstance(network, EgressPolicy):
        net = Network("egress", network)
    elif isinstance(network, Network):
        net = network
    elif isinstance(network, str):
        net = Network(network)
    elif isinstance(network, Mapping):
        unknown = set(network) - {"mode", "egress"}
        if unknown:
            raise ValueError(f"network has 'mode' and 'egress', not {sorted(unknown)}")
        net = Network(network.get("mode", "none"), network.get("egress"))
    else:
        raise ValueError(f"network is an EgressPolicy, a Network, 'none', 'egress' or a dict, not {network!r}")
    if net.mode not in ("none", "egress"):
        raise ValueError(f"network mode is 'none' or 'egress', not {net.mode!r}")
    if net.mode == "none" and net.egress is not None:
        raise ValueError("an egress policy needs network mode 'egress'")
    return net.to_json()


def update_body(idle_ttl_seconds: Optional[int], delete_after_stop_seconds: Optional[int],
                timeout_seconds: Optional[int], metadata: Optional[Mapping[str, str]],
                egress: Optional[EgressPolicyLike] = None) -> Dict[str, Any]:
    body = drop_none({"idle_ttl_seconds": idle_ttl_seconds, "delete_after_stop_seconds": delete_after_stop_seconds,
                      "timeout_seconds": timeout_seconds, "metadata": dict(metadata) if metadata is not None else None,
                      "network": {"egress": EgressPolicy.of(egress).to_json()} if egress is not None else None})
    if not body:
        raise ValueError("update: give at least one field")
    return body


def list_query(state: Optional[str], metadata: Optional[Mapping[str, str]]) -> List[Tuple[str, str]]:
    q: List[Tuple[str, str]] = []
    if state:
        q.append(("state", state))
    for k, v in (metadata or {}).items():
        q.append((f"metadata.{k}", str(v)))
    return q


@dataclass
class CommandSpec:
    """A command to start: the request body, and whether stdin must be sent after the start."""

    id: str
    body: Dict[str, Any]
    stdin_after: Optional[bytes]


def command_spec(command: Command, *, command_id: Optional[str], env: Optional[Mapping[str, str]],
                 cwd: Optional[str], timeout: Optional[float], stdin: Union[str, bytes, None],
                 stdin_open: bool, ttl_seconds: Optional[float], idle_timeout: Optional[float],
                 kill_on_disconnect: Optional[bool], disconnect_grace: Optional[float],
                 pty: bool = False, cols: Optional[int] = None, rows: Optional[int] = None,
                 user: Optional[str] = None) -> CommandSpec:
    if isinstance(command, str):
        cmd: Any = command
    else:
        cmd = [str(a) for a in command]
        if not cmd:
            raise ValueError("empty command")
    cid = command_id or new_command_id()
    body = drop_none({
        "id": cid, "command": cmd, "env": dict(env) if env is not None else None, "cwd": cwd,
        "user": user,
        "timeout": timeout if timeout else None, "ttl_seconds": ttl_seconds, "idle_timeout": idle_timeout,
        "kill_on_disconnect": kill_on_disconnect, "disconnect_grace": disconnect_grace,
    })
    if pty:
        body["pty"] = True
        body.update(drop_none({"cols": cols, "rows": rows}))
    elif cols is not None or rows is not None:
        raise ValueError("cols and rows need pty=True")
    after: Optional[bytes] = None
    if stdin is not None:
        if isinstance(stdin, bytes):
            try:
                stdin = stdin.decode("utf-8")
            except UnicodeDecodeError:
                after = stdin  # not text: sent raw through the stdin route right after the start
        if after is None and "\0" not in stdin:
            body["stdin"] = stdin
        elif after is None:
            after = stdin.encode("utf-8")
    if stdin_open or after is not None:
        body["stdin_open"] = True
    return CommandSpec(cid, body, after)


class SSEParser:
    """Incremental ``text/event-stream`` parser: feed bytes, get complete ``(event, data)`` pairs.
    An event cut off by a dropped connection is never returned."""

    def __init__(self) -> None:
        self._buf = b""
        self._event = "message"
        self._data: List[str] = []

    def feed(self, chunk: bytes) -> List[Tuple[str, str]]:
        self._buf += chunk
        out: List[Tuple[str, str]] = []
        while True:
            i = self._buf.find(b"\n")
            if i < 0:
                return out
            line, self._buf = self._buf[:i], self._buf[i + 1:]
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                if self._data:
                    out.append((self._event, "\n".join(self._data)))
                self._event, self._data = "message", []
                continue
            text = line.decode("utf-8", "replace")
            if text.startswith(":"):
                continue
            k, _, v = text.partition(":")
            if v.startswith(" "):
                v = v[1:]
            if k == "event":
                self._event = v
            elif k == "data":
                self._data.append(v)


def chunk_raw(ev: Mapping[str, Any]) -> bytes:
    data = ev.get("data") or ""
    if ev.get("encoding") == "base64":
        return base64.b64decode(data)
    return str(data).encode("utf-8")


class StreamState:
    """What a command handle knows about its command's output: per-stream offsets (where the next
    connection resumes), the bytes received, incremental UTF-8 decoders, and the exit object.

    Every byte is delivered once: a chunk that starts before the current offset (a server resending
    after a reconnect) is trimmed, and a gap is a protocol error.
    """

    def __init__(self, command_id: str, stdout_offset: int = 0, stderr_offset: int = 0) -> None:
        self.command_id = command_id
        self.start = {"stdout": stdout_offset, "stderr": stderr_offset}
        self.offsets = dict(self.start)
        self.data = {"stdout": bytearray(), "stderr": bytearray()}
        self._dec = {s: codecs.getincrementaldecoder("utf-8")("replace") for s in ("stdout", "stderr")}
        self.exit: Optional[Dict[str, Any]] = None
        self.pid: Optional[int] = None

    @property
    def done(self) -> bool:
        return self.exit is not None

    def query(self) -> Dict[str, int]:
        return {"stdout_offset": self.offsets["stdout"], "stderr_offset": self.offsets["stderr"]}

    def on_output(self, ev: Mapping[str, Any]) -> Optional[OutputChunk]:
        stream = ev.get("stream")
        if stream not in ("stdout", "stderr"):
            raise StreamError(f"output event for an unknown stream {stream!r}")
        raw = chunk_raw(ev)
        off = int(ev.get("offset") or 0)
        cur = self.offsets[stream]
        if off > cur:
            raise StreamError(f"{stream} of command {self.command_id}: the stream jumped from byte {cur} to {off}")
        if off < cur:
            raw = raw[cur - off:]
            off = cur
        if not raw:
            return None
        self.offsets[stream] = off + len(raw)
        self.data[stream] += raw
        return OutputChunk(stream, self._dec[stream].decode(raw), off, raw)

    def on_exit(self, ev: Dict[str, Any]) -> None:
        self.exit = ev

    def on_event(self, name: str, data: str) -> Optional[OutputChunk]:
        """Handles one SSE event (or WebSocket message: ``name`` is its ``type``)."""
        if name not in ("output", "exit"):
            return None
        try:
            ev = json.loads(data)
        except ValueError as e:
            raise StreamError(f"undecodable {name} event: {e}") from None
        if name == "output":
            return self.on_output(ev)
        self.on_exit(ev)
        return None

    def result(self) -> ExecutionResult:
        assert self.exit is not None
        return result_from(self.exit, bytes(self.data["stdout"]), bytes(self.data["stderr"]))


def result_from(cmd: Dict[str, Any], out: bytes, err: bytes) -> ExecutionResult:
    info = CommandInfo.from_json(cmd)
    code = info.exit_code if info.exit_code is not None else -1
    return ExecutionResult(info.id, code, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), out, err,
                           info.signal, info.error, info)


def result_from_wait(cmd: Dict[str, Any]) -> Tuple[ExecutionResult, bool]:
    """The result of a ``wait: true`` answer, and whether its inline output was truncated (over 16 MiB:
    the full output must then be read through the stream)."""
    out = _inline(cmd, "stdout")
    err = _inline(cmd, "stderr")
    truncated = bool(cmd.get("stdout_truncated") or cmd.get("stderr_truncated"))
    return result_from(cmd, out, err), truncated


def _inline(cmd: Mapping[str, Any], s: str) -> bytes:
    v = cmd.get(s) or ""
    return base64.b64decode(v) if cmd.get(f"{s}_encoding") == "base64" else str(v).encode("utf-8")


def check_timeout(result: ExecutionResult) -> ExecutionResult:
    """Raises CommandTimeoutError for a command the daemon killed at its ``timeout``."""
    if result.timed_out:
        raise CommandTimeoutError(f"command {result.command_id} timed out: "
                                  f"{result.error.message if result.error else ''}".rstrip(": "), result=result)
    return result


def emit(cb: Optional[OutputCallback], chunk: Optional[OutputChunk]) -> None:
    if cb is not None and chunk is not None and chunk.data:
        cb(chunk.data)


class Backoff:
    """Reconnect pacing: 50 ms doubling to 2 s, with jitter, until ``budget`` seconds pass without
    progress (``reset()`` on progress)."""

    def __init__(self, budget: float) -> None:
        self.budget = budget
        self.reset()

    def reset(self) -> None:
        self.attempt = 0
        self.since = time.monotonic()

    def next_delay(self) -> Optional[float]:
        """Seconds to sleep before the next attempt, or None when the budget is spent."""
        if time.monotonic() - self.since > self.budget:
            return None
        d = min(2.0, 0.05 * (2 ** self.attempt)) * (0.75 + random.random() / 2)
        self.attempt += 1
        return d


SIGNALS = {"HUP": 1, "INT": 2, "QUIT": 3, "KILL": 9, "USR1": 10, "USR2": 12, "TERM": 15, "CONT": 18,
           "STOP": 19}


def signal_name(sig: Union[int, str]) -> Union[int, str]:
    """Accepts 15, "TERM", "SIGTERM" or a signal.Signals member; the daemon takes names and numbers."""
    if isinstance(sig, int):
        return int(sig)
    s = str(sig).upper()
    return s if s.startswith("SIG") else "SIG" + s


class SandboxData:
    """Read-only view of a sandbox object; the sync and async ``Sandbox`` classes extend it."""

    _data: Dict[str, Any]

    @property
    def raw(self) -> Dict[str, Any]:
        """The sandbox object as the daemon last sent it."""
        return self._data

    @property
    def id(self) -> str:
        return str(self._data.get("id", ""))

    @property
    def name(self) -> Optional[str]:
        return self._data.get("name")

    @property
    def state(self) -> str:
        """``creating``, ``running``, ``paused``, ``stopped``, ``failed`` or ``deleted`` (as last seen;
        ``refresh()`` asks again)."""
        return str(self._data.get("state", ""))

    @property
    def state_reason(self) -> Optional[str]:
        return self._data.get("state_reason")

    @property
    def snapshot(self) -> Optional[str]:
        return self._data.get("snapshot")

    @property
    def created_at(self) -> Optional[str]:
        return self._data.get("created_at")

    @property
    def env(self) -> Dict[str, str]:
        return dict(self._data.get("env") or {})

    @property
    def metadata(self) -> Dict[str, str]:
        return dict(self._data.get("metadata") or {})

    @property
    def resources(self) -> Resources:
        return Resources.from_json(self._data.get("resources"))

    @property
    def idle_ttl_seconds(self) -> int:
        return int(self._data.get("idle_ttl_seconds") or 0)

    @property
    def delete_after_stop_seconds(self) -> int:
        return int(self._data.get("delete_after_stop_seconds") or 0)

    @property
    def timeout_seconds(self) -> int:
        return int(self._data.get("timeout_seconds") or 0)

    @property
    def expires_at(self) -> Optional[str]:
        return self._data.get("expires_at")

    @property
    def stopped_at(self) -> Optional[str]:
        return self._data.get("stopped_at")

    @property
    def last_active_at(self) -> Optional[str]:
        return self._data.get("last_active_at")

    @property
    def volumes(self) -> List[VolumeMount]:
        """The volumes mounted in the sandbox (``volume`` is each one's id, ``"vol_..."``)."""
        return [VolumeMount.from_json(m) for m in self._data.get("volumes") or [] if isinstance(m, dict)]

    @property
    def network(self) -> Network:
        """The sandbox's network: ``mode`` (``"none"`` or ``"egress"``), its ``egress`` policy (None for
        mode none) and ``address`` (its IPv4 address on ``eth0`` while it runs with mode egress)."""
        return Network.from_json(self._data.get("network"))

    def _checkpoint_path(self, checkpoint: CheckpointRef, op: str = "") -> str:
        """``/v1/sandboxes/{id}/checkpoints/{name}{op}`` for a checkpoint name or a :class:`Checkpoint`
        of this sandbox."""
        if isinstance(checkpoint, Checkpoint):
            if checkpoint.sandbox_id and checkpoint.sandbox_id != self.id:
                raise ValueError(f"checkpoint {checkpoint.id} is of sandbox {checkpoint.sandbox_id}, not {self.id}")
            checkpoint = checkpoint.name
        if not checkpoint:
            raise ValueError("empty checkpoint name")
        return f"/v1/sandboxes/{seg(self.id)}/checkpoints/{seg(checkpoint)}{op}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} name={self.name!r} state={self.state}>"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.id == self.id  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self.id)


def iter_sandboxes(doc: Dict[str, Any]) -> Iterable[Dict[str, Any]]:
    return list(doc.get("sandboxes") or [])


# --- snapshots -----------------------------------------------------------------------------------------

SNAPSHOT_POLL_INTERVAL = 0.2

# What made a snapshot (its ``source``) -> the error a failed one raises and the verb its message uses.
_SNAPSHOT_FAILURES = {"registry": (SnapshotPullError, "pull"), "capture": (SnapshotCaptureError, "capture")}


def snapshot_done(snap: "Snapshot") -> bool:
    """Whether an import, pull or capture has ended; raises :class:`SnapshotImportError` (a
    :class:`SnapshotPullError` for a pull, a :class:`SnapshotCaptureError` for a capture) when it failed."""
    if snap.failed:
        cls, verb = _SNAPSHOT_FAILURES.get(snap.source, (SnapshotImportError, "import"))
        raise cls(f"snapshot {snap.name or snap.id} failed to {verb}: {snap.reason}", reason=snap.reason,
                  snapshot=snap)
    return not snap.building


class ProgressWatch:
    """Remembers the last progress reported so a wait calls ``on_progress`` only when it changed."""

    def __init__(self, on_progress: Optional[ProgressCallback]) -> None:
        self.cb = on_progress
        self.last: Optional[SnapshotProgress] = None

    def changed(self, snap: "Snapshot") -> Optional[SnapshotProgress]:
        """The snapshot's progress if there is a callback and it differs from the last one seen."""
        if self.cb is None or snap.progress is None or snap.progress == self.last:
            return None
        self.last = snap.progress
        return snap.progress


def pull_body(image: str, name: str, insecure: bool, username: Optional[str], password: Optional[str],
              token: Optional[str]) -> Dict[str, Any]:
    """The JSON body of ``POST /v1/snapshots`` for a registry pull (checks the credentials' shape)."""
    if not isinstance(image, str) or not image:
        raise ValueError("image is a reference like 'registry.example:5000/library/alpine:3.19'")
    if not isinstance(name, str) or not name:
        raise ValueError("a pulled snapshot needs a name")
    body: Dict[str, Any] = {"name": name, "image": image, "insecure": bool(insecure)}
    if token is not None:
        if username is not None or password is not None:
            raise ValueError("give either username and password, or token, not both")
        body["auth"] = {"token": token}
    elif username is not None or password is not None:
        if username is None or password is None:
            raise ValueError("basic auth needs both username and password")
        body["auth"] = {"username": username, "password": password}
    return body


def snapshot_wait_timeout(snap: "Snapshot", timeout: Optional[float]) -> errors.TimeoutError:
    return errors.TimeoutError(f"snapshot {snap.name or snap.id} still {snap.status} after {timeout} s",
                               code="deadline_exceeded")


# --- service URLs --------------------------------------------------------------------------------------

SERVICE_TOKEN_HEADER = "X-Sbx-Service-Token"


class ServiceURLData:
    """The fields of a minted service URL (``POST /v1/sandboxes/{id}/ports/{port}/url``)."""

    def __init__(self, data: Dict[str, Any]) -> None:
        self._data = data

    @property
    def raw(self) -> Dict[str, Any]:
        return self._data

    @property
    def url(self) -> str:
        """The URL to give out (the host-header form when sbxd has ``--service-domain``)."""
        return str(self._data.get("url") or self.path_url)

    @property
    def path_url(self) -> str:
        """``http://sbxd/s/{id}/{port}/``: always works."""
        return str(self._data.get("path_url") or self._data.get("url") or "")

    @property
    def token(self) -> str:
        """Sent as the ``X-Sbx-Service-Token`` header (or ``?sbx_token=`` once, for browsers)."""
        return str(self._data.get("token") or "")

    @property
    def expires_at(self) -> Optional[str]:
        return self._data.get("expires_at")

    @property
    def port(self) -> int:
        return int(self._data.get("port") or 0)

    @property
    def sandbox_id(self) -> str:
        return str(self._data.get("sandbox_id") or "")

    @property
    def browser_url(self) -> str:
        """``url`` with ``?sbx_token=``: sbxd answers it with a cookie and a redirect (browsers, curl -L)."""
        return f"{self.url}?{urlencode({'sbx_token': self.token})}"

    def __repr__(self) -> str:
        return f"<ServiceURL {self.url} expires_at={self.expires_at}>"

    def target(self, path: str) -> Tuple[str, str, int, str]:
        """(scheme, host, port, request target) for ``path`` under the path-form URL."""
        u = urlsplit(self.path_url)
        if "://" in path:
            raise ValueError("give a path under the service URL, not a full URL")
        base = u.path.rstrip("/")
        target = base + "/" + path.lstrip("/") if path else base + "/"
        port = u.port or (443 if u.scheme == "https" else 80)
        return u.scheme, u.hostname or "", port, target


def service_request_parts(token: str, body: Any, headers: Optional[Mapping[str, str]]) -> Tuple[Optional[bytes], Dict[str, str]]:
    hdrs: Dict[str, str] = {"User-Agent": USER_AGENT}
    data: Optional[bytes]
    if body is None:
        data = None
    elif isinstance(body, (bytes, bytearray, memoryview)):
        data = bytes(body)
    elif isinstance(body, str):
        data = body.encode("utf-8")
        hdrs["Content-Type"] = "text/plain; charset=utf-8"
    else:
        data = json.dumps(body).encode("utf-8")
        hdrs["Content-Type"] = "application/json"
    if headers:
        hdrs.update(headers)
    hdrs[SERVICE_TOKEN_HEADER] = token
    return data, hdrs
