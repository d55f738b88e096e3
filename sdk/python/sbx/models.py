"""Typed views of the daemon's JSON objects. Each keeps the full object in ``raw`` so fields added to
the API later are reachable before the SDK names them."""
from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

__all__ = [
    "Resources", "ExecutionResult", "OutputChunk", "CommandError", "CommandInfo", "LogChunk", "LogPage",
    "FileInfo", "SandboxMetrics", "ApiKey", "Health", "Snapshot", "SnapshotProgress", "Checkpoint", "Volume",
    "VolumeMount", "ListeningPort", "ServiceResponse", "EgressPolicy", "Network",
]


def _opt_int(v: Any) -> Optional[int]:
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


@dataclass(frozen=True)
class Resources:
    """A sandbox's resource limits."""

    cpus: float
    memory_mb: int
    pids: int
    disk_mb: int

    @classmethod
    def from_json(cls, d: Optional[Dict[str, Any]]) -> "Resources":
        d = d or {}
        return cls(float(d.get("cpus") or 0), int(d.get("memory_mb") or 0), int(d.get("pids") or 0),
                   int(d.get("disk_mb") or 0))


@dataclass(frozen=True)
class CommandError:
    """Why the daemon ended a command: ``code`` is ``timeout``, ``killed``, ``idle_timeout``,
    ``disconnected`` or ``command_not_found``."""

    code: str
    message: str

    @classmethod
    def from_json(cls, d: Any) -> "Optional[CommandError]":
        if not isinstance(d, dict):
            return None
        return cls(str(d.get("code") or ""), str(d.get("message") or ""))


@dataclass(frozen=True)
class CommandInfo:
    """A command's status (docs/api.md, "Command object")."""

    id: str
    sandbox_id: str
    command: List[str]
    state: str
    pid: Optional[int]
    exit_code: Optional[int]
    signal: Optional[int]
    error: Optional[CommandError]
    stdout_bytes: int
    stderr_bytes: int
    log_bytes: int
    started_at: Optional[str]
    finished_at: Optional[str]
    expires_at: Optional[str]
    attached: int
    raw: Dict[str, Any] = field(repr=False, compare=False)

    @property
    def pty(self) -> bool:
        """Whether the command runs on a pseudo-terminal (``run(..., pty=True)``, ``shell()``)."""
        return bool(self.raw.get("pty"))

    @property
    def finished(self) -> bool:
        """Whether the process has exited."""
        return self.state == "exited"

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "CommandInfo":
        return cls(
            id=str(d.get("id", "")), sandbox_id=str(d.get("sandbox_id", "")), command=list(d.get("command") or []),
            state=str(d.get("state", "")), pid=_opt_int(d.get("pid")), exit_code=_opt_int(d.get("exit_code")),
            signal=_opt_int(d.get("signal")), error=CommandError.from_json(d.get("error")),
            stdout_bytes=int(d.get("stdout_bytes") or 0), stderr_bytes=int(d.get("stderr_bytes") or 0),
            log_bytes=int(d.get("log_bytes") or 0), started_at=d.get("started_at"),
            finished_at=d.get("finished_at"), expires_at=d.get("expires_at"), attached=int(d.get("attached") or 0),
            raw=d)


@dataclass(frozen=True)
class ExecutionResult:
    """The outcome of a finished command. A non-zero ``exit_code`` is not an exception.

    ``stdout``/``stderr`` are the output decoded as UTF-8 (invalid bytes replaced); ``stdout_raw`` and
    ``stderr_raw`` are the exact bytes. When the result comes from a handle that started reading at
    an offset (``reconnect(..., stdout_offset=N)``), they hold the output from that offset on.
    """

    command_id: str
    exit_code: int
    stdout: str
    stderr: str
    stdout_raw: bytes = field(repr=False)
    stderr_raw: bytes = field(repr=False)
    signal: Optional[int] = None
    error: Optional[CommandError] = None
    info: Optional[CommandInfo] = field(default=None, repr=False, compare=False)

    @property
    def success(self) -> bool:
        """``exit_code == 0``."""
        return self.exit_code == 0

    @property
    def output(self) -> str:
        """stdout followed by stderr."""
        return self.stdout + self.stderr

    @property
    def timed_out(self) -> bool:
        """Whether the daemon killed the command for running past its ``timeout``."""
        return self.error is not None and self.error.code == "timeout"


@dataclass(frozen=True)
class OutputChunk:
    """A piece of a command's output, in the order the daemon read it.

    Attributes:
        stream: ``"stdout"`` or ``"stderr"``.
        data: the bytes decoded as UTF-8; a multi-byte character split across chunks is completed in
            the next chunk of the same stream, so joining ``data`` gives valid text.
        offset: byte offset of the chunk's first byte within its stream.
        raw: the exact bytes.
    """

    stream: str
    data: str
    offset: int
    raw: bytes = field(repr=False)


@dataclass(frozen=True)
class LogChunk:
    """A run of one stream in a command's combined log (``logs`` route)."""

    stream: str
    offset: int
    cursor: int
    raw: bytes = field(repr=False)

    @property
    def data(self) -> str:
        return self.raw.decode("utf-8", "replace")

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "LogChunk":
        data = d.get("data") or ""
        raw = base64.b64decode(data) if d.get("encoding") == "base64" else data.encode("utf-8")
        return cls(str(d.get("stream", "")), int(d.get("offset") or 0), int(d.get("cursor") or 0), raw)


@dataclass(frozen=True)
class LogPage:
    """One page of a command's combined log. Ask again with ``cursor=next_cursor`` until ``eof``."""

    cursor: int
    next_cursor: int
    log_bytes: int
    finished: bool
    eof: bool
    chunks: List[LogChunk]
    command: Optional[CommandInfo]

    @property
    def text(self) -> str:
        """The page's bytes, both streams interleaved, decoded as UTF-8."""
        return b"".join(c.raw for c in self.chunks).decode("utf-8", "replace")

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "LogPage":
        cmd = d.get("command")
        return cls(int(d.get("cursor") or 0), int(d.get("next_cursor") or 0), int(d.get("log_bytes") or 0),
                   bool(d.get("finished")), bool(d.get("eof")), [LogChunk.from_json(c) for c in d.get("chunks") or []],
                   CommandInfo.from_json(cmd) if isinstance(cmd, dict) else None)


@dataclass(frozen=True)
class FileInfo:
    """A file-system entry inside a sandbox. ``type`` is ``file``, ``dir``, ``symlink`` or ``other``;
    ``mode`` is octal text (``"0644"``)."""

    name: str
    path: str
    type: str
    size: int
    mode: str
    mtime: Optional[str]
    link_target: Optional[str]

    @property
    def is_dir(self) -> bool:
        return self.type == "dir"

    @property
    def is_file(self) -> bool:
        return self.type == "file"

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "FileInfo":
        return cls(str(d.get("name", "")), str(d.get("path", "")), str(d.get("type", "")), int(d.get("size") or 0),
                   str(d.get("mode", "")), d.get("mtime"), d.get("link_target"))


@dataclass(frozen=True)
class SandboxMetrics:
    """A sandbox's resource usage, read from its cgroups and disk at the time of the call."""

    state: str
    cpu_usage_seconds: float
    memory_bytes: int
    memory_peak_bytes: int
    pids: int
    disk_used_bytes: Optional[int]
    disk_free_bytes: Optional[int]
    io_read_bytes: Optional[int]
    io_write_bytes: Optional[int]
    limits: Dict[str, Any]
    raw: Dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "SandboxMetrics":
        return cls(str(d.get("state", "")), float(d.get("cpu_usage_seconds") or 0), int(d.get("memory_bytes") or 0),
                   int(d.get("memory_peak_bytes") or 0), int(d.get("pids") or 0), _opt_int(d.get("disk_used_bytes")),
                   _opt_int(d.get("disk_free_bytes")), _opt_int(d.get("io_read_bytes")),
                   _opt_int(d.get("io_write_bytes")), dict(d.get("limits") or {}), d)


@dataclass(frozen=True)
class ApiKey:
    """A tenant API key. ``key`` (the secret, ``sbxk_...``) is set only in the answer of
    ``create_key``: the daemon stores its hash only."""

    id: str
    name: str
    created_at: Optional[str]
    max_sandboxes: int
    max_memory_mb: int
    key: Optional[str] = field(default=None, repr=False)
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "ApiKey":
        q = d.get("quotas") or {}
        return cls(str(d.get("id", "")), str(d.get("name") or ""), d.get("created_at"),
                   int(q.get("max_sandboxes") or 0), int(q.get("max_memory_mb") or 0), d.get("key"), d)


@dataclass(frozen=True)
class Health:
    """``GET /healthz``."""

    status: str
    version: str


@dataclass(frozen=True)
class SnapshotProgress:
    """How far a registry pull's download is: ``bytes_done`` of ``bytes_total`` (the manifest, the config
    and the layers not already stored; 0 until the manifest is read)."""

    bytes_done: int
    bytes_total: int

    @property
    def fraction(self) -> Optional[float]:
        """``bytes_done / bytes_total`` (0.0-1.0), None while the total is not known."""
        return min(1.0, self.bytes_done / self.bytes_total) if self.bytes_total > 0 else None

    @classmethod
    def from_json(cls, d: Any) -> Optional["SnapshotProgress"]:
        if not isinstance(d, dict):
            return None
        return cls(int(d.get("bytes_done") or 0), int(d.get("bytes_total") or 0))


@dataclass(frozen=True)
class Snapshot:
    """A snapshot: what a sandbox's root file system is made from: ``host``, an imported image tarball,
    a registry pull or a capture of a sandbox.

    ``source`` is ``host``, ``image`` (an uploaded tarball), ``registry`` (a pull) or ``capture``.
    ``status`` is ``building`` while an import, pull or capture runs, then ``ready`` or ``failed`` (with
    ``reason``). ``layers`` are the layers' diff_ids, bottom first; ``config`` keeps the image config's
    ``Env``, ``WorkingDir``, ``User``, ``Entrypoint`` and ``Cmd``. ``base`` is ``host`` for a capture of a
    host-based sandbox (its layers go over the host's system directories), else ``image``; ``owner`` is
    the tenant key that captured it (None: global). ``progress`` is set while a pull is building."""

    id: str
    name: str
    source: str
    status: str
    reason: Optional[str]
    layers: List[str]
    size_bytes: int
    created_at: Optional[str]
    config: Dict[str, Any] = field(default_factory=dict)
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    base: Optional[str] = None
    owner: Optional[str] = None
    progress: Optional[SnapshotProgress] = None

    @property
    def ready(self) -> bool:
        return self.status == "ready"

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    @property
    def building(self) -> bool:
        return self.status == "building"

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "Snapshot":
        return cls(str(d.get("id", "")), str(d.get("name") or ""), str(d.get("source") or ""),
                   str(d.get("status") or ""), d.get("reason"), [str(x) for x in d.get("layers") or []],
                   int(d.get("size_bytes") or 0), d.get("created_at"), dict(d.get("config") or {}), d,
                   base=d.get("base"), owner=d.get("owner"), progress=SnapshotProgress.from_json(d.get("progress")))


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint of a sandbox (``Sandbox.checkpoint()``): a copy of everything the sandbox wrote (its
    disk over ``snapshot``), without processes or memory. ``name`` is unique per sandbox (the ``id``
    when none was given); ``size_bytes`` is what the copy holds on the host, ``disk_mb`` the disk's size.
    A checkpoint goes with its sandbox when that is deleted."""

    id: str
    sandbox_id: str
    name: str
    snapshot: str
    disk_mb: int
    size_bytes: int
    created_at: Optional[str]
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "Checkpoint":
        cid = str(d.get("id", ""))
        return cls(cid, str(d.get("sandbox_id") or ""), str(d.get("name") or cid), str(d.get("snapshot") or ""),
                   int(d.get("disk_mb") or 0), int(d.get("size_bytes") or 0), d.get("created_at"), d)


@dataclass(frozen=True)
class Volume:
    """A named volume (``SandboxClient.create_volume()``): a sized disk of its own that outlives
    sandboxes and can be mounted into several at once (``create_sandbox(volumes=...)``). ``name`` is
    unique per API key; ``used_bytes`` is what its files take now (None when sbxd could not tell)."""

    id: str
    name: str
    size_mb: int
    used_bytes: Optional[int]
    created_at: Optional[str]
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "Volume":
        return cls(str(d.get("id", "")), str(d.get("name") or ""), int(d.get("size_mb") or 0),
                   _opt_int(d.get("used_bytes")), d.get("created_at"), d)


@dataclass(frozen=True)
class VolumeMount:
    """A volume mounted in a sandbox at ``path`` (absolute), read-only when ``read_only``.

    Given to ``create_sandbox(volumes=[...])``, ``volume`` is the volume's name or id (a
    :class:`Volume` works too); in ``Sandbox.volumes`` it is the id (``"vol_..."``)."""

    volume: str
    path: str
    read_only: bool = False

    def to_json(self) -> Dict[str, Any]:
        v: Any = self.volume
        return {"volume": v.id if isinstance(v, Volume) else str(v), "path": self.path,
                "read_only": bool(self.read_only)}

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "VolumeMount":
        return cls(str(d.get("volume") or ""), str(d.get("path") or ""), bool(d.get("read_only")))


def _entries(v: Any, what: str) -> Tuple[str, ...]:
    if isinstance(v, (str, bytes)) or not isinstance(v, (Sequence, set, frozenset)):
        raise ValueError(f"EgressPolicy.{what} is a list of strings (addresses, CIDRs, domains), not {v!r}")
    out = tuple(v)
    for e in out:
        if not isinstance(e, str):
            raise ValueError(f"EgressPolicy.{what} entries are strings, not {e!r}")
    return out


@dataclass(frozen=True)
class EgressPolicy:
    """What a sandbox with network mode ``egress`` may connect to (docs/api.md, "Network").

    Attributes:
        default: ``"deny"`` (the default) or ``"allow"``: what happens to a destination neither list
            names. ``"allow"`` means the internet: private ranges (10/8, 172.16/12, 192.168/16, ...)
            still need an allow entry.
        allow: IPv4 addresses, CIDRs (``"140.82.112.0/20"``), domains (``"pypi.org"``) and wildcards
            (``"*.pythonhosted.org"``: names below it, not the name itself); at most 256.
        deny: the same, checked first: a deny entry always wins.

    Domains are enforced through the sandbox's DNS: a name no entry allows does not resolve when the
    default is deny. Lists are kept as tuples; any sequence of strings is accepted.
    """

    default: str = "deny"
    allow: Sequence[str] = ()
    deny: Sequence[str] = ()

    def __post_init__(self) -> None:
        if self.default not in ("allow", "deny"):
            raise ValueError(f"EgressPolicy.default is 'allow' or 'deny', not {self.default!r}")
        object.__setattr__(self, "allow", _entries(self.allow, "allow"))
        object.__setattr__(self, "deny", _entries(self.deny, "deny"))

    def to_json(self) -> Dict[str, Any]:
        return {"default": self.default, "allow": list(self.allow), "deny": list(self.deny)}

    @classmethod
    def of(cls, policy: "EgressPolicyLike") -> "EgressPolicy":
        """``policy`` itself, or one made from a dict in the API's form (``{"default", "allow", "deny"}``,
        each optional)."""
        if isinstance(policy, EgressPolicy):
            return policy
        if isinstance(policy, Mapping):
            unknown = set(policy) - {"default", "allow", "deny"}
            if unknown:
                raise ValueError(f"an egress policy has 'default', 'allow' and 'deny', not {sorted(unknown)}")
            return cls(policy.get("default", "deny"), policy.get("allow", ()), policy.get("deny", ()))
        raise ValueError(f"an egress policy is an EgressPolicy or a dict, not {policy!r}")

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "EgressPolicy":
        default = d.get("default") or "deny"
        return cls(default if default in ("allow", "deny") else "deny", [str(x) for x in d.get("allow") or []],
                   [str(x) for x in d.get("deny") or []])


# An egress policy as the SDK takes it: an EgressPolicy, or a dict in the API's form.
EgressPolicyLike = Union[EgressPolicy, Mapping[str, Any]]


@dataclass(frozen=True)
class Network:
    """A sandbox's network (``create_sandbox(network=...)``, :attr:`Sandbox.network`).

    ``mode`` is ``"none"`` (the default: loopback only) or ``"egress"`` (an ``eth0`` with a private
    address, ``address``, and outbound connections as ``egress`` allows; ``egress`` None with mode
    egress at create means the default policy: deny everything). The mode is fixed at create; the
    policy can change on a live sandbox (``sb.update(egress=...)``). ``address`` is set by sbxd while
    the sandbox runs and ignored when creating."""

    mode: str = "none"
    egress: Optional[EgressPolicy] = None
    address: Optional[str] = None

    def __post_init__(self) -> None:
        if self.egress is not None:
            object.__setattr__(self, "egress", EgressPolicy.of(self.egress))

    def to_json(self) -> Dict[str, Any]:
        """The create body's ``network`` field (``address`` is sbxd's to choose)."""
        d: Dict[str, Any] = {"mode": self.mode}
        if self.egress is not None:
            d["egress"] = self.egress.to_json()
        return d

    @classmethod
    def from_json(cls, d: Optional[Mapping[str, Any]]) -> "Network":
        d = d or {}
        e, a = d.get("egress"), d.get("address")
        return cls(str(d.get("mode") or "none"), EgressPolicy.from_json(e) if isinstance(e, Mapping) else None,
                   a if isinstance(a, str) else None)


@dataclass(frozen=True)
class ListeningPort:
    """A TCP socket listening inside a sandbox (``Sandbox.ports()``); ``address`` is the bound address
    (``0.0.0.0`` or ``::`` for all)."""

    port: int
    address: str

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "ListeningPort":
        return cls(int(d.get("port") or 0), str(d.get("address") or ""))


@dataclass(frozen=True)
class ServiceResponse:
    """An answer from a sandbox's service through its service URL (``ServiceURL.get``/``post``).
    ``headers`` has lower-case names. A status >= 400 is not raised; see :meth:`raise_for_status`."""

    status: int
    headers: Dict[str, str]
    body: bytes = field(repr=False)

    @property
    def ok(self) -> bool:
        return self.status < 400

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        import json as _json
        return _json.loads(self.body)

    def raise_for_status(self) -> "ServiceResponse":
        """Raises the mapped :class:`~sbx.errors.SandboxError` for a status >= 400 (sbxd's own errors,
        e.g. ``401`` for a bad token or ``502 port_closed``, keep their codes)."""
        if self.status >= 400:
            from .errors import error_from_response
            raise error_from_response(self.status, self.body)
        return self
