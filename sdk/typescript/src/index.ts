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
export type { SandboxClientOptions } from "./client.js";
export { Sandbox } from "./sandbox.js";
export type { RunOptions, FileData } from "./sandbox.js";
export { CommandHandle } from "./command.js";
export type { HandleOptions } from "./command.js";
export type { StreamTransport } from "./stream.js";
export * from "./errors.js";
export type {
  ApiKeyInfo,
  CommandError,
  CommandInfo,
  CreateSandboxOptions,
  ExecutionResult,
  FileEntry,
  KeyQuotas,
  LifecycleSettings,
  ListSandboxesOptions,
  LogPage,
  OutputChunk,
  Resources,
  SandboxInfo,
  SandboxMetrics,
  SandboxState,
  StreamName,
  UpdateSandboxOptions,
} from "./types.js";
