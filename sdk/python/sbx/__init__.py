"""Python SDK for sbx, the self-hosted sandbox daemon.

>>> from sbx import SandboxClient
>>> with SandboxClient() as client, client.sandbox() as sb:   # doctest: +SKIP
...     print(sb.run("echo hi").stdout)

``SandboxClient`` is blocking; ``AsyncSandboxClient`` mirrors it for asyncio. Errors are in
:mod:`sbx.errors`, result and info types in :mod:`sbx.models`.
"""
from . import errors
from .agents import AgentEvent, AgentInfo, AgentSession, AsyncAgentSession
from .contexts import AsyncCodeContext, CellError, CodeContext, ContextInfo, Execution, ExecutionError
from .aio import AsyncCommandHandle, AsyncSandbox, AsyncSandboxClient, AsyncServiceURL
from ._tunnel import AsyncTunnel, Tunnel
from .client import CommandHandle, Sandbox, SandboxClient, ServiceURL
from .errors import (AuthenticationError, BusyError, CommandNotFoundError, CommandTimeoutError, ConflictError, ConnectionError,
                     CreationError, ExpiredError, NotFoundError, NotReadyError, NotRunningError, PermissionDeniedError,
                     QuotaExceededError, SandboxError, SnapshotCaptureError, SnapshotImportError, SnapshotPullError,
                     TimeoutError)
from .models import (ApiKey, Checkpoint, CommandInfo, EgressPolicy, ExecutionResult, FileInfo, Health, ListeningPort,
                     LogChunk, LogPage, Network, OutputChunk, Resources, SandboxMetrics, ServiceResponse, Snapshot,
                     SnapshotProgress, Volume, VolumeMount)

__version__ = "0.1.0"

__all__ = [
    "SandboxClient", "Sandbox", "CommandHandle", "AsyncSandboxClient", "AsyncSandbox", "AsyncCommandHandle",
    "ExecutionResult", "OutputChunk", "CommandInfo", "LogPage", "LogChunk", "FileInfo", "SandboxMetrics",
    "ApiKey", "Health", "Resources", "errors", "SandboxError", "NotFoundError", "ExpiredError", "ConflictError",
    "NotReadyError", "NotRunningError", "BusyError", "PermissionDeniedError", "AuthenticationError",
    "QuotaExceededError", "TimeoutError", "CommandTimeoutError", "ConnectionError", "CreationError",
    "SnapshotImportError", "SnapshotPullError", "SnapshotCaptureError", "ServiceURL", "AsyncServiceURL", "Tunnel",
    "AsyncTunnel", "ServiceResponse", "Snapshot", "SnapshotProgress", "Checkpoint", "Volume", "VolumeMount",
    "ListeningPort", "EgressPolicy", "Network", "AgentSession", "AsyncAgentSession", "AgentEvent", "AgentInfo",
    "CommandNotFoundError", "CodeContext", "AsyncCodeContext", "ContextInfo", "Execution", "ExecutionError",
    "CellError", "__version__",
]
