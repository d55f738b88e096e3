// The web console in a real browser: Debian's chromium (headless, kept off the network) driven by
// playwright-core against a real `sbxd --ephemeral` that serves the console built by ctest.sh from
// <build>/console (its default). Signs in, creates a sandbox, runs `echo $((6*7))` in its terminal, drops
// and resumes the terminal's socket, uploads a file by drag and drop and reads it back through the API,
// pauses, resumes and deletes the sandbox; a screenshot of each page goes to $SBX_WEB_OUT.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, join, resolve } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const build = process.env.SBX_BUILD_DIR ?? resolve(here, "../../build");
const out = process.env.SBX_WEB_OUT ?? join(build, "web-test-output");
const KEY = "web_" + "0123456789abcdef".repeat(2);
mkdirSync(out, { recursive: true });

function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once("error", fail);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

let sbxd, browser, page, url, dataDir, logPath;

async function api(method, path, body) {
  const init = { method, headers: { Authorization: `Bearer ${KEY}` } };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const r = await fetch(url + path, init);
  const text = await r.text();
  return { status: r.status, text, json: () => JSON.parse(text) };
}

async function waitFor(cond, what, timeout = 20000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function shot(name) {
  await page.screenshot({ path: join(out, `${name}.png`), fullPage: true });
}

/** The terminal's visible text, one string per row (xterm's DOM renderer). */
async function termRows() {
  return page.$$eval("[data-testid=terminal] .xterm-rows > div", (rows) => rows.map((r) => r.textContent.trimEnd()));
}

before(async () => {
  const port = await freePort();
  url = `http://127.0.0.1:${port}`;
  dataDir = mkdtempSync("/var/tmp/sbx-web-");
  logPath = join(dataDir, "sbxd.log");
  const fd = openSync(logPath, "a");
  sbxd = spawn(join(build, "bin", "sbxd"), ["--listen", `127.0.0.1:${port}`, "--data-dir", dataDir, "--ephemeral"], {
    env: { ...process.env, SBX_API_KEY: KEY },
    stdio: ["ignore", fd, fd],
  });
  await waitFor(async () => {
    if (sbxd.exitCode !== null) throw new Error(`sbxd exited: ${readFileSync(logPath, "utf8").slice(-2000)}`);
    try {
      return (await fetch(`${url}/healthz`)).ok;
    } catch {
      return false;
    }
  }, "sbxd /healthz");

  browser = await chromium.launch({
    executablePath: process.env.SBX_CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox", // root in CI; the page is our own console on loopback
      "--disable-gpu",
      "--disable-dev-shm-usage",
      // Off the network: nothing resolves but loopback, and no background traffic to Google's services.
      "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
      "--proxy-server=direct://",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-default-apps",
      "--disable-domain-reliability",
      "--disable-sync",
      "--disable-breakpad",
      "--no-first-run",
      "--no-default-browser-check",
      "--no-pings",
      "--metrics-recording-only",
      "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication,CertificateTransparencyComponentUpdater",
    ],
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 820 } });
  // Belt and braces: the page may talk to sbxd only.
  await context.route(
    (u) => !u.href.startsWith(url) && !u.href.startsWith("blob:") && !u.href.startsWith("data:"),
    (r) => r.abort(),
  );
  page = await context.newPage();
  page.on("pageerror", (e) => console.error("page error:", e));
});

after(async () => {
  await browser?.close();
  if (sbxd && sbxd.exitCode === null) {
    const done = new Promise((r) => sbxd.once("exit", r));
    sbxd.kill("SIGTERM");
    await done;
  }
  const log = readFileSync(logPath, "utf8");
  rmSync(dataDir, { recursive: true, force: true });
  // A clean exit; under ASan this is also where LeakSanitizer reports.
  assert.equal(sbxd.exitCode, 0, `sbxd exited with ${sbxd.exitCode}: ${log.slice(-4000)}`);
});

test("the console, end to end", async () => {
  // Sign in: a wrong key shows the server's message; the right one lands on the sandbox list.
  await page.goto(`${url}/console/`);
  await page.waitForSelector("[data-testid=api-key]");
  await shot("01-signin");
  await page.fill("[data-testid=api-key]", "not-the-key");
  await page.click("form.signin button[type=submit]");
  await page.waitForSelector("form.signin .error");
  assert.match(await page.textContent("form.signin .error"), /missing or wrong API key/);
  await shot("02-signin-error");
  await page.fill("[data-testid=api-key]", KEY);
  await page.click("form.signin button[type=submit]");
  await page.waitForSelector("[data-testid=sandbox-table]");
  assert.equal(await page.evaluate(() => sessionStorage.getItem("sbx.console.key")), KEY);
  assert.equal(await page.evaluate(() => localStorage.length), 0);
  await shot("03-list-empty");

  // Create from the form: snapshot, resources, metadata.
  await page.click("[data-testid=create]");
  await page.waitForSelector("dialog[open] select[name=snapshot] option[value=host]", { state: "attached" });
  await page.fill("dialog[open] input[name=name]", "web-e2e");
  await page.fill("dialog[open] input[name=memory_mb]", "256");
  await page.fill("dialog[open] input[name=metadata]", "suite=web");
  await shot("04-create-dialog");
  await page.click("dialog[open] button[type=submit]");
  await page.waitForURL(/#\/sandboxes\/sbx_/);
  const id = decodeURIComponent(page.url().split("#/sandboxes/")[1].split("/")[0]);
  const sb = (await api("GET", `/v1/sandboxes/${id}`)).json();
  assert.equal(sb.name, "web-e2e");
  assert.equal(sb.resources.memory_mb, 256);
  assert.deepEqual(sb.metadata, { suite: "web" });

  // The terminal: a PTY shell over the WebSocket (key in the subprotocol).
  await page.waitForSelector("[data-testid=term-status].ts-open", { timeout: 20000 });
  await waitFor(async () => (await termRows()).some((r) => r.includes("@web-e2e:")), "the shell's prompt");
  await page.click("[data-testid=terminal]");
  await page.keyboard.type("echo $((6*7))\n");
  await waitFor(async () => (await termRows()).some((r) => r.trim() === "42"), "42 in the terminal");
  await shot("05-terminal");

  // A dropped socket reconnects from its offsets: nothing lost, nothing shown twice.
  await page.evaluate(() => window.__sbxTerminal.stream.drop());
  await page.waitForSelector("[data-testid=term-status].ts-open", { timeout: 20000 });
  await page.keyboard.type("echo after-$((1+1))\n");
  await waitFor(async () => (await termRows()).some((r) => r.trim() === "after-2"), "after-2 in the terminal");
  const rows = await termRows();
  assert.equal(rows.filter((r) => r.trim() === "42").length, 1, rows.join("\n"));
  // A reload re-attaches to the same shell and replays its output from the start.
  await page.reload();
  await page.waitForSelector("[data-testid=term-status].ts-open", { timeout: 20000 });
  await waitFor(async () => (await termRows()).some((r) => r.trim() === "after-2"), "replayed output after a reload");

  // Files: drop a file on the folder, watch it appear, read it back through the API.
  await page.click("a[data-tab=files]");
  await page.waitForSelector("[data-testid=file-table]");
  const content = "hello from the browser\n".repeat(1000);
  await page.evaluate((text) => {
    const dt = new DataTransfer();
    dt.items.add(new File([text], "hello.txt", { type: "text/plain" }));
    const zone = document.querySelector("[data-testid=dropzone]");
    zone.dispatchEvent(new DragEvent("dragover", { dataTransfer: dt, bubbles: true, cancelable: true }));
    zone.dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
  }, content);
  await page.waitForSelector("tr[data-name='hello.txt']");
  const back = await api("GET", `/v1/sandboxes/${id}/files?path=/root/hello.txt`);
  assert.equal(back.status, 200);
  assert.equal(back.text, content);
  await shot("06-files");
  const [dl] = await Promise.all([
    page.waitForEvent("download"),
    page.click("tr[data-name='hello.txt'] button:text-is('Download')"),
  ]);
  assert.equal(dl.suggestedFilename(), "hello.txt");
  assert.equal(readFileSync(await dl.path(), "utf8"), content);

  // Commands: the shell is listed; opening it replays its output.
  await page.click("a[data-tab=commands]");
  await page.waitForSelector("[data-testid=command-table] tbody tr");
  await page.fill("input[aria-label=command]", "echo from-commands-tab; exit 3");
  await page.click("form button[type=submit]");
  await page.waitForSelector("[data-testid=command-output] .xterm-rows");
  await waitFor(
    async () =>
      (await page.$$eval("[data-testid=command-output] .xterm-rows > div", (r) => r.map((x) => x.textContent))).some((t) =>
        t.includes("[exit code 3]"),
      ),
    "the command's exit in the viewer",
  );
  await shot("07-commands");

  // Checkpoints: capture one, then fork the sandbox (the fork has the uploaded file).
  await page.click("a[data-tab=checkpoints]");
  await page.waitForSelector("[data-testid=checkpoint-table] tbody tr");
  await page.click("button:text-is('Checkpoint')");
  await page.fill("dialog[open] input[name=name]", "cp1");
  await page.click("dialog[open] button[type=submit]");
  await page.waitForSelector("[data-testid=checkpoint-table] tr[data-name=cp1]");
  await shot("08-checkpoints");
  await page.click("button:text-is('Fork')");
  await page.click("dialog[open] button[type=submit]");
  await page.waitForURL((u) => u.hash.startsWith("#/sandboxes/") && !u.hash.includes(id));
  const forkId = decodeURIComponent(page.url().split("#/sandboxes/")[1].split("/")[0]);
  assert.equal((await api("GET", `/v1/sandboxes/${forkId}/files?path=/root/hello.txt`)).text, content);
  await page.goto(`${url}/console/#/sandboxes/${id}/checkpoints`);
  assert.equal((await api("DELETE", `/v1/sandboxes/${forkId}`)).status, 204);

  // Service URLs: a server inside, listed on the Ports tab, opened in a new tab through sbxd.
  const srv = await api("POST", `/v1/sandboxes/${id}/commands`, {
    command: "mkdir -p /tmp/www && echo served-from-sandbox > /tmp/www/index.html && cd /tmp/www && exec python3 -m http.server 8123 --bind 127.0.0.1",
    idle_timeout: -1,
  });
  assert.equal(srv.status, 201, srv.text);
  await page.click("a[data-tab=ports]");
  await page.waitForSelector("ul.ports li button", { timeout: 20000 });
  await shot("09-ports");
  const [popup] = await Promise.all([page.context().waitForEvent("page"), page.click("ul.ports li button")]);
  await popup.waitForFunction(() => document.body && document.body.innerText.includes("served-from-sandbox"), null, {
    timeout: 20000,
  });
  assert.match(popup.url(), new RegExp(`/s/${id}/8123/`));
  await popup.close();

  // Pause and resume from the list.
  await page.click("header a[href='#/']");
  const row = `tr[data-id='${id}']`;
  await page.waitForSelector(`${row}[data-state=running]`);
  await page.click(`${row} button[data-action=pause]`);
  await page.waitForSelector(`${row}[data-state=paused]`);
  assert.equal((await api("GET", `/v1/sandboxes/${id}`)).json().state, "paused");
  await shot("10-list-paused");
  await page.click(`${row} button[data-action=resume]`);
  await page.waitForSelector(`${row}[data-state=running]`);
  assert.equal((await api("GET", `/v1/sandboxes/${id}`)).json().state, "running");
  // Live CPU and memory from the metrics (the second poll has a CPU delta).
  await waitFor(async () => /%/.test(await page.textContent(`${row} td:nth-child(5)`)), "CPU figure", 15000);
  await shot("11-list-running");

  // An error is shown as the server's message.
  await page.goto(`${url}/console/#/sandboxes/sbx_doesnotexist/files`);
  await page.waitForSelector("#banner:not([hidden])");
  assert.match(await page.textContent("#banner"), /sandbox `sbx_doesnotexist` not found/);
  await shot("12-error");

  await page.goto(`${url}/console/#/snapshots`);
  await page.waitForSelector("table.list tbody tr");
  await shot("13-snapshots");

  // A narrow window.
  await page.setViewportSize({ width: 390, height: 780 });
  await page.goto(`${url}/console/#/`);
  await page.waitForSelector(`${row}`);
  await shot("14-list-narrow");
  await page.goto(`${url}/console/#/sandboxes/${id}/terminal`);
  await page.waitForSelector("[data-testid=term-status].ts-open", { timeout: 20000 });
  // The terminal follows the window: the shell sees the new size.
  const size = await page.evaluate(() => [window.__sbxTerminal.term.rows, window.__sbxTerminal.term.cols]);
  assert.ok(size[1] < 60, `narrow terminal has ${size[1]} columns`);
  await page.click("[data-testid=terminal]");
  await page.keyboard.type("stty size\n");
  await waitFor(async () => (await termRows()).some((r) => r.trim() === `${size[0]} ${size[1]}`), `stty size ${size}`);
  await shot("15-terminal-narrow");
  await page.setViewportSize({ width: 1280, height: 820 });

  // Delete (confirmed in the console's dialog).
  await page.goto(`${url}/console/#/`);
  await page.waitForSelector(`${row}`);
  await page.click(`${row} button[data-action=delete]`);
  await page.waitForSelector("dialog[open]");
  await page.click("dialog[open] button[type=submit]");
  await page.waitForSelector(row, { state: "detached" });
  const gone = (await api("GET", `/v1/sandboxes/${id}`)).json();
  assert.equal(gone.state, "deleted");
  await shot("16-list-deleted");
});
