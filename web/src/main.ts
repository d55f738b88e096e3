// The sbx web console: sign-in with an API key, then hash routes
//   #/                               sandboxes
//   #/snapshots                      snapshots
//   #/sandboxes/ID[/TAB[/ARG]]       one sandbox (terminal, files/PATH, commands/CID, checkpoints, ports)
import "./style.css";

import { ApiError, call, enc, getKey, setKey } from "./api";
import { mountSandbox } from "./sandbox";
import { mountList } from "./sandboxes";
import { act, age, bytes, clear, confirmDialog, h, hideError, showError } from "./ui";

const app = document.getElementById("app")!;
let unmount: (() => void) | undefined;

function signIn(message?: string): void {
  document.getElementById("main-nav")!.hidden = true;
  document.getElementById("signout")!.hidden = true;
  const key = h("input", {
    type: "password",
    name: "key",
    autocomplete: "off",
    placeholder: "sbxk_… or the admin key",
    "aria-label": "API key",
    "data-testid": "api-key",
  });
  const btn = h("button", { type: "submit" }, "Sign in");
  const form = h(
    "form",
    { class: "signin" },
    h("h2", null, "Sign in"),
    h("p", { class: "muted" }, "Your API key stays in this browser tab (session storage) and is sent only to this sbxd."),
    key,
    btn,
    message ? h("p", { class: "error", role: "alert" }, message) : null,
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    act(btn, async () => {
      setKey(key.value.trim());
      try {
        await call("GET", "/v1/sandboxes?state=running");
      } catch (err) {
        setKey(null);
        if (err instanceof ApiError && err.status === 401) return signIn(err.message);
        throw err;
      }
      hideError();
      route();
    });
  });
  clear(app, form);
  key.focus();
}

function snapshots(root: HTMLElement): () => void {
  const body = h("tbody");
  root.append(
    h("h2", null, "Snapshots"),
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { class: "list" },
        h("thead", null, h("tr", null, ["Name", "Status", "Source", "Size", "Created", ""].map((c, i) => h("th", { class: i >= 2 && i <= 4 ? "opt" : undefined }, c)))),
        body,
      ),
    ),
    h("p", { class: "muted hint" }, "Capture a sandbox from its Checkpoints tab; import or pull images with the CLI (sbx snapshot import / pull)."),
  );
  const load = async () => {
    try {
      const r = await call<{ snapshots: any[] }>("GET", "/v1/snapshots");
      clear(
        body,
        r.snapshots.map((s) => {
          const del = h("button", { class: "danger small" }, "Delete");
          del.addEventListener("click", () =>
            act(del, async () => {
              if (!(await confirmDialog(`Delete snapshot ${s.name ?? s.id}?`))) return;
              await call("DELETE", `/v1/snapshots/${enc(s.id)}`);
              await load();
            }),
          );
          return h(
            "tr",
            null,
            h("td", null, s.name ?? s.id, s.name && s.name !== s.id ? h("div", { class: "muted mono" }, s.id) : null),
            h("td", null, h("span", { class: `badge st-${s.status}` }, s.status ?? "ready"), s.reason ? h("div", { class: "muted" }, s.reason) : null),
            h("td", { class: "opt" }, s.source),
            h("td", { class: "opt num" }, bytes(s.size_bytes)),
            h("td", { class: "opt" }, s.created_at ? age(s.created_at) + " ago" : ""),
            h("td", { class: "right" }, s.source === "host" ? null : del),
          );
        }),
      );
    } catch (e) {
      showError(e);
    }
  };
  load();
  return () => {};
}

function route(): void {
  unmount?.();
  unmount = undefined;
  hideError();
  if (getKey() === null) return signIn();
  document.getElementById("main-nav")!.hidden = false;
  document.getElementById("signout")!.hidden = false;
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  clear(app);
  const view = h("div", { class: "view" });
  app.append(view);
  if (parts[0] === "sandboxes" && parts[1]) unmount = mountSandbox(view, parts[1], parts[2] ?? "", parts.slice(3).join("/"));
  else if (parts[0] === "snapshots") unmount = snapshots(view);
  else unmount = mountList(view);
}

// A key revoked or wrong mid-session: back to the sign-in form with the server's message.
window.addEventListener("unhandledrejection", (e) => showError(e.reason));
window.addEventListener("error", (e) => showError(e.error ?? e.message));
window.addEventListener("hashchange", route);
document.getElementById("signout")!.addEventListener("click", () => {
  setKey(null);
  location.hash = "#/";
  route();
});
route();
