// The sandbox list (live: polled, with CPU and memory from each running sandbox's metrics), its filters
// and lifecycle actions, and the create form.
import { call, enc, Metrics, q, Sandbox } from "./api";
import { act, age, bytes, clear, dialog, field, h, notice, showError, stateBadge, until, confirmDialog } from "./ui";

const POLL_MS = 3000;
const STATES = ["", "creating", "running", "paused", "stopped", "failed", "deleted"];

interface CpuSample {
  t: number;
  cpu: number;
}
const cpuSamples = new Map<string, CpuSample>();

export async function lifecycle(sb: Sandbox, action: string, btn: HTMLButtonElement | null, done: () => void) {
  await act(btn, async () => {
    if (action === "delete") {
      if (!(await confirmDialog(`Delete sandbox ${sb.name ?? sb.id} and all its files?`))) return;
      await call("DELETE", `/v1/sandboxes/${enc(sb.id)}`);
      notice(`deleted ${sb.id}`);
    } else if (action === "renew") {
      const secs = h("input", {
        name: "seconds",
        type: "number",
        min: "1",
        value: String(sb.timeout_seconds || 3600),
        required: true,
      });
      const v = await dialog(`Extend the lifetime of ${sb.name ?? sb.id}`, [field("Seconds from now", secs)], "Extend");
      if (!v) return;
      await call("POST", `/v1/sandboxes/${enc(sb.id)}/renew`, { timeout_seconds: Number(v.get("seconds")) });
      notice("lifetime extended");
    } else {
      await call("POST", `/v1/sandboxes/${enc(sb.id)}/${action}`);
    }
    done();
  });
}

export function actionButtons(sb: Sandbox, done: () => void): HTMLElement {
  const acts: [string, string][] = [];
  if (sb.state === "running") acts.push(["pause", "Pause"], ["stop", "Stop"]);
  if (sb.state === "paused") acts.push(["resume", "Resume"], ["stop", "Stop"]);
  if (sb.state === "stopped" || sb.state === "failed") acts.push(["start", "Start"]);
  if (sb.state !== "deleted") acts.push(["renew", "Extend TTL"], ["delete", "Delete"]);
  return h(
    "span",
    { class: "actions" },
    acts.map(([a, label]) => {
      const b: HTMLButtonElement = h(
        "button",
        { class: a === "delete" ? "danger small" : "secondary small", "data-action": a },
        label,
      );
      b.addEventListener("click", (e) => {
        e.preventDefault();
        e.stopPropagation();
        lifecycle(sb, a, b, done);
      });
      return b;
    }),
  );
}

export function mountList(root: HTMLElement): () => void {
  const state = h("select", { "aria-label": "state" }, STATES.map((s) => h("option", { value: s }, s || "any state")));
  const meta = h("input", { placeholder: "metadata key=value, …", "aria-label": "metadata filter" });
  const text = h("input", { placeholder: "filter by id or name", "aria-label": "text filter", type: "search" });
  const body = h("tbody");
  const empty = h("p", { class: "muted", hidden: true }, "No sandboxes.");
  const createBtn = h("button", { "data-testid": "create" }, "New sandbox");
  root.append(
    h("div", { class: "row wrap toolbar" }, h("h2", null, "Sandboxes"), h("span", { class: "grow" }), createBtn),
    h("div", { class: "row wrap filters" }, state, meta, text),
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { class: "list", "data-testid": "sandbox-table" },
        h(
          "thead",
          null,
          h(
            "tr",
            null,
            ["Sandbox", "State", "Snapshot", "Age", "CPU", "Memory", "Metadata", ""].map((c, i) =>
              h("th", { class: i >= 2 && i <= 6 ? "opt" : undefined }, c),
            ),
          ),
        ),
        body,
      ),
    ),
    empty,
  );
  let timer: number | undefined;
  let stopped = false;
  let errShown = false;

  const refresh = async () => {
    window.clearTimeout(timer);
    const params: Record<string, string> = { state: state.value };
    for (const part of meta.value.split(",")) {
      const [k, ...v] = part.trim().split("=");
      if (k && v.length) params["metadata." + k.trim()] = v.join("=").trim();
    }
    try {
      const r = await call<{ sandboxes: Sandbox[] }>("GET", "/v1/sandboxes" + q(params));
      const needle = text.value.trim().toLowerCase();
      const list = r.sandboxes.filter(
        (s) => !needle || s.id.toLowerCase().includes(needle) || (s.name ?? "").toLowerCase().includes(needle),
      );
      const metrics = await Promise.all(
        list.map((s) =>
          s.state === "running"
            ? call<Metrics>("GET", `/v1/sandboxes/${enc(s.id)}/metrics`).catch(() => null)
            : Promise.resolve(null),
        ),
      );
      if (stopped) return;
      errShown = false;
      clear(body, list.map((s, i) => row(s, metrics[i])));
      empty.hidden = list.length > 0;
    } catch (e) {
      if (!errShown) showError(e);
      errShown = true;
    }
    if (!stopped) timer = window.setTimeout(refresh, POLL_MS);
  };

  const row = (s: Sandbox, m: Metrics | null) => {
    let cpu = "";
    let mem = "";
    if (m) {
      const now = performance.now();
      const prev = cpuSamples.get(s.id);
      cpuSamples.set(s.id, { t: now, cpu: m.cpu_usage_seconds });
      if (prev && now > prev.t) cpu = `${(((m.cpu_usage_seconds - prev.cpu) * 1000 * 100) / (now - prev.t)).toFixed(1)}%`;
      mem = `${bytes(m.memory_bytes)} / ${bytes(m.limits.memory_bytes)}`;
    }
    const link = `#/sandboxes/${enc(s.id)}`;
    const tr = h(
      "tr",
      { "data-id": s.id, "data-state": s.state },
      h(
        "td",
        null,
        h("a", { href: link }, s.name ?? s.id),
        s.name && s.name !== s.id ? h("div", { class: "muted mono" }, s.id) : null,
      ),
      h("td", null, stateBadge(s.state)),
      h("td", { class: "opt mono" }, s.snapshot),
      h("td", { class: "opt" }, age(s.created_at)),
      h("td", { class: "opt num" }, cpu || (s.state === "running" ? "…" : "")),
      h("td", { class: "opt num" }, mem),
      h(
        "td",
        { class: "opt" },
        Object.entries(s.metadata ?? {}).map(([k, v]) => h("span", { class: "tag" }, `${k}=${v}`)),
      ),
      h("td", { class: "right" }, actionButtons(s, refresh)),
    );
    tr.addEventListener("click", (e) => {
      if ((e.target as HTMLElement).closest("a,button")) return;
      location.hash = link;
    });
    return tr;
  };

  for (const el of [state, meta, text]) el.addEventListener("change", refresh);
  text.addEventListener("input", refresh);
  createBtn.addEventListener("click", () => createDialog(refresh));
  refresh();
  return () => {
    stopped = true;
    window.clearTimeout(timer);
  };
}

async function createDialog(done: () => void): Promise<void> {
  let snaps: { id: string; name: string; status?: string }[] = [];
  try {
    snaps = (await call<{ snapshots: any[] }>("GET", "/v1/snapshots")).snapshots;
  } catch (e) {
    showError(e);
  }
  const snapshot = h(
    "select",
    { name: "snapshot" },
    snaps
      .filter((s) => (s.status ?? "ready") === "ready")
      .map((s) => h("option", { value: s.name ?? s.id }, s.name ?? s.id)),
  );
  const network = h(
    "select",
    { name: "network" },
    h("option", { value: "none" }, "none (loopback only)"),
    h("option", { value: "egress" }, "egress (allow list)"),
  );
  const allow = h("input", { name: "allow", placeholder: "pypi.org, *.pythonhosted.org, 140.82.112.0/20" });
  const allowField = field("Allow (egress)", allow);
  allowField.hidden = true;
  network.addEventListener("change", () => (allowField.hidden = network.value !== "egress"));
  const v = await dialog(
    "New sandbox",
    [
      field("Snapshot", snapshot),
      field("Name (optional)", h("input", { name: "name", pattern: "[A-Za-z0-9_.\\-]{1,64}" })),
      h(
        "div",
        { class: "row wrap" },
        field("CPUs", h("input", { name: "cpus", type: "number", step: "0.01", min: "0.01", value: "1" })),
        field("Memory MiB", h("input", { name: "memory_mb", type: "number", min: "16", value: "512" })),
        field("Disk MiB", h("input", { name: "disk_mb", type: "number", min: "64", placeholder: "10240" })),
      ),
      field("Network", network),
      allowField,
      field("Lifetime seconds (0 = none)", h("input", { name: "timeout_seconds", type: "number", min: "0", value: "0" })),
      field("Metadata (key=value, …)", h("input", { name: "metadata", placeholder: "owner=me" })),
    ],
    "Create",
  );
  if (!v) return;
  const body: any = { snapshot: v.get("snapshot") || "host", resources: {} };
  const name = String(v.get("name") ?? "").trim();
  if (name) body.name = name;
  for (const k of ["cpus", "memory_mb", "disk_mb"]) {
    const x = String(v.get(k) ?? "").trim();
    if (x) body.resources[k] = Number(x);
  }
  const ttl = Number(v.get("timeout_seconds") || 0);
  if (ttl) body.timeout_seconds = ttl;
  if (v.get("network") === "egress") {
    const list = String(v.get("allow") ?? "")
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean);
    body.network = { mode: "egress", egress: { default: "deny", allow: list } };
  }
  const md: Record<string, string> = {};
  for (const part of String(v.get("metadata") ?? "").split(",")) {
    const [k, ...rest] = part.trim().split("=");
    if (k && rest.length) md[k.trim()] = rest.join("=").trim();
  }
  if (Object.keys(md).length) body.metadata = md;
  await act(null, async () => {
    const sb = await call<Sandbox>("POST", "/v1/sandboxes", body);
    notice(`created ${sb.id}`);
    done();
    location.hash = `#/sandboxes/${enc(sb.id)}`;
  });
}

export function lifetimeText(sb: Sandbox): string {
  return `expires ${until(sb.expires_at)}`;
}
