/**
 * TypeScript SDK for sbx, the self-hosted sandbox daemon.
 *
 * ```ts
 * import { SandboxClient } from "@sbx/sdk";
 * const client = new SandboxClient();            // SBX_URL, SBX_API_KEY
 * await using sb = await client.createSandbox();  // deleted at scope end
 * const r = await sb.run("echo hi");              // {exitCode, stdout, stderr, ...}
 * ```
 */
export { SandboxClient } from "./client.js";
export type { SandboxClientOptions, ImageSource, ImportSnapshotOptions } from "./client.js";
export { Sandbox } from "./sandbox.js";
export type { RunOptions, FileData, ServiceUrl } from "./sandbox.js";
export { CommandHandle } from "./command.js";
export { AgentEvent, AgentSession } from "./agent.js";
export { CodeContext } from "./context.js";
export type {
  ContextInfo,
  ContextLanguage,
  CreateContextOptions,
  Execution,
  ExecutionError,
  MimeBundle,
  RunCodeOptions,
} from "./context.js";
export type { AgentInfo, AgentOptions } from "./agent.js";
export { Tunnel } from "./tunnel.js";
export type { TunnelOptions } from "./tunnel.js";
export type { HandleOptions } from "./command.js";
export type { StreamTransport } from "./stream.js";
export * from "./errors.js";
export type {
  ApiKeyInfo,
  CaptureSnapshotOptions,
  CheckpointInfo,
  CommandError,
  CommandInfo,
  CreateSandboxOptions,
  EgressPolicy,
  ExecutionResult,
  FileEntry,
  KeyQuotas,
  LifecycleSettings,
  ListeningPort,
  ListSandboxesOptions,
  LogPage,
  NetworkInfo,
  NetworkOptions,
  OutputChunk,
  PullSnapshotOptions,
  RegistryAuth,
  Resources,
  SandboxInfo,
  SandboxMetrics,
  SandboxState,
  SnapshotInfo,
  SnapshotProgress,
  StreamName,
  UpdateSandboxOptions,
  VolumeInfo,
  VolumeMount,
  VolumeMountInfo,
  WaitForSnapshotOptions,
} from "./types.js";
