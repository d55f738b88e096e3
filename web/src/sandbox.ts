// One sandbox: its summary and actions, then tabs for the terminal, files, commands, checkpoints and
// snapshots, and service URLs.
import { call, Command, download, enc, q, Sandbox, upload } from "./api";
import { actionButtons } from "./sandboxes";
import { mountOutput, mountTerminal } from "./terminal";
import { act, age, bytes, clear, confirmDialog, dialog, field, h, notice, showError, stateBadge, until } from "./ui";

const TABS = ["terminal", "files", "commands", "checkpoints", "ports"] as const;
type Tab = (typeof TABS)[number];

export function mountSandbox(root: HTMLElement, id: string, tab: string, arg: string): () => void {
  const cur: Tab = (TABS as readonly string[]).includes(tab) ? (tab as Tab) : "terminal";
  const head = h("div", { class: "sb-head" });
  const nav = h(
    "nav",
    { class: "tabs" },
    TABS.map((t) =>
      h("a", { href: `#/sandboxes/${enc(id)}/${t}`, class: t === cur ? "active" : undefined, "data-tab": t }, t),
    ),
  );
  const pane = h("div", { class: "pane" });
  root.append(h("p", null, h("a", { href: "#/" }, "← Sandboxes")), head, nav, pane);
  let sb: Sandbox | null = null;
  let stopped = false;
  let failed = false;
  let timer: number | undefined;

  const refresh = async () => {
    window.clearTimeout(timer);
    try {
      sb = await call<Sandbox>("GET", `/v1/sandboxes/${enc(id)}`);
      if (stopped) return;
      failed = false;
      const s = sb;
      clear(
        head,
        h(
          "div",
          { class: "row wrap" },
          h("h2", null, s.name ?? s.id),
          stateBadge(s.state),
          h("span", { class: "grow" }),
          actionButtons(s, refresh),
        ),
        h(
          "div",
          { class: "meta muted" },
          h("span", { class: "mono" }, s.id),
          ` · snapshot ${s.snapshot} · ${s.resources.cpus} CPU · ${s.resources.memory_mb} MiB · disk ${s.resources.disk_mb} MiB`,
          ` · network ${s.network?.mode ?? "none"} · created ${age(s.created_at)} ago · expires ${until(s.expires_at)}`,
          s.state_reason ? ` · ${s.state_reason}` : "",
        ),
      );
    } catch (e) {
      if (stopped) return;
      if (!failed) showError(e);
      failed = true;
      clear(head, h("h2", null, id));
    }
    if (!stopped) timer = window.setTimeout(refresh, 5000);
  };
  refresh();

  let unmountPane: (() => void) | undefined;
  if (cur === "terminal") unmountPane = mountTerminal(pane, id);
  else if (cur === "files") unmountPane = mountFiles(pane, id, arg || "/root");
  else if (cur === "commands") unmountPane = mountCommands(pane, id, arg);
  else if (cur === "checkpoints") unmountPane = mountCheckpoints(pane, id);
  else unmountPane = mountPorts(pane, id);

  return () => {
    stopped = true;
    window.clearTimeout(timer);
    unmountPane?.();
  };
}

// --- files ------------------------------------------------------------------------------------------

interface Entry {
  name: string;
  path: string;
  type: string;
  size: number;
  mode: string;
  mtime: string;
}

function joinPath(dir: string, name: string): string {
  return (dir.endsWith("/") ? dir : dir + "/") + name;
}

function mountFiles(root: HTMLElement, id: string, dir: string): () => void {
  const base = `/v1/sandboxes/${enc(id)}/files`;
  const go = (p: string) => (location.hash = `#/sandboxes/${enc(id)}/files/${enc(p)}`);
  const pathInput = h("input", { value: dir, "aria-label": "path", class: "grow" });
  pathInput.addEventListener("change", () => go(pathInput.value || "/"));
  const fileInput = h("input", { type: "file", multiple: true, hidden: true, "data-testid": "upload-input" });
  const uploadBtn = h("button", { class: "secondary" }, "Upload…");
  const mkdirBtn = h("button", { class: "secondary" }, "New folder");
  uploadBtn.addEventListener("click", () => fileInput.click());
  const crumbs = h("div", { class: "crumbs" });
  const parts = dir.split("/").filter(Boolean);
  crumbs.append(h("a", { href: `#/sandboxes/${enc(id)}/files/${enc("/")}` }, "/"));
  parts.forEach((p, i) => {
    const full = "/" + parts.slice(0, i + 1).join("/");
    crumbs.append(h("a", { href: `#/sandboxes/${enc(id)}/files/${enc(full)}` }, p), "/");
  });
  const body = h("tbody");
  const progress = h("div", { class: "uploads" });
  const drop = h(
    "div",
    { class: "dropzone", "data-testid": "dropzone" },
    h("div", { class: "row wrap toolbar" }, pathInput, uploadBtn, mkdirBtn, fileInput),
    crumbs,
    progress,
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { class: "list", "data-testid": "file-table" },
        h("thead", null, h("tr", null, h("th", null, "Name"), h("th", { class: "num" }, "Size"), h("th", { class: "opt" }, "Mode"), h("th", { class: "opt" }, "Modified"), h("th", null, ""))),
        body,
      ),
    ),
    h("p", { class: "muted hint" }, "Drop files here to upload them to this folder."),
  );
  root.append(drop);

  const load = async () => {
    try {
      const r = await call<{ entries: Entry[] }>("GET", `${base}/list${q({ path: dir })}`);
      const es = r.entries.sort((a, b) => (a.type === "dir" ? 0 : 1) - (b.type === "dir" ? 0 : 1) || a.name.localeCompare(b.name));
      clear(body, dir !== "/" ? h("tr", null, h("td", { colspan: 5 }, h("a", { href: `#/sandboxes/${enc(id)}/files/${enc(dir.replace(/\/[^/]+\/?$/, "") || "/")}` }, ".."))) : null, es.map(row));
    } catch (e) {
      showError(e);
      clear(body);
    }
  };

  const row = (e: Entry) => {
    const full = joinPath(dir, e.name);
    const dl = h("button", { class: "secondary small" }, "Download");
    const del = h("button", { class: "danger small" }, "Delete");
    dl.addEventListener("click", () =>
      act(dl, async () => {
        const blob = await download(`${base}${q({ path: full })}`);
        const url = URL.createObjectURL(blob);
        const a = h("a", { href: url, download: e.name });
        document.body.append(a);
        a.click();
        a.remove();
        setTimeout(() => URL.revokeObjectURL(url), 10000);
      }),
    );
    del.addEventListener("click", () =>
      act(del, async () => {
        if (!(await confirmDialog(`Delete ${full}${e.type === "dir" ? " and everything in it" : ""}?`))) return;
        await call("DELETE", `${base}${q({ path: full, recursive: e.type === "dir" ? "true" : undefined })}`);
        await load();
      }),
    );
    return h(
      "tr",
      { "data-name": e.name },
      h(
        "td",
        null,
        e.type === "dir"
          ? h("a", { href: `#/sandboxes/${enc(id)}/files/${enc(full)}` }, "📁 " + e.name)
          : h("span", null, (e.type === "symlink" ? "↪ " : "") + e.name),
      ),
      h("td", { class: "num" }, e.type === "file" ? bytes(e.size) : ""),
      h("td", { class: "opt mono" }, e.mode),
      h("td", { class: "opt" }, age(e.mtime) + " ago"),
      h("td", { class: "right" }, e.type === "file" ? dl : null, del),
    );
  };

  const uploadFiles = async (files: FileList | File[]) => {
    for (const f of Array.from(files)) {
      const bar = h("progress", { max: 1, value: 0 });
      const label = h("span", null, `${f.name}: 0%`);
      const item = h("div", { class: "upload" }, label, bar);
      progress.append(item);
      try {
        await upload(`${base}${q({ path: joinPath(dir, f.name) })}`, f, (done, total) => {
          bar.value = total ? done / total : 1;
          label.textContent = `${f.name}: ${total ? Math.round((100 * done) / total) : 100}%`;
        });
        label.textContent = `${f.name}: uploaded (${bytes(f.size)})`;
        setTimeout(() => item.remove(), 3000);
      } catch (e) {
        item.remove();
        showError(e);
      }
    }
    await load();
  };
  fileInput.addEventListener("change", () => fileInput.files && uploadFiles(fileInput.files));
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer?.files.length) uploadFiles(e.dataTransfer.files);
  });
  mkdirBtn.addEventListener("click", async () => {
    const v = await dialog("New folder", [field("Name", h("input", { name: "name", required: true }))], "Create");
    if (!v) return;
    await act(mkdirBtn, async () => {
      await call("POST", `${base}/mkdir`, { path: joinPath(dir, String(v.get("name"))) });
      await load();
    });
  });
  load();
  return () => {};
}

// --- commands ---------------------------------------------------------------------------------------

function mountCommands(root: HTMLElement, id: string, open: string): () => void {
  const base = `/v1/sandboxes/${enc(id)}/commands`;
  const cmdInput = h("input", { placeholder: "command to run, e.g. ls -la /", class: "grow", "aria-label": "command" });
  const runBtn = h("button", { type: "submit" }, "Run");
  const form = h("form", { class: "row wrap toolbar" }, cmdInput, runBtn);
  const body = h("tbody");
  const viewer = h("div", { class: "viewer" });
  root.append(
    form,
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { class: "list", "data-testid": "command-table" },
        h("thead", null, h("tr", null, ["Command", "State", "Exit", "Started", "Output"].map((c, i) => h("th", { class: i >= 3 ? "opt" : undefined }, c)))),
        body,
      ),
    ),
    viewer,
  );
  let stopped = false;
  let timer: number | undefined;
  let unmountViewer: (() => void) | undefined;

  const load = async () => {
    window.clearTimeout(timer);
    try {
      const r = await call<{ commands: Command[] }>("GET", base);
      if (stopped) return;
      clear(
        body,
        r.commands
          .slice()
          .reverse()
          .map((c) =>
            h(
              "tr",
              { class: c.id === open ? "selected" : undefined, "data-id": c.id },
              h("td", null, h("a", { href: `#/sandboxes/${enc(id)}/commands/${enc(c.id)}`, class: "mono" }, cmdText(c))),
              h("td", null, stateBadge(c.state === "exited" && c.error ? c.error.code : c.state)),
              h("td", { class: "num" }, c.exit_code ?? ""),
              h("td", { class: "opt" }, age(c.started_at) + " ago"),
              h("td", { class: "opt num" }, bytes(c.stdout_bytes + c.stderr_bytes)),
            ),
          ),
      );
    } catch (e) {
      showError(e);
    }
    if (!stopped) timer = window.setTimeout(load, 4000);
  };

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const command = cmdInput.value.trim();
    if (!command) return;
    act(runBtn, async () => {
      const c = await call<Command>("POST", base, { command });
      cmdInput.value = "";
      location.hash = `#/sandboxes/${enc(id)}/commands/${enc(c.id)}`;
    });
  });

  if (open) {
    call<Command>("GET", `${base}/${enc(open)}`)
      .then((c) => {
        if (stopped) return;
        viewer.append(h("h3", { class: "mono" }, cmdText(c)));
        unmountViewer = mountOutput(viewer, id, c, load);
      })
      .catch(showError);
  }
  load();
  return () => {
    stopped = true;
    window.clearTimeout(timer);
    unmountViewer?.();
  };
}

function cmdText(c: Command): string {
  const a = c.command ?? [];
  if (a.length === 3 && a[0] === "/bin/sh" && a[1] === "-c") return a[2];
  return a.join(" ");
}

// --- checkpoints, capture and fork ------------------------------------------------------------------

interface Checkpoint {
  id: string;
  name: string;
  size_bytes: number;
  created_at: string;
}

function mountCheckpoints(root: HTMLElement, id: string): () => void {
  const base = `/v1/sandboxes/${enc(id)}`;
  const ckBtn = h("button", null, "Checkpoint");
  const capBtn = h("button", { class: "secondary" }, "Capture snapshot");
  const forkBtn = h("button", { class: "secondary" }, "Fork");
  const body = h("tbody");
  root.append(
    h("div", { class: "row wrap toolbar" }, ckBtn, capBtn, forkBtn),
    h("h3", null, "Checkpoints"),
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { class: "list", "data-testid": "checkpoint-table" },
        h("thead", null, h("tr", null, h("th", null, "Name"), h("th", { class: "num opt" }, "Size"), h("th", { class: "opt" }, "Created"), h("th", null, ""))),
        body,
      ),
    ),
    h("p", { class: "muted hint" }, "A checkpoint copies the sandbox's disk (not its processes). Restore stops the sandbox, puts the disk back and starts it again."),
  );

  const load = async () => {
    try {
      const r = await call<{ checkpoints: Checkpoint[] }>("GET", `${base}/checkpoints`);
      if (!r.checkpoints.length)
        return clear(body, h("tr", null, h("td", { colspan: 4, class: "muted" }, "No checkpoints yet.")));
      clear(
        body,
        r.checkpoints.map((c) => {
          const restore = h("button", { class: "secondary small" }, "Restore");
          const create = h("button", { class: "secondary small" }, "New sandbox");
          const del = h("button", { class: "danger small" }, "Delete");
          restore.addEventListener("click", () =>
            act(restore, async () => {
              if (!(await confirmDialog(`Restore ${c.name}? Running processes end.`, "Restore"))) return;
              await call("POST", `${base}/checkpoints/${enc(c.name)}/restore`);
              notice(`restored ${c.name}`);
            }),
          );
          create.addEventListener("click", () =>
            act(create, async () => {
              const sb = await call<Sandbox>("POST", "/v1/sandboxes", { checkpoint: c.id });
              location.hash = `#/sandboxes/${enc(sb.id)}`;
            }),
          );
          del.addEventListener("click", () =>
            act(del, async () => {
              if (!(await confirmDialog(`Delete checkpoint ${c.name}?`))) return;
              await call("DELETE", `${base}/checkpoints/${enc(c.name)}`);
              await load();
            }),
          );
          return h(
            "tr",
            { "data-name": c.name },
            h("td", { class: "mono" }, c.name),
            h("td", { class: "num opt" }, bytes(c.size_bytes)),
            h("td", { class: "opt" }, age(c.created_at) + " ago"),
            h("td", { class: "right" }, restore, create, del),
          );
        }),
      );
    } catch (e) {
      showError(e);
    }
  };

  ckBtn.addEventListener("click", async () => {
    const v = await dialog("New checkpoint", [field("Name (optional)", h("input", { name: "name" }))], "Create");
    if (!v) return;
    const name = String(v.get("name") ?? "").trim();
    await act(ckBtn, async () => {
      await call("POST", `${base}/checkpoints`, name ? { name } : {});
      await load();
    });
  });
  capBtn.addEventListener("click", async () => {
    const v = await dialog("Capture as a snapshot", [field("Snapshot name", h("input", { name: "name", required: true }))], "Capture");
    if (!v) return;
    await act(capBtn, async () => {
      const s = await call<{ name: string; status: string }>("POST", `${base}/capture`, { name: v.get("name") });
      notice(`snapshot ${s.name}: ${s.status}`);
    });
  });
  forkBtn.addEventListener("click", async () => {
    const v = await dialog("Fork this sandbox", [field("Copies", h("input", { name: "count", type: "number", min: "1", max: "16", value: "1" }))], "Fork");
    if (!v) return;
    await act(forkBtn, async () => {
      const r = await call<{ sandboxes: Sandbox[] }>("POST", `${base}/fork`, { count: Number(v.get("count") || 1) });
      notice(`forked: ${r.sandboxes.map((s) => s.id).join(", ")}`);
      if (r.sandboxes.length === 1) location.hash = `#/sandboxes/${enc(r.sandboxes[0].id)}`;
      else location.hash = "#/";
    });
  });
  load();
  return () => {};
}

// --- service URLs -----------------------------------------------------------------------------------

function mountPorts(root: HTMLElement, id: string): () => void {
  const base = `/v1/sandboxes/${enc(id)}`;
  const port = h("input", { type: "number", min: "1", max: "65535", placeholder: "port", "aria-label": "port" });
  const openBtn = h("button", { type: "submit" }, "Open URL");
  const form = h("form", { class: "row wrap toolbar" }, port, openBtn);
  const list = h("ul", { class: "ports" });
  root.append(
    h("p", { class: "muted" }, "Servers listening inside the sandbox. Opening one mints a signed service URL (valid one hour) in a new tab."),
    list,
    form,
  );
  const open = (p: number, btn: HTMLButtonElement) => {
    // Opened before the await so popup blockers see a user gesture; pointed at the URL once minted.
    const w = window.open("about:blank", "_blank");
    act(btn, async () => {
      try {
        const r = await call<{ url: string; token: string }>("POST", `${base}/ports/${p}/url`, { expires_in_seconds: 3600 });
        const url = `${r.url}${r.url.includes("?") ? "&" : "?"}sbx_token=${enc(r.token)}`;
        if (w) {
          w.opener = null;
          w.location.href = url;
        } else window.open(url, "_blank", "noopener");
      } catch (e) {
        w?.close();
        throw e;
      }
    });
  };
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    if (port.value) open(Number(port.value), openBtn);
  });
  const load = async () => {
    try {
      const r = await call<{ ports: { port: number; address: string }[] }>("GET", `${base}/ports`);
      clear(
        list,
        r.ports.length
          ? r.ports.map((p) => {
              const b = h("button", { class: "secondary small" }, "Open");
              b.addEventListener("click", () => open(p.port, b));
              return h("li", null, h("span", { class: "mono" }, `${p.address}:${p.port}`), " ", b);
            })
          : h("li", { class: "muted" }, "Nothing listens yet."),
      );
    } catch (e) {
      showError(e);
    }
  };
  load();
  const t = window.setInterval(load, 5000);
  return () => window.clearInterval(t);
}
