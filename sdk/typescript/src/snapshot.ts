/** @internal Waiting for a snapshot to be built (import, pull, capture): shared by the client and Sandbox. */
import { SnapshotFailedError, TimeoutError } from "./errors.js";
import type { Transport } from "./http.js";
import { toSnapshotInfo } from "./types.js";
import type { SnapshotInfo, SnapshotProgress, WaitForSnapshotOptions } from "./types.js";

/** @internal A snapshot by id or name. */
export async function getSnapshot(t: Transport, idOrName: string): Promise<SnapshotInfo> {
  return toSnapshotInfo(await t.json("GET", `/v1/snapshots/${encodeURIComponent(idOrName)}`));
}

/**
 * @internal Polls until the snapshot is `ready` (resolves) or `failed` (rejects with
 * {@link SnapshotFailedError}), reporting a pull's progress when it changes. `first` is a snapshot just
 * answered by the request that started the build: it counts as the first poll.
 */
export async function waitForSnapshot(
  t: Transport,
  first: string | SnapshotInfo,
  options: WaitForSnapshotOptions = {},
): Promise<SnapshotInfo> {
  const interval = options.pollInterval ?? 200;
  const timeout = options.timeout ?? 600_000;
  const deadline = Date.now() + timeout;
  const ref = typeof first === "string" ? first : first.id;
  let snap = typeof first === "string" ? await getSnapshot(t, first) : first;
  let last: SnapshotProgress | null = null;
  for (;;) {
    const p = snap.progress;
    if (options.onProgress && p && (!last || p.bytesDone !== last.bytesDone || p.bytesTotal !== last.bytesTotal)) {
      last = p;
      await options.onProgress(p, snap);
    }
    if (snap.status === "ready") return snap;
    if (snap.status === "failed") throw new SnapshotFailedError(snap);
    if (timeout > 0 && Date.now() > deadline)
      throw new TimeoutError(`snapshot ${snap.name ?? ref} still ${snap.status} after ${timeout} ms`, "timeout", 0, undefined);
    await new Promise<void>((r) => setTimeout(r, interval));
    snap = await getSnapshot(t, snap.id || ref);
  }
}
