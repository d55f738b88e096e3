"""Exceptions raised by the sbx SDK.

Every error the daemon answers carries a stable ``code`` (docs/api.md, "Errors"); each code maps to one
class below, so callers catch what they mean (``except NotFoundError``) instead of matching strings. All
classes derive from :class:`SandboxError`, which keeps the ``code``, the HTTP ``status`` and the
daemon's ``message``.

A command that exits with a non-zero status is *not* an error: look at ``ExecutionResult.exit_code``.
A command killed by its own ``timeout`` raises :class:`CommandTimeoutError`, which carries the partial
result.
"""
from __future__ import annotations

import builtins
import json
import re
from typing import TYPE_CHECKING, Any, Dict, Optional, Type

if TYPE_CHECKING:  # pragma: no cover
    from .models import ExecutionResult

__all__ = [
    "SandboxError", "APIError", "InvalidArgumentError", "AuthenticationError", "PermissionDeniedError",
    "NotFoundError", "ExpiredError", "MethodNotAllowedError", "ConflictError", "NotReadyError",
    "NotRunningError", "BusyError", "TooLargeError", "ResourceExhaustedError", "QuotaExceededError",
    "InternalError", "UnimplementedError", "TimeoutError", "NoSpaceError", "CommandNotFoundError", "CreationError", "CommandTimeoutError",
    "ConnectionError", "StreamError", "SnapshotImportError", "SnapshotPullError", "SnapshotCaptureError",
    "error_from_response",
]


class SandboxError(Exception):
    """Base class of every error raised by the SDK.

    Attributes:
        message: the daemon's (or the SDK's) human-readable message.
        code: the daemon's stable error code (``"not_found"``, ``"quota_exceeded"``, ...), or an SDK code
            (``"unavailable"`` for connection failures, ``"command_timeout"``).
        status: the HTTP status of the answer, or ``None`` when there was no answer.
    """

    default_code: str = "unknown"

    def __init__(self, message: str, *, code: Optional[str] = None, status: Optional[int] = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.status = status

    def __str__(self) -> str:
        return f"{self.message} ({self.code})"

    def __reduce__(self) -> Any:  # picklable despite keyword-only arguments
        return (_rebuild, (type(self), self.message, self.code, self.status, dict(self.__dict__)))


def _rebuild(cls: Type[SandboxError], message: str, code: str, status: Optional[int], state: Dict[str, Any]) -> SandboxError:
    e = cls.__new__(cls)
    SandboxError.__init__(e, message, code=code, status=status)
    e.__dict__.update(state)
    return e


class APIError(SandboxError):
    """An error answer from the daemon that has no more specific class (e.g. an unknown code)."""


class InvalidArgumentError(APIError):
    """``400 invalid_argument`` / ``bad_request``: malformed request, wrong field type, bad path."""

    default_code = "invalid_argument"


class AuthenticationError(APIError):
    """``401 unauthenticated``: missing, wrong or revoked API key."""

    default_code = "unauthenticated"


class PermissionDeniedError(APIError):
    """``403 permission_denied``: e.g. writing a read-only path, or a tenant key on an admin route."""

    default_code = "permission_denied"


class NotFoundError(APIError):
    """``404 not_found``: unknown sandbox (or another tenant's), command, file or route."""

    default_code = "not_found"


class ExpiredError(NotFoundError):
    """``404 expired``: a finished command whose ``ttl_seconds`` ran out; its output is gone."""

    default_code = "expired"


class MethodNotAllowedError(APIError):
    """``405 method_not_allowed``."""

    default_code = "method_not_allowed"


class ConflictError(APIError):
    """``409 conflict``: a name (of a sandbox, snapshot, checkpoint or volume) or a command id already
    used with different parameters, a non-empty directory removed without ``recursive``, a sandbox still
    being created."""

    default_code = "conflict"


class NotReadyError(ConflictError):
    """The sandbox cannot serve the call in its current state. Base of :class:`NotRunningError` and
    :class:`BusyError`."""

    default_code = "not_ready"


class NotRunningError(NotReadyError):
    """``409 not_running``: the sandbox is stopped or failed; ``start()`` it first."""

    default_code = "not_running"


class BusyError(NotReadyError):
    """``409 busy``: a checkpoint, restore or fork of the sandbox is in progress (or a sandbox is being
    created from the checkpoint being deleted); try again once it ends. Also a volume deleted while a
    sandbox (running, paused or stopped) mounts it: delete those sandboxes first."""

    default_code = "busy"


class TooLargeError(APIError):
    """``413 too_large``: a body, header, JSON document or field over its limit."""

    default_code = "too_large"


class ResourceExhaustedError(APIError):
    """``429 resource_exhausted``: too many sandboxes, commands or streams on the daemon."""

    default_code = "resource_exhausted"


class QuotaExceededError(ResourceExhaustedError):
    """``429 quota_exceeded``: the API key's quota would be exceeded.

    Attributes:
        quota_type: ``"max_sandboxes"``, ``"max_memory_mb"`` or ``None`` when the message names neither.
    """

    default_code = "quota_exceeded"

    def __init__(self, message: str, *, code: Optional[str] = None, status: Optional[int] = None) -> None:
        super().__init__(message, code=code, status=status)
        m = re.search(r"max_sandboxes|max_memory_mb", message)
        self.quota_type: Optional[str] = m.group(0) if m else None


class InternalError(APIError):
    """``500 internal``: a daemon bug or an unexpected host failure (the daemon logs the details)."""

    default_code = "internal"


class UnimplementedError(APIError):
    """``501 unimplemented``: the feature is not available on this host."""

    default_code = "unimplemented"


class TimeoutError(APIError, builtins.TimeoutError):  # noqa: A001 - the issue's name
    """``504 timeout``: an internal step of the daemon took too long. Also an instance of the built-in
    :class:`TimeoutError`. Base of :class:`CommandTimeoutError`."""

    default_code = "timeout"

    def __init__(self, message: str, *, code: Optional[str] = None, status: Optional[int] = None) -> None:
        SandboxError.__init__(self, message, code=code, status=status)

    def __str__(self) -> str:
        return SandboxError.__str__(self)


class NoSpaceError(APIError):
    """``507 no_space``: the sandbox's disk (``disk_mb``) or the host's disk is full."""

    default_code = "no_space"


class CommandNotFoundError(APIError):
    """``422 command_not_found``: the program to run is not in the sandbox (an agent session's
    command, e.g. a snapshot without the ``claude`` CLI)."""

    default_code = "command_not_found"


class CreationError(APIError):
    """Creating (or starting) a sandbox failed on the daemon's side (``internal``, ``unimplemented``,
    ``timeout``, ``no_space``, or a sandbox deleted while it was being created). ``code`` is the
    daemon's code."""

    default_code = "creation_failed"


class SnapshotImportError(CreationError):
    """A snapshot that ended ``failed`` while waiting for it (``import_snapshot(..., wait=True)``,
    :meth:`~sbx.SandboxClient.wait_snapshot`): ``reason`` is the daemon's (``digest mismatch for layer
    ...``), ``snapshot`` the failed :class:`~sbx.models.Snapshot` (delete it to reuse the name). The base
    of :class:`SnapshotPullError` and :class:`SnapshotCaptureError`, so ``except SnapshotImportError``
    catches a failed snapshot whatever made it."""

    default_code = "snapshot_failed"

    def __init__(self, message: str, *, code: Optional[str] = None, status: Optional[int] = None,
                 reason: Optional[str] = None, snapshot: Any = None) -> None:
        super().__init__(message, code=code, status=status)
        self.reason = reason
        self.snapshot = snapshot


class SnapshotPullError(SnapshotImportError):
    """A registry pull that ended ``failed`` (``pull_snapshot(..., wait=True)``): ``reason`` is the
    daemon's (``the registry refused the credentials (401 Unauthorized)``, ``manifest `v9` not found
    ...``, ``GET https://...: <transport error>``)."""


class SnapshotCaptureError(SnapshotImportError):
    """A capture of a sandbox that ended ``failed`` (``Sandbox.capture_snapshot(..., wait=True)``):
    ``reason`` is the daemon's (a file owned outside the sandbox's id range, a name starting with
    ``.wh.``, over ``--max-layer-mb``)."""


class CommandTimeoutError(TimeoutError):
    """The command was killed because it ran longer than its ``timeout``.

    Attributes:
        result: the :class:`~sbx.models.ExecutionResult` with the output produced before the kill.
        command_id: the command's id.
    """

    default_code = "command_timeout"

    def __init__(self, message: str, *, result: "Optional[ExecutionResult]" = None,
                 code: Optional[str] = None, status: Optional[int] = None) -> None:
        super().__init__(message, code=code, status=status)
        self.result = result
        self.command_id: Optional[str] = result.command_id if result is not None else None


class ConnectionError(SandboxError, builtins.ConnectionError):  # noqa: A001 - the issue's name
    """The daemon could not be reached, or the connection broke and retrying did not help within the
    client's ``retry_timeout``. Also an instance of the built-in :class:`ConnectionError`."""

    default_code = "unavailable"

    def __init__(self, message: str, *, code: Optional[str] = None, status: Optional[int] = None) -> None:
        SandboxError.__init__(self, message, code=code, status=status)

    def __str__(self) -> str:
        return SandboxError.__str__(self)


class StreamError(SandboxError):
    """A command stream sent something the SDK cannot interpret (a protocol error, not a network one)."""

    default_code = "stream_error"


_BY_CODE: Dict[str, Type[APIError]] = {
    "invalid_argument": InvalidArgumentError,
    "bad_request": InvalidArgumentError,
    "headers_too_large": TooLargeError,
    "unauthenticated": AuthenticationError,
    "permission_denied": PermissionDeniedError,
    "not_found": NotFoundError,
    "expired": ExpiredError,
    "method_not_allowed": MethodNotAllowedError,
    "conflict": ConflictError,
    "not_running": NotRunningError,
    "busy": BusyError,
    "too_large": TooLargeError,
    "resource_exhausted": ResourceExhaustedError,
    "quota_exceeded": QuotaExceededError,
    "internal": InternalError,
    "unimplemented": UnimplementedError,
    "timeout": TimeoutError,
    "no_space": NoSpaceError,
    "command_not_found": CommandNotFoundError,
}

_BY_STATUS: Dict[int, Type[APIError]] = {
    400: InvalidArgumentError, 401: AuthenticationError, 403: PermissionDeniedError, 404: NotFoundError,
    405: MethodNotAllowedError, 409: ConflictError, 413: TooLargeError, 429: ResourceExhaustedError,
    500: InternalError, 501: UnimplementedError, 504: TimeoutError, 507: NoSpaceError,
}


def error_from_response(status: int, body: bytes) -> APIError:
    """Builds the exception for an error answer: the class comes from the JSON body's ``error.code``
    (falling back to the HTTP status when the body is not the daemon's JSON)."""
    code: Optional[str] = None
    message = ""
    try:
        doc = json.loads(body.decode("utf-8", "replace")) if body else None
        if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
            code = doc["error"].get("code")
            message = str(doc["error"].get("message") or "")
    except ValueError:
        pass
    if not message:
        text = body.decode("utf-8", "replace").strip()[:200] if body else ""
        message = text or f"HTTP {status}"
    cls = _BY_CODE.get(code or "") or _BY_STATUS.get(status) or APIError
    return cls(message, code=code or cls.default_code, status=status)
