/**
 * Error classes. Every error sbxd answers has a stable `code` (docs/api.md, "Errors"); each code maps to
 * one class below, so callers can `catch (e) { if (e instanceof NotFoundError) ... }` or test `e.code`.
 * A command that exits non-zero is not an error: only a command killed by its `timeout` raises
 * {@link CommandTimeoutError}.
 */
import type { ExecutionResult, SnapshotInfo } from "./types.js";

/** Base class of every error this SDK throws. */
export class SandboxError extends Error {
  /** The server's error code (`not_found`, `quota_exceeded`, ...), or a client-side one (`connection`, `timeout`). */
  readonly code: string;
  /** HTTP status of the answer, 0 when there was none. */
  readonly status: number;
  /** The parsed JSON error body, when there was one. */
  readonly body: unknown;

  constructor(message: string, code = "unknown", status = 0, body?: unknown, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.status = status;
    this.body = body;
  }
}

/** `400 invalid_argument` (and `400 bad_request`): malformed request, bad field, bad path, bad query value. */
export class InvalidArgumentError extends SandboxError {}
/** `401 unauthenticated`: missing, wrong or revoked API key. */
export class AuthenticationError extends SandboxError {}
/** `403 permission_denied`: e.g. writing a read-only path, or a tenant key on an admin-only route. */
export class PermissionDeniedError extends SandboxError {}
/** `404 not_found`: unknown sandbox (or another tenant's), command, file or route. */
export class NotFoundError extends SandboxError {}
/** `404 expired`: a finished command whose `ttl_seconds` ran out; its status and output are gone. */
export class ExpiredError extends NotFoundError {}
/** `405 method_not_allowed`. */
export class MethodNotAllowedError extends SandboxError {}
/**
 * `409 conflict`: a name (sandbox, snapshot, checkpoint, volume) or command id used with different parameters,
 * sandbox still being created, non-empty directory.
 */
export class ConflictError extends SandboxError {}
/** `409 not_running`: the sandbox is stopped or failed; nothing can run in it. */
export class NotRunningError extends ConflictError {}
/**
 * `409 busy`: a checkpoint, restore or fork of the sandbox is in progress (or a sandbox is being created
 * from the checkpoint being deleted); try again once it ends. Also a volume deleted while a sandbox
 * (running, paused or stopped) mounts it: delete those sandboxes first.
 */
export class BusyError extends ConflictError {}
/** `413 too_large`: body, header, JSON document or field over its limit. */
export class TooLargeError extends SandboxError {}
/** `429 resource_exhausted`: too many sandboxes, commands or streams on the daemon. */
export class ResourceExhaustedError extends SandboxError {}
/** `429 quota_exceeded`: the API key's quota (`max_sandboxes`, `max_memory_mb`) would be exceeded. */
export class QuotaExceededError extends SandboxError {}
/** `500 internal`. */
export class InternalError extends SandboxError {}
/** `501 unimplemented`: feature not available on this host. */
export class UnimplementedError extends SandboxError {}
/** `504 timeout` from the server, or a request that took longer than the client's request timeout. */
export class TimeoutError extends SandboxError {}
/** `507 no_space`: the sandbox's disk (or the host's) is full. */
export class NoSpaceError extends SandboxError {}
/** `422 command_not_found`: the program to run is not in the sandbox (an agent session's command). */
export class CommandNotFoundError extends SandboxError {}
/** `416`: a `read` range outside the file. */
export class RangeNotSatisfiableError extends SandboxError {}

/** The daemon could not be reached (refused, reset, DNS) and retrying did not help. */
export class ConnectionError extends SandboxError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, "connection", 0, undefined, options);
  }
}

/** A command was killed because it ran longer than its `timeout`. `result` holds its output so far. */
export class CommandTimeoutError extends SandboxError {
  readonly result: ExecutionResult;
  constructor(result: ExecutionResult) {
    super(
      result.error?.message ?? `command ${result.commandId} timed out`,
      "command_timeout",
      0,
      undefined,
    );
    this.result = result;
  }
}

/**
 * A snapshot ended `failed` while it was waited for: an import (`importSnapshot`), a registry pull
 * (`pullSnapshot`), a capture (`sb.captureSnapshot`) or `waitForSnapshot`. `reason` is sbxd's why;
 * `snapshot.source` (`"image"`, `"registry"`, `"capture"`) says what made it. The failed snapshot keeps
 * its name until deleted.
 */
export class SnapshotFailedError extends SandboxError {
  readonly snapshot: SnapshotInfo;
  readonly reason: string;
  constructor(snapshot: SnapshotInfo) {
    const reason = snapshot.reason ?? "unknown reason";
    const verb = snapshot.source === "registry" ? "pull" : snapshot.source === "capture" ? "capture" : "import";
    super(`snapshot ${snapshot.name ?? snapshot.id} failed to ${verb}: ${reason}`, "snapshot_failed", 0, undefined);
    this.snapshot = snapshot;
    this.reason = reason;
  }
}

const BY_CODE: Record<string, new (m: string, c: string, s: number, b?: unknown) => SandboxError> = {
  invalid_argument: InvalidArgumentError,
  bad_request: InvalidArgumentError,
  unauthenticated: AuthenticationError,
  permission_denied: PermissionDeniedError,
  not_found: NotFoundError,
  expired: ExpiredError,
  method_not_allowed: MethodNotAllowedError,
  conflict: ConflictError,
  not_running: NotRunningError,
  busy: BusyError,
  too_large: TooLargeError,
  resource_exhausted: ResourceExhaustedError,
  quota_exceeded: QuotaExceededError,
  internal: InternalError,
  unimplemented: UnimplementedError,
  timeout: TimeoutError,
  no_space: NoSpaceError,
  command_not_found: CommandNotFoundError,
};

const BY_STATUS: Record<number, new (m: string, c: string, s: number, b?: unknown) => SandboxError> = {
  400: InvalidArgumentError,
  401: AuthenticationError,
  403: PermissionDeniedError,
  404: NotFoundError,
  405: MethodNotAllowedError,
  409: ConflictError,
  413: TooLargeError,
  416: RangeNotSatisfiableError,
  429: ResourceExhaustedError,
  500: InternalError,
  501: UnimplementedError,
  504: TimeoutError,
  507: NoSpaceError,
};

/** Builds the error for a non-2xx answer from its status and (raw) body. */
export function errorFromResponse(status: number, bodyText: string): SandboxError {
  let body: unknown = undefined;
  let code = "";
  let message = "";
  try {
    body = JSON.parse(bodyText);
    const e = (body as { error?: { code?: unknown; message?: unknown } } | null)?.error;
    if (e && typeof e.code === "string") code = e.code;
    if (e && typeof e.message === "string") message = e.message;
  } catch {
    body = bodyText || undefined;
  }
  if (!code) code = status === 416 ? "range_not_satisfiable" : `http_${status}`;
  if (!message) message = `HTTP ${status}${bodyText ? `: ${bodyText.slice(0, 200)}` : ""}`;
  const Cls = BY_CODE[code] ?? BY_STATUS[status] ?? SandboxError;
  return new Cls(message, code, status, body);
}
