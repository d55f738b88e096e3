"""PTY commands (`"pty": true`), resize over HTTP and WebSocket, ^C through the line discipline, output
replay, and `sbx shell` driven through a real pseudo-terminal."""
import fcntl
import json
import os
import select
import signal
import struct
import subprocess
import termios
import time

import pytest

from sbxtest import BIN, WebSocket, collect, wait_for


def start(daemon, sid, command, **kw):
    r = daemon.request("POST", f"/v1/sandboxes/{sid}/commands", dict(kw, command=command, pty=True))
    assert r.status == 201, r
    return r.json()["id"]


def log_text(daemon, sid, cid):
    r = daemon.request("GET", f"/v1/sandboxes/{sid}/commands/{cid}/logs?format=raw&limit=1048576")
    assert r.status == 200, r
    return r.body.decode(errors="replace")


def wait_output(daemon, sid, cid, needle, timeout=15):
    wait_for(lambda: needle in log_text(daemon, sid, cid), timeout=timeout, what=f"{needle!r} in output")
    return log_text(daemon, sid, cid)


def stdin(daemon, sid, cid, data):
    r = daemon.request("POST", f"/v1/sandboxes/{sid}/commands/{cid}/stdin", body=data)
    assert r.status == 204, r


def status(daemon, sid, cid):
    return daemon.request("GET", f"/v1/sandboxes/{sid}/commands/{cid}").json()


def wait_exit(daemon, sid, cid, timeout=15):
    wait_for(lambda: status(daemon, sid, cid)["state"] == "exited", timeout=timeout, what="exit")
    return status(daemon, sid, cid)


def test_pty_is_a_terminal(daemon, sandbox):
    r = daemon.run(sandbox, "tty; test -t 0 && test -t 1 && test -t 2 && echo all-ttys; stty size; echo $TERM; "
                   "ps -o tty= -p $$; echo err >&2; exit 3", pty=True, cols=100, rows=30)
    assert r["pty"] is True
    assert r["exit_code"] == 3
    out = r["stdout"].replace("\r\n", "\n")
    lines = out.splitlines()
    # The terminal is allocated in the sandbox's own devpts, so its name resolves there.
    assert lines[0].startswith("/dev/pts/"), out
    assert "all-ttys" in lines
    assert "30 100" in lines
    assert "xterm-256color" in lines
    assert "err" in lines  # stderr is the terminal too: one stream
    assert r["stderr"] == "" and r["stderr_bytes"] == 0
    # It is the controlling terminal of the command's session.
    assert any(line.strip().startswith("pts/") for line in lines), out


def test_pty_defaults_and_env(daemon, sandbox):
    r = daemon.run(sandbox, "stty size; echo $TERM", pty=True, env={"TERM": "vt100"})
    assert r["stdout"].replace("\r\n", "\n") == "24 80\nvt100\n"
    r = daemon.run(sandbox, "echo $TERM; test -t 0 || echo notty")
    assert r["stdout"] == "xterm\nnotty\n" and r["pty"] is False


@pytest.mark.parametrize("body", [
    {"cols": 0}, {"rows": 0}, {"cols": 1001}, {"rows": 100000}, {"cols": "80"}, {"cols": 1.5}, {"pty": "yes"},
])
def test_bad_pty_fields(daemon, sandbox, body):
    r = daemon.request("POST", f"/v1/sandboxes/{sandbox}/commands", dict({"command": "true", "pty": True}, **body))
    assert r.status == 400, r
    assert r.error_code() == "invalid_argument"


def test_resize_errors(daemon, sandbox):
    cid = start(daemon, sandbox, "sleep 30")
    path = f"/v1/sandboxes/{sandbox}/commands/{cid}/resize"
    for body in [{}, {"cols": 10}, {"cols": 0, "rows": 10}, {"cols": 10, "rows": 1001}, {"cols": "a", "rows": 2}]:
        r = daemon.request("POST", path, body)
        assert r.status == 400, (body, r)
    assert daemon.request("POST", f"/v1/sandboxes/{sandbox}/commands/nope/resize",
                          {"cols": 10, "rows": 10}).status == 404
    plain = daemon.request("POST", f"/v1/sandboxes/{sandbox}/commands", {"command": "sleep 30"}).json()["id"]
    r = daemon.request("POST", f"/v1/sandboxes/{sandbox}/commands/{plain}/resize", {"cols": 10, "rows": 10})
    assert r.status == 409, r
    for c in (cid, plain):
        daemon.request("POST", f"/v1/sandboxes/{sandbox}/commands/{c}/kill")


WINCH_SCRIPT = ("trap 'echo winch=$(stty size)' WINCH; echo ready; "
                "while :; do sleep 0.05; done")


def test_resize_http_sends_sigwinch(daemon, sandbox):
    cid = start(daemon, sandbox, WINCH_SCRIPT, cols=80, rows=24)
    wait_output(daemon, sandbox, cid, "ready")
    r = daemon.request("POST", f"/v1/sandboxes/{sandbox}/commands/{cid}/resize", {"cols": 120, "rows": 40})
    assert r.status == 204, r
    wait_output(daemon, sandbox, cid, "winch=40 120")
    r = daemon.request("POST", f"/v1/sandboxes/{sandbox}/commands/{cid}/resize", {"cols": 33, "rows": 11})
    assert r.status == 204, r
    wait_output(daemon, sandbox, cid, "winch=11 33")
    daemon.request("POST", f"/v1/sandboxes/{sandbox}/commands/{cid}/kill")
    assert wait_exit(daemon, sandbox, cid)["error"]["code"] == "killed"


def test_resize_and_stdin_over_websocket(daemon, sandbox):
    cid = start(daemon, sandbox, "sh -i", env={"PS1": "$ "})
    ws = WebSocket(daemon, f"/v1/sandboxes/{sandbox}/commands/{cid}/stream")
    out = b""

    def read_until(needle):
        nonlocal out
        deadline = time.time() + 15
        while needle not in out:
            assert time.time() < deadline, out
            try:
                op, payload = ws.recv()
            except TimeoutError:
                raise AssertionError((needle, out))
            if op == 1:
                m = json.loads(payload)
                if m["type"] == "output":
                    assert m["stream"] == "stdout"
                    assert m["offset"] == len(out)
                    out += m["data"].encode()

    ws.send({"type": "stdin", "data": "trap 'echo winch=$(stty size)' WINCH; echo go-$((1+1))\n"})
    read_until(b"go-2")
    ws.send({"type": "resize", "cols": 132, "rows": 50})
    ws.send({"type": "stdin", "data": "stty size\n"})
    read_until(b"50 132")
    ws.send({"type": "stdin", "data": "exit 4\n"})
    exit_msg = None
    for m in ws.messages():
        if m["type"] == "exit":
            exit_msg = m
    ws.close()
    assert exit_msg and exit_msg["exit_code"] == 4 and exit_msg["pty"] is True


def test_websocket_bad_resize_closes(daemon, sandbox):
    cid = start(daemon, sandbox, "sleep 30")
    ws = WebSocket(daemon, f"/v1/sandboxes/{sandbox}/commands/{cid}/stream")
    ws.send({"type": "resize", "cols": 0, "rows": 5})
    while True:
        op, payload = ws.recv()
        if op == 8:
            assert struct.unpack(">H", payload[:2])[0] == 1003
            break
    ws.close()
    daemon.request("POST", f"/v1/sandboxes/{sandbox}/commands/{cid}/kill")


def test_ctrl_c_interrupts_foreground_job(daemon, sandbox):
    cid = start(daemon, sandbox, "sh -i", env={"PS1": "$ "})
    stdin(daemon, sandbox, cid, b"sleep 100\n")
    # Wait until sleep runs in the foreground (the shell echoes our line first).
    wait_for(lambda: "sleep" in daemon.run(sandbox, "ps -eo comm")["stdout"], what="sleep running")
    t0 = time.time()
    stdin(daemon, sandbox, cid, b"\x03")
    # An interactive shell abandons the rest of a line whose job died of SIGINT: ask on the next one.
    stdin(daemon, sandbox, cid, b"echo after=$?\n")
    out = wait_output(daemon, sandbox, cid, "after=130")
    assert time.time() - t0 < 10
    assert "^C" in out  # the line discipline echoes it
    stdin(daemon, sandbox, cid, b"exit 7\n")
    st = wait_exit(daemon, sandbox, cid)
    assert st["exit_code"] == 7 and st["error"] is None


def test_eof_with_ctrl_d_and_signal_exit(daemon, sandbox):
    cid = start(daemon, sandbox, "cat; echo cat-done")
    stdin(daemon, sandbox, cid, b"hello\n")
    wait_output(daemon, sandbox, cid, "hello\r\nhello\r\n")  # echo by the terminal, then cat's copy
    stdin(daemon, sandbox, cid, b"\x04")
    wait_output(daemon, sandbox, cid, "cat-done")
    assert wait_exit(daemon, sandbox, cid)["exit_code"] == 0
    cid = start(daemon, sandbox, ["sleep", "100"])
    wait_for(lambda: "sleep" in daemon.run(sandbox, "ps -eo comm")["stdout"], what="sleep running")
    stdin(daemon, sandbox, cid, b"\x1c")  # ^\ : SIGQUIT to the foreground process group
    st = wait_exit(daemon, sandbox, cid)
    assert st["signal"] == signal.SIGQUIT and st["exit_code"] == 128 + signal.SIGQUIT


def test_output_replay_from_offset(daemon, sandbox):
    # More than the shim's 256 KiB ring, so early offsets are replayed from the log file.
    r = daemon.run(sandbox, "seq 1 120000", pty=True)
    full = r["stdout"].encode()
    assert r["stdout_bytes"] == len(full) > 256 * 1024
    assert full.startswith(b"1\r\n2\r\n") and full.endswith(b"\r\n120000\r\n")
    cid = r["id"]
    for off in (0, 1, 5000, len(full) - 300 * 1024, len(full) - 100, len(full)):
        events = daemon.sse(sandbox, cid, stdout_offset=off)
        out, err, ex = collect(events)
        assert out == full[off:], off
        assert err == b"" and ex["exit_code"] == 0
        outs = [e for n, e in events if n == "output"]
        if outs:
            assert outs[0]["offset"] == off


def test_replay_while_running_over_websocket(daemon, sandbox):
    cid = start(daemon, sandbox, "sh -i", env={"PS1": "$ "})
    stdin(daemon, sandbox, cid, b"echo one-$((1+1))\n")
    first = wait_output(daemon, sandbox, cid, "one-2\r\n").encode()
    # A client that saw the first bytes reconnects from its offset: it gets only what followed.
    ws = WebSocket(daemon, f"/v1/sandboxes/{sandbox}/commands/{cid}/stream?stdout_offset={len(first)}")
    ws.send({"type": "stdin", "data": "echo two-$((2+1)); exit 0\n"})
    got = b""
    offsets = []
    for m in ws.messages():
        if m["type"] == "output":
            offsets.append(m["offset"])
            got += m["data"].encode()
        else:
            assert m["exit_code"] == 0
    ws.close()
    assert offsets[0] == len(first)
    assert b"two-3\r\n" in got and b"one-2" not in got.split(b"two")[-1]
    assert log_text(daemon, sandbox, cid).encode() == first + got


def test_command_not_found_on_pty(daemon, sandbox):
    r = daemon.run(sandbox, ["/no/such/thing"], pty=True)
    assert r["exit_code"] == 127 and r["error"]["code"] == "command_not_found" and r["pty"] is True


# --- sbx shell through a real pseudo-terminal ------------------------------------------------------

class Term:
    """Runs the CLI as the session leader of a fresh pty (our slave end stays open to read its termios)."""

    def __init__(self, daemon, args, cols=90, rows=25):
        self.master, self.slave = os.openpty()
        self.set_size(cols, rows)
        attrs = termios.tcgetattr(self.slave)
        attrs[3] |= termios.ECHO | termios.ICANON  # a normal cooked terminal to start from
        termios.tcsetattr(self.slave, termios.TCSANOW, attrs)
        self.before = termios.tcgetattr(self.slave)
        env = dict(os.environ, SBX_URL=daemon.url)
        slave = self.slave

        def become_terminal_owner():
            fcntl.ioctl(slave, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen([os.path.join(BIN, "sbx"), *args], stdin=slave, stdout=slave, stderr=slave,
                                     env=env, start_new_session=True, preexec_fn=become_terminal_owner)
        self.out = b""

    def set_size(self, cols, rows):
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def send(self, data):
        os.write(self.master, data)

    def read_until(self, needle, timeout=20):
        deadline = time.time() + timeout
        while needle not in self.out:
            left = deadline - time.time()
            assert left > 0, (needle, self.out)
            r, _, _ = select.select([self.master], [], [], left)
            if r:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    assert needle in self.out, (needle, self.out)
                self.out += chunk
        return self.out

    def wait(self, timeout=20):
        code = self.proc.wait(timeout=timeout)
        return code

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)
        os.close(self.slave)


def test_shell_interactive_resize_and_exit_code(daemon, sandbox):
    t = Term(daemon, ["shell", sandbox, "--", "sh", "-i"], cols=90, rows=25)
    try:
        t.read_until(b"# ")  # sh's prompt for root
        # Raw mode while the CLI runs: no local echo or line editing, keys go through as bytes.
        during = termios.tcgetattr(t.slave)
        assert not during[3] & (termios.ECHO | termios.ICANON | termios.ISIG)
        t.send(b"stty size; echo $TERM\r")
        t.read_until(b"25 90\r\nxterm-256color")
        t.send(b"trap 'echo winch=$(stty size)' WINCH\r")
        t.set_size(140, 45)  # the kernel sends SIGWINCH to the CLI (its terminal's foreground group)
        t.proc.send_signal(signal.SIGWINCH)
        t.send(b"stty size\r")
        t.read_until(b"45 140")
        t.send(b"sleep 100\r")
        wait_for(lambda: "sleep" in daemon.run(sandbox, "ps -eo comm")["stdout"], what="sleep running")
        t.send(b"\x03")  # ^C travels as a byte: the sandbox's terminal interrupts sleep, not the CLI
        t.send(b"echo after=$?\r")
        t.read_until(b"after=130")
        assert t.proc.poll() is None
        t.send(b"exit 42\r")
        assert t.wait() == 42
        assert termios.tcgetattr(t.slave) == t.before
    finally:
        t.close()


def test_shell_default_login_shell(daemon, sandbox):
    t = Term(daemon, ["shell", sandbox])
    try:
        t.send(b"echo shell=$0 tty=$(tty); exit 3\r")
        out = t.read_until(b"tty=/dev/pts/")
        assert b"shell=-" in out or b"shell=/bin/" in out, out
        assert t.wait() == 3
        assert termios.tcgetattr(t.slave) == t.before
    finally:
        t.close()


def test_shell_sigterm_restores_terminal(daemon, sandbox):
    t = Term(daemon, ["shell", sandbox, "--", "sh", "-c", "echo started; sleep 100"])
    try:
        t.read_until(b"started")
        wait_for(lambda: not termios.tcgetattr(t.slave)[3] & termios.ECHO, what="raw mode")
        t.proc.send_signal(signal.SIGTERM)
        assert t.wait() == 128 + signal.SIGTERM
        assert termios.tcgetattr(t.slave) == t.before
        # The remote command was hung up.
        wait_for(lambda: "sleep" not in daemon.run(sandbox, "ps -eo comm")["stdout"], what="sleep gone")
    finally:
        t.close()


def test_shell_usage_errors(daemon):
    p = subprocess.run([os.path.join(BIN, "sbx"), "shell"], env=dict(os.environ, SBX_URL=daemon.url),
                       capture_output=True, timeout=30)
    assert p.returncode == 125 and b"missing sandbox id" in p.stderr
    p = subprocess.run([os.path.join(BIN, "sbx"), "shell", "sbx_nope", "--", "true"],
                       env=dict(os.environ, SBX_URL=daemon.url), capture_output=True, timeout=30)
    assert p.returncode == 125 and b"not_found" in p.stderr


def test_exec_tty(daemon, sandbox):
    t = Term(daemon, ["exec", "--tty", sandbox, "--", "sh", "-c", "tty; stty size; read x; echo got=$x; exit 6"],
             cols=77, rows=21)
    try:
        t.read_until(b"21 77")
        t.send(b"abc\r")
        out = t.read_until(b"got=abc")
        assert b"/dev/pts/" in out
        assert t.wait() == 6
        assert termios.tcgetattr(t.slave) == t.before
    finally:
        t.close()
    p = subprocess.run([os.path.join(BIN, "sbx"), "run", "--tty", "--", "true"],
                       env=dict(os.environ, SBX_URL=daemon.url), capture_output=True, timeout=30)
    assert p.returncode == 125


def test_shell_options_without_a_terminal(daemon, sandbox):
    # stdin and stdout are not terminals: no raw mode, the default 80x24, options before the id.
    p = subprocess.run([os.path.join(BIN, "sbx"), "shell", "-e", "FOO=bar", "-w", "/tmp", sandbox, "--", "sh", "-c",
                        "echo $FOO $(pwd) $(stty size); exit 9"],
                       env=dict(os.environ, SBX_URL=daemon.url), stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=60)
    assert p.returncode == 9, p
    assert p.stdout == b"bar /tmp 24 80\r\n", p
