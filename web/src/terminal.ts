// A sandbox's terminal: a PTY command (a login shell) on xterm.js, attached over the stream WebSocket.
// The command id is remembered for the tab's session, so leaving and coming back (or a reload) re-attaches
// to the same shell and replays its output from offset 0; a network drop resumes from the last offset.
import { FitAddon } from "@xterm/addon-fit";
import { Terminal } from "@xterm/xterm";
import "@xterm/xterm/css/xterm.css";

import { call, Command, enc } from "./api";
import { CommandStream } from "./stream";
import { act, h } from "./ui";

const SHELL = "if command -v bash >/dev/null 2>&1; then exec bash -l; else exec sh -l; fi";

function sessionKey(sandbox: string): string {
  return `sbx.console.term.${sandbox}`;
}

export function mountTerminal(root: HTMLElement, sandbox: string): () => void {
  const status = h("span", { class: "term-status", "data-testid": "term-status" }, "connecting");
  const box = h("div", { class: "term", "data-testid": "terminal" });
  const newBtn = h("button", { class: "secondary small" }, "New session");
  const dropBtn = h("button", { class: "secondary small", title: "Close the socket and reconnect" }, "Reconnect");
  root.append(h("div", { class: "row term-bar" }, status, h("span", { class: "grow" }), dropBtn, newBtn), box);

  const term = new Terminal({
    cursorBlink: true,
    fontFamily: "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace",
    fontSize: 13,
    scrollback: 5000,
    theme: { background: "#101418" },
  });
  const fit = new FitAddon();
  term.loadAddon(fit);
  term.open(box);
  try {
    fit.fit();
  } catch {
    /* not laid out yet */
  }

  let stream: CommandStream | null = null;
  let disposed = false;

  const attach = (cid: string) => {
    stream?.close();
    const s = new CommandStream(sandbox, cid, {
      data: (_s, b) => term.write(b),
      status: (st, detail) => {
        status.textContent = detail ? `${st}: ${detail}` : st;
        status.className = `term-status ts-${st}`;
      },
      exit: (cmd) => {
        term.write(`\r\n\x1b[2m[exited with code ${cmd.exit_code ?? "?"}; "New session" starts another]\x1b[0m\r\n`);
        sessionStorage.removeItem(sessionKey(sandbox));
      },
    });
    stream = s;
    s.resize(term.cols, term.rows);
    (window as any).__sbxTerminal = { stream: s, term, command: cid };
  };

  const start = async () => {
    term.reset();
    const cmd = await call<Command>("POST", `/v1/sandboxes/${enc(sandbox)}/commands`, {
      command: SHELL,
      pty: true,
      cols: term.cols,
      rows: term.rows,
      idle_timeout: 3600, // an unattended console shell lives an hour after its last client left
      env: { PS1: "\\u@sbx:\\w\\$ " },
    });
    if (disposed) return;
    sessionStorage.setItem(sessionKey(sandbox), cmd.id);
    attach(cmd.id);
  };

  const resume = async () => {
    const cid = sessionStorage.getItem(sessionKey(sandbox));
    if (cid) {
      try {
        const c = await call<Command>("GET", `/v1/sandboxes/${enc(sandbox)}/commands/${enc(cid)}`);
        if (c.state === "running" && !disposed) return attach(cid);
      } catch {
        /* gone: start a new one */
      }
    }
    await start();
  };

  term.onData((d) => stream?.input(d));
  term.onResize(({ cols, rows }) => stream?.resize(cols, rows));
  const refit = () => {
    try {
      fit.fit();
    } catch {
      /* hidden */
    }
  };
  const ro = new ResizeObserver(refit);
  ro.observe(box);
  window.addEventListener("resize", refit);
  newBtn.addEventListener("click", () => act(newBtn, start));
  dropBtn.addEventListener("click", () => stream?.drop());
  act(null, resume);
  term.focus();

  return () => {
    disposed = true;
    ro.disconnect();
    window.removeEventListener("resize", refit);
    stream?.close();
    term.dispose();
    delete (window as any).__sbxTerminal;
  };
}

/** A read-only terminal showing one command's output, live or replayed from the start. */
export function mountOutput(root: HTMLElement, sandbox: string, cmd: Command, onExit: () => void): () => void {
  const status = h("span", { class: "term-status" }, "connecting");
  const box = h("div", { class: "term output", "data-testid": "command-output" });
  root.append(h("div", { class: "row term-bar" }, status), box);
  const term = new Terminal({
    convertEol: !cmd.pty,
    disableStdin: true,
    fontSize: 12,
    scrollback: 20000,
    theme: { background: "#101418" },
  });
  const fit = new FitAddon();
  term.loadAddon(fit);
  term.open(box);
  try {
    fit.fit();
  } catch {
    /* not laid out */
  }
  const s = new CommandStream(sandbox, cmd.id, {
    data: (st, b) => {
      if (st === "stderr") term.write("\x1b[31m");
      term.write(b);
      if (st === "stderr") term.write("\x1b[0m");
    },
    status: (st, d) => (status.textContent = d ? `${st}: ${d}` : st),
    exit: (c) => {
      term.write(`\r\n\x1b[2m[exit code ${c.exit_code ?? "?"}${c.error ? ", " + c.error.code : ""}]\x1b[0m\r\n`);
      onExit();
    },
  });
  return () => {
    s.close();
    term.dispose();
  };
}
