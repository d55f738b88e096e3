"""The native /v1 API end to end against a real sbxd."""
import base64
import hashlib
import json
import os
import threading
import time

import pytest

from sbxtest import Daemon, WebSocket, collect, wait_for


# --- health, auth, errors -------------------------------------------------------------------------

def test_healthz(daemon):
    r = daemon.request("GET", "/healthz")
    assert r.status == 200
    assert r.json()["status"] == "ok"


def test_api_key_required_when_configured():
    with Daemon(api_key="s3cret-key") as d:
        assert d.request("GET", "/healthz", auth=False).status == 200
        r = d.request("GET", "/v1/sandboxes", auth=False)
        assert r.status == 401 and r.error_code() == "unauthenticated"
        r = d.request("GET", "/v1/sandboxes", auth=False, headers={"Authorization": "Bearer wrong"})
        assert r.status == 401
        assert d.request("GET", "/v1/sandboxes").status == 200
        assert d.request("GET", "/v1/sandboxes", auth=False, headers={"X-Api-Key": "s3cret-key"}).status == 200


def test_unknown_route_and_method(daemon):
    r = daemon.request("GET", "/v1/nope")
    assert r.status == 404 and r.error_code() == "not_found"
    r = daemon.request("PATCH", "/v1/sandboxes")
    assert r.status == 405 and r.error_code() == "method_not_allowed"


@pytest.mark.parametrize("body,code", [
    (b"{", "invalid_argument"),
    (b"[1,2]", "invalid_argument"),
    (b'{"snapshot": 5}', "invalid_argument"),
    (b'{"resources": {"memory_mb": "lots"}}', "invalid_argument"),
    (b'{"resources": {"cpus": 1000}}', "invalid_argument"),
    (b'{"env": {"A": 1}}', "invalid_argument"),
    (b'{"name": "../x"}', "invalid_argument"),
])
def test_create_bad_input(daemon, body, code):
    before = daemon.request("GET", "/v1/sandboxes").json()["sandboxes"]
    r = daemon.request("POST", "/v1/sandboxes", body=body, headers={"Content-Type": "application/json"})
    assert r.status == 400, r
    assert r.error_code() == code
    assert r.json()["error"]["message"]
    assert daemon.request("GET", "/v1/sandboxes").json()["sandboxes"] == before


def test_unknown_snapshot(daemon):
    r = daemon.request("POST", "/v1/sandboxes", {"snapshot": "nope"})
    assert r.status == 404 and r.error_code() == "not_found"


def test_body_too_large(daemon):
    r = daemon.request("POST", "/v1/sandboxes", body=b"{" + b" " * (2 << 20) + b"}",
                       headers={"Content-Type": "application/json"})
    assert r.status == 413 and r.error_code() == "too_large"


def test_missing_sandbox(daemon):
    for method, path in [("GET", "/v1/sandboxes/sbx_nope"), ("DELETE", "/v1/sandboxes/sbx_nope"),
                         ("POST", "/v1/sandboxes/sbx_nope/commands"),
                         ("GET", "/v1/sandboxes/sbx_nope/files?path=/etc/hostname")]:
        r = daemon.request(method, path, body=b"{}" if method == "POST" else None)
        assert r.status == 404, (method, path, r)
        assert r.error_code() == "not_found"


# --- sandboxes ------------------------------------------------------------------------------------

def test_sandbox_lifecycle(daemon):
    r = daemon.request("POST", "/v1/sandboxes", {"name": "life-1", "env": {"FOO": "bar"},
                                                 "metadata": {"owner": "t"},
                                                 "resources": {"cpus": 0.5, "memory_mb": 256, "pids": 128}})
    assert r.status == 201, r
    sb = r.json()
    assert sb["id"].startswith("sbx_") and sb["state"] == "running" and sb["name"] == "life-1"
    assert sb["resources"] == {"cpus": 0.5, "memory_mb": 256, "pids": 128, "disk_mb": 10240}
    assert sb["metadata"] == {"owner": "t"}
    got = daemon.request("GET", f"/v1/sandboxes/{sb['id']}").json()
    assert got["id"] == sb["id"]
    assert daemon.request("GET", "/v1/sandboxes/life-1").json()["id"] == sb["id"]
    ids = [s["id"] for s in daemon.request("GET", "/v1/sandboxes").json()["sandboxes"]]
    assert sb["id"] in ids
    r = daemon.request("POST", "/v1/sandboxes", {"name": "life-1"})
    assert r.status == 409 and r.error_code() == "conflict"
    out = daemon.run(sb["id"], "echo $FOO")
    assert out["stdout"] == "bar\n"
    daemon.delete(sb["id"])
    # Gone from the list; by id, its tombstone says so; every other route is 404.
    assert sb["id"] not in [s["id"] for s in daemon.request("GET", "/v1/sandboxes").json()["sandboxes"]]
    tomb = daemon.request("GET", f"/v1/sandboxes/{sb['id']}").json()
    assert tomb["state"] == "deleted" and tomb["state_reason"] == "deleted by request" and tomb["deleted_at"]
    assert daemon.request("GET", "/v1/sandboxes/life-1").status == 404, "a deleted sandbox's name is free"
    assert daemon.request("GET", f"/v1/sandboxes/{sb['id']}/commands").status == 404
    assert not os.path.exists(os.path.join(daemon.data_dir, "sandboxes", sb["id"]))


# --- commands -------------------------------------------------------------------------------------

def test_exec_wait_shell(daemon, sandbox):
    out = daemon.run(sandbox, "echo hello; echo oops >&2; exit 3")
    assert out["stdout"] == "hello\n"
    assert out["stderr"] == "oops\n"
    assert out["exit_code"] == 3
    assert out["state"] == "exited"
    assert out["error"] is None


def test_exec_argv_env_cwd(daemon, sandbox):
    out = daemon.run(sandbox, ["sh", "-c", 'echo "$A-$B"; pwd'], env={"A": "1", "B": "two words"}, cwd="/tmp")
    assert out["stdout"] == "1-two words\n/tmp\n"
    assert out["exit_code"] == 0


def test_exec_default_cwd_and_path(daemon, sandbox):
    out = daemon.run(sandbox, "pwd; echo $HOME; command -v python3")
    lines = out["stdout"].split("\n")
    assert lines[0] == "/root" and lines[1] == "/root"
    assert lines[2].endswith("python3")


def test_exec_not_found(daemon, sandbox):
    out = daemon.run(sandbox, ["/no/such/binary"])
    assert out["exit_code"] == 127
    assert out["error"]["code"] == "command_not_found"
    out = daemon.run(sandbox, "no-such-command-xyz")
    assert out["exit_code"] == 127


def test_exec_timeout(daemon, sandbox):
    t0 = time.monotonic()
    out = daemon.run(sandbox, "echo started; sleep 30", timeout=0.5)
    assert time.monotonic() - t0 < 10
    assert out["error"]["code"] == "timeout"
    assert out["stdout"] == "started\n"
    assert out["exit_code"] != 0


def test_exec_stdin_field(daemon, sandbox):
    out = daemon.run(sandbox, "cat; echo; echo done", stdin="line1\nline2")
    assert out["stdout"] == "line1\nline2\ndone\n"


def test_exec_binary_output_is_base64(daemon, sandbox):
    out = daemon.run(sandbox, "printf '\\377\\000\\001'")
    assert out["stdout_encoding"] == "base64"
    assert base64.b64decode(out["stdout"]) == b"\xff\x00\x01"


@pytest.mark.parametrize("body", [
    {"command": 5}, {"command": []}, {"command": ["ok", 3]}, {"command": "x", "timeout": -1},
    {"command": "x", "cwd": 7}, {"command": "x", "env": ["A=1"]}, {"command": "x", "id": "../bad"}, {},
])
def test_exec_bad_input(daemon, sandbox, body):
    r = daemon.request("POST", f"/v1/sandboxes/{sandbox}/commands", body)
    assert r.status == 400, (body, r)
    assert r.error_code() == "invalid_argument"


def test_client_id_get_or_create(daemon, sandbox):
    r1 = daemon.request("POST", f"/v1/sandboxes/{sandbox}/commands", {"id": "job-1", "command": "echo once"})
    assert r1.status == 201, r1
    r2 = daemon.request("POST", f"/v1/sandboxes/{sandbox}/commands", {"id": "job-1", "command": "echo once"})
    assert r2.status == 200, r2
    assert r2.json()["id"] == "job-1"
    out, err, ex = collect(daemon.sse(sandbox, "job-1"))
    assert out == b"once\n"  # ran exactly once
    assert ex["exit_code"] == 0


def test_stream_sse_and_reconnect_exactly_once(daemon, sandbox):
    r = daemon.request("POST", f"/v1/sandboxes/{sandbox}/commands",
                       {"command": "for i in $(seq 1 200); do echo line-$i; echo err-$i >&2; done"})
    assert r.status == 201
    cid = r.json()["id"]
    out, err, ex = collect(daemon.sse(sandbox, cid))
    expected_out = "".join(f"line-{i}\n" for i in range(1, 201)).encode()
    expected_err = "".join(f"err-{i}\n" for i in range(1, 201)).encode()
    assert out == expected_out and err == expected_err
    assert ex["exit_code"] == 0 and ex["stdout_bytes"] == len(expected_out)
    # Reconnect from arbitrary offsets: exactly the remaining bytes.
    events = daemon.sse(sandbox, cid, stdout_offset=1000, stderr_offset=7)
    out2, err2, _ = collect(events)
    assert out2 == expected_out[1000:] and err2 == expected_err[7:]
    first = [e for n, e in events if n == "output" and e["stream"] == "stdout"][0]
    assert first["offset"] == 1000


def test_stream_live_output_arrives_before_exit(daemon, sandbox):
    r = daemon.request("POST", f"/v1/sandboxes/{sandbox}/commands",
                       {"command": "echo first; sleep 1.5; echo second"})
    cid = r.json()["id"]
    c = daemon.conn()
    c.request("GET", f"/v1/sandboxes/{sandbox}/commands/{cid}/stream", headers=daemon.headers())
    resp = c.getresponse()
    t0 = time.monotonic()
    line = b""
    while b"first" not in line:
        line += resp.readline()
    assert time.monotonic() - t0 < 1.0, "first line was not streamed live"
    rest = resp.read().decode()
    assert "second" in rest and "event: exit" in rest
    c.close()


def test_large_output_integrity(daemon, sandbox):
    n = 12 * 1024 * 1024
    r = daemon.request("POST", f"/v1/sandboxes/{sandbox}/commands",
                       {"command": f"head -c {n} /dev/urandom > /tmp/big; cat /tmp/big; sha256sum /tmp/big >&2"})
    cid = r.json()["id"]
    out, err, ex = collect(daemon.sse(sandbox, cid, timeout=120))
    assert len(out) == n
    assert err.decode().split()[0] == hashlib.sha256(out).hexdigest()
    assert ex["exit_code"] == 0


def test_stdin_streaming_and_close(daemon, sandbox):
    r = daemon.request("POST", f"/v1/sandboxes/{sandbox}/commands",
                       {"command": "cat | sha256sum", "stdin_open": True})
    cid = r.json()["id"]
    data = os.urandom(300_000)
    for i in range(0, len(data), 100_000):
        r = daemon.request("POST", f"/v1/sandboxes/{sandbox}/commands/{cid}/stdin", body=data[i:i + 100_000])
        assert r.status == 204, r
    r = daemon.request("POST", f"/v1/sandboxes/{sandbox}/commands/{cid}/stdin?close=true", body=b"")
    assert r.status == 204
    out, _, ex = collect(daemon.sse(sandbox, cid))
    assert out.decode().split()[0] == hashlib.sha256(data).hexdigest()


def test_signal_and_kill(daemon, sandbox):
    r = daemon.request("POST", f"/v1/sandboxes/{sandbox}/commands",
                       {"command": "trap 'echo got-term; exit 42' TERM; echo ready; while :; do sleep 0.05; done"})
    cid = r.json()["id"]
    wait_for(lambda: daemon.request("GET", f"/v1/sandboxes/{sandbox}/commands/{cid}").json()["stdout_bytes"] > 0)
    r = daemon.request("POST", f"/v1/sandboxes/{sandbox}/commands/{cid}/signal", {"signal": "SIGTERM"})
    assert r.status == 204, r
    out, _, ex = collect(daemon.sse(sandbox, cid))
    assert b"got-term" in out and ex["exit_code"] == 42

    r = daemon.request("POST", f"/v1/sandboxes/{sandbox}/commands", {"command": "sleep 60"})
    cid = r.json()["id"]
    assert daemon.request("POST", f"/v1/sandboxes/{sandbox}/commands/{cid}/kill", body=b"").status == 204
    _, _, ex = collect(daemon.sse(sandbox, cid))
    assert ex["signal"] == 9 and ex["error"]["code"] == "killed"


def test_commands_list_and_get(daemon, sandbox):
    out = daemon.run(sandbox, "true")
    cmds = daemon.request("GET", f"/v1/sandboxes/{sandbox}/commands").json()["commands"]
    assert out["id"] in [c["id"] for c in cmds]
    r = daemon.request("GET", f"/v1/sandboxes/{sandbox}/commands/nope")
    assert r.status == 404 and r.error_code() == "not_found"


def test_websocket_stream_stdin_signal(daemon, sandbox):
    r = daemon.request("POST", f"/v1/sandboxes/{sandbox}/commands",
                       {"command": "read a; echo got:$a; cat", "stdin_open": True})
    cid = r.json()["id"]
    ws = WebSocket(daemon, f"/v1/sandboxes/{sandbox}/commands/{cid}/stream")
    ws.send({"type": "stdin", "data": "hello\n"})
    ws.send(b"binary-bytes\n")
    ws.send({"type": "close_stdin"})
    out = b""
    exit_msg = None
    for m in ws.messages():
        if m["type"] == "output" and m["stream"] == "stdout":
            out += base64.b64decode(m["data"]) if m.get("encoding") == "base64" else m["data"].encode()
        elif m["type"] == "exit":
            exit_msg = m
    ws.close()
    assert out == b"got:hello\nbinary-bytes\n"
    assert exit_msg["exit_code"] == 0


def test_concurrent_commands(daemon, sandbox):
    results = {}

    def one(i):
        results[i] = daemon.run(sandbox, f"echo {i}")["stdout"]

    threads = [threading.Thread(target=one, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: f"{i}\n" for i in range(16)}


# --- files ----------------------------------------------------------------------------------------

def test_files_roundtrip_binary(daemon, sandbox):
    data = os.urandom(3 * 1024 * 1024) + b"\0tail"
    r = daemon.request("PUT", f"/v1/sandboxes/{sandbox}/files?path=/root/dir%20x/blob.bin", body=data)
    assert r.status == 200, r
    assert r.json()["size"] == len(data)
    r = daemon.request("GET", f"/v1/sandboxes/{sandbox}/files?path=/root/dir%20x/blob.bin")
    assert r.status == 200 and r.body == data
    out = daemon.run(sandbox, "sha256sum '/root/dir x/blob.bin'; stat -c %u:%g '/root/dir x/blob.bin'")
    digest, owner = out["stdout"].split("\n")[0].split()[0], out["stdout"].split("\n")[1]
    assert digest == hashlib.sha256(data).hexdigest()
    assert owner == "0:0"


def test_files_range(daemon, sandbox):
    daemon.request("PUT", f"/v1/sandboxes/{sandbox}/files?path=/tmp/r.txt", body=b"0123456789")
    r = daemon.request("GET", f"/v1/sandboxes/{sandbox}/files?path=/tmp/r.txt", headers={"Range": "bytes=2-5"})
    assert r.status == 206 and r.body == b"2345"
    assert r.headers["content-range"] == "bytes 2-5/10"
    r = daemon.request("GET", f"/v1/sandboxes/{sandbox}/files?path=/tmp/r.txt", headers={"Range": "bytes=-3"})
    assert r.status == 206 and r.body == b"789"
    r = daemon.request("GET", f"/v1/sandboxes/{sandbox}/files?path=/tmp/r.txt", headers={"Range": "bytes=50-"})
    assert r.status == 416


def test_files_written_inside_are_readable(daemon, sandbox):
    daemon.run(sandbox, "mkdir -p /srv/app && printf 'from inside' > /srv/app/x.txt")
    r = daemon.request("GET", f"/v1/sandboxes/{sandbox}/files?path=/srv/app/x.txt")
    assert r.status == 200 and r.body == b"from inside"
    r = daemon.request("GET", f"/v1/sandboxes/{sandbox}/files?path=/etc/os-release")
    assert r.status == 200 and b"Debian" in r.body


def test_files_list_stat_mkdir_move_remove(daemon, sandbox):
    base = f"/v1/sandboxes/{sandbox}/files"
    r = daemon.request("POST", f"{base}/mkdir", {"path": "/work/a/b"})
    assert r.status == 200 and r.json()["type"] == "dir"
    daemon.request("PUT", f"{base}?path=/work/a/f1", body=b"1")
    daemon.request("PUT", f"{base}?path=/work/a/f2", body=b"22")
    entries = daemon.request("GET", f"{base}/list?path=/work/a").json()["entries"]
    assert [(e["name"], e["type"]) for e in entries] == [("b", "dir"), ("f1", "file"), ("f2", "file")]
    st = daemon.request("GET", f"{base}/stat?path=/work/a/f2").json()
    assert st["size"] == 2 and st["type"] == "file" and st["path"] == "/work/a/f2"
    r = daemon.request("POST", f"{base}/move", {"from": "/work/a/f1", "to": "/work/a/f2"})
    assert r.status == 409
    r = daemon.request("POST", f"{base}/move", {"from": "/work/a/f1", "to": "/work/c/f1"})
    assert r.status == 200, r
    assert daemon.run(sandbox, "cat /work/c/f1")["stdout"] == "1"
    r = daemon.request("DELETE", f"{base}?path=/work/a")
    assert r.status == 409 and r.error_code() == "conflict"
    assert daemon.request("DELETE", f"{base}?path=/work/a&recursive=true").status == 204
    assert daemon.request("GET", f"{base}/stat?path=/work/a").status == 404
    assert daemon.run(sandbox, "test -e /work/a; echo $?")["stdout"] == "1\n"


@pytest.mark.parametrize("path", ["", "relative/x", "/tmp/\x00x", "/" + "a" * 5000])
def test_files_bad_paths(daemon, sandbox, path):
    from urllib.parse import quote
    r = daemon.request("GET", f"/v1/sandboxes/{sandbox}/files?path={quote(path)}")
    assert r.status == 400, r
    assert r.error_code() == "invalid_argument"


def test_files_missing(daemon, sandbox):
    r = daemon.request("GET", f"/v1/sandboxes/{sandbox}/files?path=/nope/nothing")
    assert r.status == 404 and r.error_code() == "not_found"
