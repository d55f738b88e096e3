"""Agent sessions (/v1/sandboxes/{id}/agents) against a real sbxd, with tests/helpers/fake_agent.py standing
in for the Claude Code CLI (same stream-JSON protocol, no network): start, events over SSE and WebSocket
with offsets and replay, follow-up prompts, interrupt (control request and SIGINT), live configuration,
kill, secrets kept out of every answer and log, typed errors and limits."""
import glob
import json
import os
import signal
import subprocess
import tempfile
import threading

import pytest

from sbxtest import SOURCE_DIR, Daemon, WebSocket, cli, leftovers, sandbox_state_dir, wait_for

FAKE = os.path.join(SOURCE_DIR, "tests", "helpers", "fake_agent.py")
AGENT_PATH = "/root/fake_agent.py"
COMMAND = ["python3", AGENT_PATH]


def put_agent(daemon, sid):
    with open(FAKE, "rb") as f:
        r = daemon.request("PUT", f"/v1/sandboxes/{sid}/files?path={AGENT_PATH}", body=f.read())
    assert r.status == 200, r


@pytest.fixture
def box(daemon, sandbox):
    put_agent(daemon, sandbox)
    return sandbox


def start(daemon, sid, prompt="hello", status=201, **kw):
    body = dict(kw)
    body.setdefault("command", COMMAND)
    if prompt is not None:
        body["prompt"] = prompt
    r = daemon.request("POST", f"/v1/sandboxes/{sid}/agents", body)
    assert r.status == status, r
    return r.json()


class SSE:
    """A live SSE reader: next() returns (event, data) as they arrive."""

    def __init__(self, daemon, path, timeout=30):
        self.conn = daemon.conn(timeout)
        self.conn.request("GET", path, headers=daemon.headers({"Accept": "text/event-stream"}))
        self.resp = self.conn.getresponse()
        assert self.resp.status == 200, (self.resp.status, self.resp.read())

    def next(self):
        ev, data = "message", []
        while True:
            line = self.resp.readline()
            if not line:
                return None
            line = line.decode().rstrip("\n")
            if not line:
                if data:
                    return ev, json.loads("\n".join(data))
                continue
            if line.startswith(":"):
                continue
            k, _, v = line.partition(":")
            v = v[1:] if v.startswith(" ") else v
            if k == "event":
                ev = v
            elif k == "data":
                data.append(v)

    def until(self, pred):
        """Reads until pred(event, data) is true; returns everything read (including that one)."""
        out = []
        while True:
            item = self.next()
            assert item is not None, f"stream ended; got {out}"
            out.append(item)
            if pred(*item):
                return out

    def close(self):
        self.conn.close()


def is_result(kind, m):
    return kind == "event" and m["event"]["type"] == "result"


def ws_until(ws, pred):
    out = []
    for m in ws.messages():
        out.append(m)
        if pred(m):
            return out
    raise AssertionError(f"WebSocket ended; got {out}")


def ws_result(m):
    return m["type"] == "event" and m["event"]["type"] == "result"


def agent_path(sid, aid=None, tail=""):
    return f"/v1/sandboxes/{sid}/agents" + (f"/{aid}" if aid else "") + tail


def get(daemon, sid, aid):
    r = daemon.request("GET", agent_path(sid, aid))
    assert r.status == 200, r
    return r.json()


def test_start_events_and_follow_up(daemon, box):
    a = start(daemon, box, model="claude-test", system_prompt="be brief", permission_mode="acceptEdits",
              max_turns=7, allowed_tools=["Read", "Bash(git log:*)"], cwd="/tmp",
              mcp_servers={"files": {"command": "mcp-files", "args": ["--root", "/tmp"]}})
    aid = a["id"]
    assert aid.startswith("agt_") and a["state"] == "running" and a["prompts"] == 1
    assert a["model"] == "claude-test" and a["permission_mode"] == "acceptEdits" and a["max_turns"] == 7
    assert a["allowed_tools"] == ["Read", "Bash(git log:*)"] and a["cwd"] == "/tmp"
    assert a["mcp_servers"] == ["files"] and a["command"] == COMMAND and a["system_prompt"] == "be brief"

    s = SSE(daemon, agent_path(box, aid, "/stream"))
    evs = s.until(is_result)
    kinds = [m["event"]["type"] for _, m in evs]
    assert kinds == ["system", "assistant", "result"], kinds
    init = evs[0][1]["event"]
    assert init["subtype"] == "init" and init["model"] == "claude-test" and init["cwd"] == "/tmp"
    assert init["permissionMode"] == "acceptEdits" and init["mcp_servers"][0]["name"] == "files"
    assert evs[1][1]["event"]["message"]["content"][0]["text"] == "echo: hello"
    # Offsets are contiguous byte ranges of the agent's stdout, one line each.
    assert evs[0][1]["offset"] == 0
    for (_, prev), (_, cur) in zip(evs, evs[1:]):
        assert cur["offset"] == prev["next_offset"]

    r = daemon.request("POST", agent_path(box, aid, "/prompt"), {"prompt": "config"})
    assert r.status == 200, r
    assert r.json()["prompts"] == 2 and r.json()["offset"] >= evs[-1][1]["next_offset"]
    evs2 = s.until(is_result)
    cfg = json.loads(evs2[-1][1]["event"]["result"])
    assert cfg["system_prompt"] == "be brief" and cfg["max_turns"] == 7 and cfg["tools"] == ["Read", "Bash(git log:*)"]
    assert cfg["mcp"] == {"mcpServers": {"files": {"command": "mcp-files", "args": ["--root", "/tmp"]}}}
    assert cfg["flags"] == ["-p", "--output-format", "--input-format", "--verbose"]
    s.close()

    g = wait_for(lambda: (lambda x: x if x["turns"] == 2 else None)(get(daemon, box, aid)), what="two turns")
    assert g["busy"] is False and g["prompts"] == 2 and g["state"] == "running"
    assert g["session_id"] == init["session_id"] and g["last_event_at"]
    assert g["events_offset"] == evs2[-1][1]["next_offset"]
    lst = daemon.request("GET", agent_path(box)).json()["agents"]
    assert [x["id"] for x in lst] == [aid]
    # The session is a command too: the same process model, visible in the command list.
    cmds = daemon.request("GET", f"/v1/sandboxes/{box}/commands").json()["commands"]
    assert aid in [c["id"] for c in cmds]


def test_interrupt_by_control_request_and_by_signal(daemon, box):
    aid = start(daemon, box, prompt="slow")["id"]
    ws = WebSocket(daemon, agent_path(box, aid, "/stream"))
    ws_until(ws, lambda m: m["type"] == "event" and m["event"]["type"] == "assistant")
    assert get(daemon, box, aid)["busy"] is True
    r = daemon.request("POST", agent_path(box, aid, "/interrupt"), {})
    assert r.status == 202, r
    rid = r.json()["request_id"]
    assert r.json()["method"] == "control" and rid
    got = ws_until(ws, ws_result)
    assert got[-1]["event"]["subtype"] == "interrupted"
    acks = [m["event"] for m in got if m["type"] == "event" and m["event"]["type"] == "control_response"]
    assert acks and acks[0]["response"]["request_id"] == rid

    # The same over SIGINT, and a prompt sent on the WebSocket itself.
    ws.send({"type": "prompt", "prompt": "slow"})
    ws_until(ws, lambda m: m["type"] == "event" and m["event"]["type"] == "assistant")
    r = daemon.request("POST", agent_path(box, aid, "/interrupt"), {"method": "signal"})
    assert r.status == 202 and r.json()["method"] == "signal", r
    assert ws_until(ws, ws_result)[-1]["event"]["subtype"] == "interrupted"
    # And an interrupt message on the WebSocket.
    ws.send({"type": "prompt", "prompt": "slow"})
    ws_until(ws, lambda m: m["type"] == "event" and m["event"]["type"] == "assistant")
    ws.send({"type": "interrupt"})
    assert ws_until(ws, ws_result)[-1]["event"]["subtype"] == "interrupted"
    ws.close()
    g = wait_for(lambda: (lambda x: x if x["turns"] == 3 else None)(get(daemon, box, aid)), what="three turns")
    assert g["prompts"] == 3 and g["busy"] is False


def test_second_client_replays_then_follows(daemon, box):
    aid = start(daemon, box, prompt="one")["id"]
    first = SSE(daemon, agent_path(box, aid, "/stream"))
    evs = first.until(is_result)
    # A second client over WebSocket from 0: the same events, same offsets.
    ws = WebSocket(daemon, agent_path(box, aid, "/stream?offset=0"))
    replay = ws_until(ws, ws_result)
    assert [(m["offset"], m["event"]) for m in replay] == [(m["offset"], m["event"]) for _, m in evs]
    # A third over SSE from the second event's end: only what follows it.
    mid = evs[1][1]["next_offset"]
    third = SSE(daemon, agent_path(box, aid, f"/stream?offset={mid}"))
    rest = third.until(is_result)
    assert [m["offset"] for _, m in rest] == [m["offset"] for _, m in evs[2:]]
    # Then all three follow live.
    r = daemon.request("POST", agent_path(box, aid, "/prompt"), {"prompt": "two"})
    assert r.status == 200, r
    for got in (first.until(is_result), third.until(is_result)):
        assert got[-2][1]["event"]["message"]["content"][0]["text"] == "echo: two"
    live = ws_until(ws, ws_result)
    assert live[-2]["event"]["message"]["content"][0]["text"] == "echo: two"
    for c in (first, third):
        c.close()
    ws.close()


def test_non_json_line_is_text_and_exit_is_reported(daemon, box):
    aid = start(daemon, box, prompt="noise")["id"]
    s = SSE(daemon, agent_path(box, aid, "/stream"))
    evs = s.until(is_result)
    texts = [m for k, m in evs if k == "text"]
    assert texts and texts[0]["text"] == "this line is not JSON"
    assert daemon.request("POST", agent_path(box, aid, "/prompt"), {"prompt": "exit 3"}).status == 200
    kind, m = s.until(lambda k, m: k == "exit")[-1]
    assert m["state"] == "exited" and m["exit_code"] == 3 and m["id"] == aid
    assert s.next() is None  # the stream ends after exit
    s.close()
    g = get(daemon, box, aid)
    assert g["state"] == "exited" and g["exit_code"] == 3 and g["finished_at"]
    r = daemon.request("POST", agent_path(box, aid, "/prompt"), {"prompt": "hi"})
    assert r.status == 409 and r.error_code() == "conflict", r
    # An exited session's events can still be replayed, ending with its exit.
    ws = WebSocket(daemon, agent_path(box, aid, "/stream"))
    msgs = list(ws.messages())
    assert msgs[0]["event"]["type"] == "system" and msgs[-1]["type"] == "exit" and msgs[-1]["exit_code"] == 3


def test_patch_applies_model_and_permission_mode_live(daemon, box):
    aid = start(daemon, box, prompt=None, model="m1", resume="sess-before")["id"]
    r = daemon.request("PATCH", agent_path(box, aid), {"model": "m2", "permission_mode": "plan"})
    assert r.status == 200, r
    assert r.json()["model"] == "m2" and r.json()["permission_mode"] == "plan"
    assert daemon.request("POST", agent_path(box, aid, "/prompt"), {"prompt": "config"}).status == 200
    s = SSE(daemon, agent_path(box, aid, "/stream"))
    evs = s.until(is_result)
    s.close()
    acks = [m["event"] for k, m in evs if k == "event" and m["event"]["type"] == "control_response"]
    assert len(acks) == 2 and all(a["response"]["subtype"] == "success" for a in acks)
    cfg = json.loads(evs[-1][1]["event"]["result"])
    assert cfg["model"] == "m2" and cfg["permission_mode"] == "plan" and cfg["resume"] == "sess-before"
    assert evs[0][1]["event"]["session_id"] == "sess-before"
    g = get(daemon, box, aid)
    assert g["model"] == "m2" and g["resume"] == "sess-before" and g["session_id"] == "sess-before"
    r = daemon.request("PATCH", agent_path(box, aid), {"system_prompt": "x"})
    assert r.status == 400 and r.error_code() == "invalid_argument", r


def test_kill(daemon, box):
    aid = start(daemon, box, prompt="slow")["id"]
    ws = WebSocket(daemon, agent_path(box, aid, "/stream"))
    ws_until(ws, lambda m: m["type"] == "event" and m["event"]["type"] == "assistant")
    r = daemon.request("DELETE", agent_path(box, aid))
    assert r.status == 204, r
    ex = ws_until(ws, lambda m: m["type"] == "exit")[-1]
    assert ex["state"] == "exited" and ex["signal"] == 9 and ex["exit_code"] == 137
    g = get(daemon, box, aid)
    assert g["state"] == "exited" and g["busy"] is False
    # Killing again is harmless; the record stays listed as exited.
    assert daemon.request("DELETE", agent_path(box, aid)).status == 204
    assert [x["state"] for x in daemon.request("GET", agent_path(box)).json()["agents"]] == ["exited"]
    r = daemon.request("POST", agent_path(box, aid, "/interrupt"), {})
    assert r.status == 409 and r.error_code() == "conflict", r


def test_env_secret_reaches_the_agent_and_nothing_else(daemon, box):
    secret = "sk-ant-test-" + "q7Zx" * 8
    aid = start(daemon, box, prompt="env ANTHROPIC_API_KEY", env={"ANTHROPIC_API_KEY": secret})["id"]
    s = SSE(daemon, agent_path(box, aid, "/stream"))
    evs = s.until(is_result)
    s.close()
    assert evs[-1][1]["event"]["result"] == f"ANTHROPIC_API_KEY is set ({len(secret)} bytes)"
    g = get(daemon, box, aid)
    assert g["env_keys"] == ["ANTHROPIC_API_KEY"]
    for path in (agent_path(box, aid), agent_path(box), f"/v1/sandboxes/{box}/commands",
                 f"/v1/sandboxes/{box}/commands/{aid}", f"/v1/sandboxes/{box}"):
        r = daemon.request("GET", path)
        assert r.status == 200 and secret.encode() not in r.body, (path, r)
    with open(daemon.log_path, "rb") as f:
        assert secret.encode() not in f.read()
    state = sandbox_state_dir(daemon, box)
    recs = glob.glob(os.path.join(state, "agents", "*.json"))
    assert recs
    for p in recs:
        with open(p, "rb") as f:
            assert secret.encode() not in f.read()


def test_errors(daemon, box):
    r = daemon.request("POST", "/v1/sandboxes/sbx_nope/agents", {"prompt": "x", "command": COMMAND})
    assert r.status == 404 and r.error_code() == "not_found", r
    for method, tail in (("GET", ""), ("DELETE", ""), ("PATCH", ""), ("POST", "/prompt"), ("POST", "/interrupt"),
                         ("GET", "/stream")):
        body = {"model": "x"} if method == "PATCH" else {"prompt": "x"} if method == "POST" else None
        r = daemon.request(method, agent_path(box, "agt_missing", tail), body)
        assert r.status == 404 and r.error_code() == "not_found", (method, tail, r)
    # A plain command's id is not an agent session.
    cid = daemon.request("POST", f"/v1/sandboxes/{box}/commands", {"command": "true"}).json()["id"]
    assert daemon.request("GET", agent_path(box, cid)).status == 404
    # The agent program is not in the sandbox: the default (`claude`, absent here) or an override.
    r = daemon.request("POST", agent_path(box), {"prompt": "x"})
    if r.status != 201:
        assert r.status == 422 and r.error_code() == "command_not_found" and "claude" in r.json()["error"]["message"], r
    r = daemon.request("POST", agent_path(box), {"prompt": "x", "command": ["/nonexistent/agent"]})
    assert r.status == 422 and r.error_code() == "command_not_found", r
    assert "/nonexistent/agent" in r.json()["error"]["message"]
    bad = [({"prompt": 5}, 400), ({"prompt": ""}, 400), ({"model": ""}, 400), ({"max_turns": 0}, 400),
           ({"cwd": "tmp"}, 400), ({"allowed_tools": "Read"}, 400), ({"mcp_servers": []}, 400),
           ({"env": {"A": 1}}, 400), ({"nope": 1}, 400), ({"command": []}, 400),
           ({"allowed_tools": ["Read", "--dangerously-skip-permissions"]}, 400), ({"model": "--debug"}, 400),
           ({"prompt": "x" * (256 * 1024 + 1)}, 413), ({"allowed_tools": ["t"] * 129}, 413)]
    for body, status in bad:
        body.setdefault("command", COMMAND)
        r = daemon.request("POST", agent_path(box), body)
        assert r.status == status, (body if len(json.dumps(body)) < 200 else list(body), r)
    aid = start(daemon, box, prompt=None)["id"]
    for body in ({}, {"prompt": ""}, {"prompt": ["x"]}):
        r = daemon.request("POST", agent_path(box, aid, "/prompt"), body)
        assert r.status == 400, r
    r = daemon.request("POST", agent_path(box, aid, "/prompt"), {"prompt": "y" * (256 * 1024 + 1)})
    assert r.status == 413 and r.error_code() == "too_large", r
    r = daemon.request("POST", agent_path(box, aid, "/interrupt"), {"method": "shout"})
    assert r.status == 400, r
    r = daemon.request("GET", agent_path(box, aid, "/stream?offset=-1"))
    assert r.status == 400, r


def test_running_sessions_are_limited(daemon, box):
    ids = [start(daemon, box, prompt=None)["id"] for _ in range(8)]
    r = daemon.request("POST", agent_path(box), {"command": COMMAND})
    assert r.status == 429 and r.error_code() == "resource_exhausted", r
    assert daemon.request("DELETE", agent_path(box, ids[0])).status == 204
    wait_for(lambda: get(daemon, box, ids[0])["state"] == "exited", what="killed")
    start(daemon, box, prompt=None)
    assert len(daemon.request("GET", agent_path(box)).json()["agents"]) == 9


def test_stopped_sandbox_is_not_running(daemon, box):
    aid = start(daemon, box, prompt="hi")["id"]
    assert daemon.request("POST", f"/v1/sandboxes/{box}/stop").status == 200
    r = daemon.request("POST", agent_path(box), {"prompt": "x", "command": COMMAND})
    assert r.status == 409 and r.error_code() == "not_running", r
    r = daemon.request("POST", agent_path(box, aid, "/prompt"), {"prompt": "x"})
    assert r.status == 409 and r.error_code() == "not_running", r
    # Its record outlives the process, as exited.
    g = get(daemon, box, aid)
    assert g["state"] == "exited"


def test_configured_agent_command():
    """sbxd --agent-command sets the program every session runs unless the request names one."""
    with Daemon(extra_args=["--warm", "0", "--agent-command", f"python3 {AGENT_PATH}"]) as d:
        sid = d.create()
        put_agent(d, sid)
        a = start(d, sid, prompt="hi", command=None)
        assert a["command"] == COMMAND
        s = SSE(d, agent_path(sid, a["id"], "/stream"))
        assert s.until(is_result)[-1][1]["event"]["result"] == "echo: hi"
        s.close()
        d.delete(sid)
        assert d.stop() == 0, d.read_log()


def test_cli_agent(daemon, box):
    cmd = f"python3 {AGENT_PATH}"
    # One shot: the answer, exit 0, and the session is killed after its turn.
    p = cli(daemon, "agent", "--command", cmd, "--model", "m7", box, "hello there")
    assert p.stdout == b"echo: hello there\n", p
    sessions = daemon.request("GET", agent_path(box)).json()["agents"]
    assert len(sessions) == 1
    wait_for(lambda: get(daemon, box, sessions[0]["id"])["state"] == "exited", what="one-shot session killed")
    assert sessions[0]["model"] == "m7"
    # --json: the agent's own lines.
    p = cli(daemon, "agent", "--json", "--command", cmd, box, "hi")
    lines = [json.loads(x) for x in p.stdout.decode().splitlines()]
    assert [x["type"] for x in lines] == ["system", "assistant", "result"]
    # --keep, then a follow-up with --session, an interrupt, the listing, and --kill.
    p = cli(daemon, "agent", "--keep", "-e", "ANTHROPIC_API_KEY=sk-cli-secret", "--command", cmd, box, "first")
    aid = p.stderr.decode().split("session ")[1].split()[0]
    assert p.stdout == b"echo: first\n"
    p = cli(daemon, "agent", "--session", aid, box, "env ANTHROPIC_API_KEY")
    assert p.stdout == b"ANTHROPIC_API_KEY is set (13 bytes)\n", p
    p = cli(daemon, "agent", "--list", box)
    assert aid.encode() in p.stdout and b"running" in p.stdout and b"sk-cli-secret" not in p.stdout
    # A turn that ends in an error (interrupted) exits 1.
    t = threading.Timer(1.0, lambda: cli(daemon, "agent", "--session", aid, "--interrupt", box))
    t.start()
    p = cli(daemon, "agent", "--session", aid, box, "slow", check=False)
    t.join()
    assert p.returncode == 1 and b"interrupted" in p.stderr, p
    cli(daemon, "agent", "--session", aid, "--kill", box)
    # Following an exited session from an offset replays to its exit (status 137: killed).
    p = cli(daemon, "agent", "--json", "--session", aid, "--from", "0", box, check=False)
    assert p.returncode == 137 and json.loads(p.stdout.decode().splitlines()[0])["type"] == "system", p
    p = cli(daemon, "agent", "--command", "/nonexistent/agent", box, "x", check=False)
    assert p.returncode == 1 and b"command_not_found" in p.stderr, p


def test_session_survives_sbxd_kill9():
    """kill -9 sbxd mid-session: the agent runs on in its shim; the restarted sbxd knows the session (its
    record), counts its turns on from where it left off, and streams and prompts it as before."""
    data_dir = tempfile.mkdtemp(prefix="sbx-e2e-agent-crash-", dir="/var/tmp")
    d = Daemon(ephemeral=False, data_dir=data_dir, extra_args=["--warm", "0"]).start()
    d2 = None
    try:
        sid = d.create()
        put_agent(d, sid)
        aid = start(d, sid, prompt="before")["id"]
        wait_for(lambda: get(d, sid, aid)["turns"] == 1, what="first turn")
        assert d.request("POST", agent_path(sid, aid, "/prompt"), {"prompt": "slow"}).status == 200
        wait_for(lambda: get(d, sid, aid)["busy"], what="busy")
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait()
        d.log.close()
        d2 = Daemon(ephemeral=False, data_dir=data_dir, extra_args=["--warm", "0"])
        d2.port = d.port
        d2.start()
        g = get(d2, sid, aid)
        assert g["state"] == "running" and g["prompts"] == 2 and g["turns"] >= 1, g
        assert d2.request("POST", agent_path(sid, aid, "/interrupt"), {}).status == 202
        wait_for(lambda: get(d2, sid, aid)["turns"] == 2, what="the interrupted turn counted")
        s = SSE(d2, agent_path(sid, aid, "/stream"))
        evs = s.until(lambda k, m: k == "event" and m["event"].get("subtype") == "interrupted")
        assert [m["event"]["type"] for _, m in evs][:3] == ["system", "assistant", "result"]
        assert d2.request("POST", agent_path(sid, aid, "/prompt"), {"prompt": "after"}).status == 200
        assert s.until(is_result)[-1][1]["event"]["result"] == "echo: after"
        s.close()
        assert get(d2, sid, aid)["turns"] == 3
        d2.delete(sid)
    finally:
        for x in (d2, d):
            if x and x.proc and x.proc.poll() is None:
                x.stop()
        Daemon(ephemeral=True, data_dir=data_dir, extra_args=["--warm", "0"]).start().stop()
        if not {k: v for k, v in leftovers(data_dir, []).items() if k != "files"}:
            subprocess.run(["rm", "-rf", "--one-file-system", data_dir], check=False)
