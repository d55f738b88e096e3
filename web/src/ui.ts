// Tiny DOM helpers, formatting and the error banner. No framework: views rebuild their own subtree.
import { ApiError } from "./api";

type Child = Node | string | number | null | undefined | false | Child[];
type Attrs = Record<string, any>;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs?: Attrs | null,
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k in el && typeof v !== "string") (el as any)[k] = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el: Node, children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el: Element, ...children: Child[]): void {
  el.replaceChildren();
  append(el, children);
}

let bannerTimer: number | undefined;

/** Shows an error as the server worded it (code and message), or any other failure's message. */
export function showError(e: unknown): void {
  const b = document.getElementById("banner")!;
  let text: string;
  if (e instanceof ApiError) text = e.status ? `${e.message} (${e.status} ${e.code})` : e.message;
  else text = e instanceof Error ? e.message : String(e);
  clear(b, h("span", { class: "msg", role: "alert" }, text), h("button", { class: "link", onclick: hideError }, "×"));
  b.hidden = false;
  window.clearTimeout(bannerTimer);
  bannerTimer = window.setTimeout(hideError, 12000);
}

export function hideError(): void {
  document.getElementById("banner")!.hidden = true;
}

export function notice(text: string): void {
  const n = document.getElementById("notice")!;
  n.textContent = text;
  n.hidden = false;
  window.setTimeout(() => (n.hidden = true), 3000);
}

/** Runs an action, showing its error; disables the button while it runs. */
export async function act(btn: HTMLButtonElement | null, fn: () => Promise<unknown>): Promise<void> {
  if (btn) btn.disabled = true;
  try {
    await fn();
  } catch (e) {
    showError(e);
  } finally {
    if (btn) btn.disabled = false;
  }
}

export function age(iso: string | null | undefined): string {
  if (!iso) return "";
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 60) return `${Math.floor(s)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

export function until(iso: string | null | undefined): string {
  if (!iso) return "never";
  const s = (Date.parse(iso) - Date.now()) / 1000;
  if (s <= 0) return "now";
  return "in " + age(new Date(Date.now() - s * 1000).toISOString());
}

export function bytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return "";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i ? n.toFixed(1) : n} ${u[i]}`;
}

export function stateBadge(state: string): HTMLElement {
  return h("span", { class: `badge st-${state}` }, state);
}

/** A small modal form; resolves with the form's values, or null when cancelled. */
export function dialog(title: string, fields: HTMLElement[], ok = "OK"): Promise<FormData | null> {
  return new Promise((resolve) => {
    const form = h(
      "form",
      { class: "dialog-body", method: "dialog" },
      h("h3", null, title),
      fields,
      h(
        "div",
        { class: "row end" },
        h("button", { type: "button", class: "secondary", onclick: () => done(null) }, "Cancel"),
        h("button", { type: "submit" }, ok),
      ),
    );
    const dlg = h("dialog", { class: "dialog" }, form);
    const done = (v: FormData | null) => {
      dlg.close();
      dlg.remove();
      resolve(v);
    };
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      done(new FormData(form));
    });
    dlg.addEventListener("cancel", () => done(null));
    document.body.appendChild(dlg);
    dlg.showModal();
    (form.querySelector("input,select") as HTMLElement | null)?.focus();
  });
}

export function field(label: string, input: HTMLElement): HTMLElement {
  return h("label", { class: "field" }, h("span", null, label), input);
}

export function confirmDialog(text: string, ok = "Delete"): Promise<boolean> {
  return dialog(text, [], ok).then((v) => v !== null);
}
