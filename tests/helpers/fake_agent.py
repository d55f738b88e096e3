#!/usr/bin/env python3
"""A stand-in for the Claude Code CLI in stream-JSON mode, for tests that cannot reach a model.

It takes the flags sbx passes (`-p --output-format stream-json --input-format stream-json --verbose
[--model M] [--system-prompt S] [--permission-mode M] [--max-turns N] [--mcp-config JSON] [--resume ID]
[--allowedTools T...]`), reads JSON lines on stdin and writes JSON lines on stdout the way the CLI does:
a system/init event, then per user message assistant events and one result event. Control requests
(interrupt, set_model, set_permission_mode) get a control_response. What it says depends on the prompt:

  "slow"        starts a long turn (30 s) that only an interrupt (control request or SIGINT) ends early,
                with a result of subtype "interrupted"
  "env NAME"    says whether NAME is set in its environment and how long it is (never the value)
  "config"      says its model, permission mode, system prompt, tools, max turns, MCP servers, cwd
  "exit N"      exits with status N
  "noise"       prints a line that is not JSON, then answers
  anything else echoes the prompt back ("echo: ...")

Standard library only; it runs inside a sandbox with the host snapshot's python3.
"""
import json
import os
import select
import signal
import sys
import time
import uuid

args = sys.argv[1:]
opts = {"model": "fake-model", "permission_mode": "default", "system_prompt": None, "max_turns": None,
        "mcp": None, "resume": None, "tools": [], "flags": []}
i = 0
while i < len(args):
    a = args[i]
    if a in ("-p", "--verbose"):
        opts["flags"].append(a)
    elif a in ("--output-format", "--input-format"):
        assert args[i + 1] == "stream-json", args
        opts["flags"].append(a)
        i += 1
    elif a == "--model":
        opts["model"] = args[i + 1]
        i += 1
    elif a == "--system-prompt":
        opts["system_prompt"] = args[i + 1]
        i += 1
    elif a == "--permission-mode":
        opts["permission_mode"] = args[i + 1]
        i += 1
    elif a == "--max-turns":
        opts["max_turns"] = int(args[i + 1])
        i += 1
    elif a == "--mcp-config":
        opts["mcp"] = json.loads(args[i + 1])
        i += 1
    elif a == "--resume":
        opts["resume"] = args[i + 1]
        i += 1
    elif a == "--allowedTools":
        while i + 1 < len(args) and not args[i + 1].startswith("-"):
            opts["tools"].append(args[i + 1])
            i += 1
    else:
        sys.stderr.write(f"fake_agent: unknown argument {a}\n")
        sys.exit(2)
    i += 1

session_id = opts["resume"] or str(uuid.uuid4())
interrupted = False


def on_sigint(signo, frame):
    global interrupted
    interrupted = True


signal.signal(signal.SIGINT, on_sigint)


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def assistant(text):
    emit({"type": "assistant", "session_id": session_id, "parent_tool_use_id": None,
          "message": {"id": "msg_" + uuid.uuid4().hex[:12], "type": "message", "role": "assistant",
                      "model": opts["model"], "content": [{"type": "text", "text": text}]}})


def result(subtype, text, started):
    emit({"type": "result", "subtype": subtype, "is_error": subtype != "success", "session_id": session_id,
          "duration_ms": int((time.monotonic() - started) * 1000), "num_turns": 1, "result": text,
          "total_cost_usd": 0})


buf = b""


def read_line(timeout):
    """One line from stdin, None on timeout, b"" at EOF."""
    global buf
    deadline = time.monotonic() + timeout
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        try:
            r, _, _ = select.select([0], [], [], left)
        except InterruptedError:
            continue
        if not r:
            return None
        chunk = os.read(0, 65536)
        if not chunk:
            line, buf = buf, b""
            return line
        buf += chunk
    line, _, buf = buf.partition(b"\n")
    return line + b"\n"


def control(msg):
    """Answers a control request; returns True when it was an interrupt."""
    req = msg.get("request", {})
    sub = req.get("subtype")
    if sub == "set_model":
        opts["model"] = req.get("model")
    elif sub == "set_permission_mode":
        opts["permission_mode"] = req.get("mode")
    elif sub != "interrupt":
        emit({"type": "control_response", "response": {"subtype": "error", "request_id": msg.get("request_id"),
                                                       "error": f"unknown subtype {sub}"}})
        return False
    emit({"type": "control_response", "response": {"subtype": "success", "request_id": msg.get("request_id"),
                                                   "response": {}}})
    return sub == "interrupt"


def slow_turn(started):
    global interrupted
    assistant("working on it...")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not interrupted:
        line = read_line(0.05)
        if line is None:
            continue
        if not line:
            break
        msg = json.loads(line)
        if msg.get("type") == "control_request" and control(msg):
            interrupted = True
    if interrupted:
        interrupted = False
        result("interrupted", "interrupted by the user", started)
    else:
        result("success", "done working", started)


emit({"type": "system", "subtype": "init", "session_id": session_id, "cwd": os.getcwd(), "model": opts["model"],
      "permissionMode": opts["permission_mode"], "tools": opts["tools"],
      "mcp_servers": [{"name": n, "status": "connected"} for n in (opts["mcp"] or {}).get("mcpServers", {})],
      "apiKeySource": "ANTHROPIC_API_KEY" if os.environ.get("ANTHROPIC_API_KEY") else "none"})

while True:
    line = read_line(3600)
    if line is None:
        continue
    if not line:
        break
    msg = json.loads(line)
    if msg.get("type") == "control_request":
        control(msg)
        continue
    if msg.get("type") != "user":
        continue
    started = time.monotonic()
    text = "".join(c.get("text", "") for c in msg["message"]["content"] if c.get("type") == "text")
    if text == "slow":
        slow_turn(started)
    elif text.startswith("env "):
        name = text[4:]
        v = os.environ.get(name)
        answer = f"{name} is set ({len(v)} bytes)" if v is not None else f"{name} is not set"
        assistant(answer)
        result("success", answer, started)
    elif text == "config":
        answer = json.dumps({"model": opts["model"], "permission_mode": opts["permission_mode"],
                             "system_prompt": opts["system_prompt"], "tools": opts["tools"],
                             "max_turns": opts["max_turns"], "mcp": opts["mcp"], "cwd": os.getcwd(),
                             "resume": opts["resume"], "flags": opts["flags"]})
        assistant(answer)
        result("success", answer, started)
    elif text.startswith("exit "):
        sys.exit(int(text[5:]))
    else:
        if text == "noise":
            sys.stdout.write("this line is not JSON\n")
        assistant("echo: " + text)
        result("success", "echo: " + text, started)
