"""SandboxClient, Sandbox and CommandHandle against a real sbxd."""
import builtins
import os
import threading
import time

import pytest

import sbx
from conftest import ADMIN_KEY
from helpers import (EXPECTED_ERR, EXPECTED_OUT, PRODUCER, SLOW_EXPECTED, SLOW_PRODUCER, RestartableDaemon,
                     check_contiguous, unused_port_url)
from sbx import errors


def test_health_and_daemon_metrics(client):
    h = client.health()
    assert h.status == "ok" and h.version
    assert "sbx_sandboxes" in client.daemon_metrics()


def test_sandbox_context_manager_deletes(client):
    with client.sandbox(name="sdk-ctx", env={"FOO": "bar"}, metadata={"suite": "sdk"}, cpus=0.5, memory_mb=256,
                        pids=128, idle_ttl_seconds=300, delete_after_stop_seconds=60, timeout_seconds=900) as sb:
        assert sb.state == "running" and sb.name == "sdk-ctx" and sb.id.startswith("sbx_")
        assert sb.env["FOO"] == "bar" and sb.metadata == {"suite": "sdk"} and sb.snapshot == "host"
        r = sb.resources
        assert (r.cpus, r.memory_mb, r.pids) == (0.5, 256, 128)
        assert (sb.idle_ttl_seconds, sb.delete_after_stop_seconds, sb.timeout_seconds) == (300, 60, 900)
        assert sb.expires_at and sb.created_at and sb.raw["id"] == sb.id
        assert sb.run("echo $FOO").stdout == "bar\n"
        sid = sb.id
    assert client.get_sandbox(sid).state == "deleted"


def test_get_list_update_delete(client):
    a = client.create_sandbox(name="sdk-list-a", metadata={"team": "x", "k": "1"})
    b = client.create_sandbox(metadata={"team": "x"})
    try:
        assert client.get_sandbox("sdk-list-a") == a and client.get_sandbox(a.id).name == "sdk-list-a"
        assert [s.id for s in client.list_sandboxes(metadata={"team": "x"})] == [a.id, b.id]
        assert [s.id for s in client.list_sandboxes(metadata={"team": "x", "k": "1"})] == [a.id]
        assert a.id in {s.id for s in client.list_sandboxes(state="running")}
        assert a.id not in {s.id for s in client.list_sandboxes(state="stopped")}
        u = client.update_sandbox(a.id, idle_ttl_seconds=120, metadata={"team": "y"})
        assert u.idle_ttl_seconds == 120 and u.metadata == {"team": "y"}
        with pytest.raises(ValueError):
            client.update_sandbox(a.id)
        with pytest.raises(errors.InvalidArgumentError):
            client.list_sandboxes(state="bogus")
        with pytest.raises(errors.ConflictError):
            client.create_sandbox(name="sdk-list-a")
    finally:
        client.delete_sandbox(a.id)
        b.delete()
    assert client.get_sandbox(a.id).state == "deleted"
    assert a.id in {s.id for s in client.list_sandboxes(state="deleted")}
    with pytest.raises(errors.NotFoundError) as ei:
        client.delete_sandbox("sbx_doesnotexist")
    assert ei.value.code == "not_found" and ei.value.status == 404
    client.delete_sandbox("sbx_doesnotexist", missing_ok=True)


def test_lifecycle(sb):
    assert sb.pause().state == "paused"
    assert sb.refresh().state == "paused"
    assert sb.resume().state == "running"
    m = sb.metrics()
    assert m.state == "running" and m.memory_bytes > 0 and m.limits["memory_bytes"] == 512 << 20
    assert m.disk_free_bytes is not None and m.pids >= 1
    assert sb.stop().state == "stopped" and sb.state_reason
    with pytest.raises(errors.NotRunningError) as ei:
        sb.run("true")
    assert isinstance(ei.value, errors.NotReadyError) and isinstance(ei.value, errors.ConflictError)
    with pytest.raises(errors.NotRunningError):
        sb.metrics()
    assert sb.start().state == "running"
    assert sb.run("echo back").stdout == "back\n"
    with pytest.raises(errors.InvalidArgumentError):
        sb.renew()  # no lifetime set and none given
    before = sb.renew(600).expires_at
    assert before and sb.timeout_seconds == 600
    assert sb.update(timeout_seconds=0, delete_after_stop_seconds=30).expires_at is None
    assert sb.delete_after_stop_seconds == 30
    sb.delete()
    assert sb.state == "deleted"
    with pytest.raises(errors.NotFoundError):
        sb.delete()
    sb.delete(missing_ok=True)


def test_run(sb):
    r = sb.run("echo hi; echo err >&2; exit 3")
    assert (r.stdout, r.stderr, r.exit_code, r.success) == ("hi\n", "err\n", 3, False)
    assert r.output == "hi\nerr\n" and r.command_id.startswith("py-") and not r.timed_out
    r = sb.run(["sh", "-c", 'echo "$A $PWD"'], env={"A": "1"}, cwd="/tmp")
    assert r.stdout == "1 /tmp\n" and r.success
    assert sb.run("cat", stdin="from stdin").stdout == "from stdin"
    assert sb.run("od -An -tx1", stdin=b"\x00\xff").stdout.split() == ["00", "ff"]
    r = sb.run(r"printf 'a\377b'")
    assert r.stdout_raw == b"a\xffb" and r.stdout == "a\ufffdb"
    r = sb.run(["no-such-binary-xyz"])
    assert r.exit_code == 127 and r.error is not None and r.error.code == "command_not_found"
    r = sb.run("kill -TERM $$")
    assert (r.exit_code, r.signal) == (143, 15)
    out, err = [], []
    r = sb.run("for i in 1 2 3; do echo o$i; echo e$i >&2; done", on_stdout=out.append, on_stderr=err.append)
    assert "".join(out) == "o1\no2\no3\n" and "".join(err) == "e1\ne2\ne3\n" and r.stdout == "o1\no2\no3\n"
    r = sb.run("echo same", command_id="fixed-id")
    again = sb.run("echo same", command_id="fixed-id")  # get-or-create: the same command, not a new one
    assert again.stdout == "same\n" and again.info.started_at == r.info.started_at
    big = sb.run("head -c 3000000 /dev/zero | tr '\\0' x")
    assert big.stdout == "x" * 3000000


def test_run_as_user(sb):
    assert sb.run("id -u; pwd", user="daemon").stdout == "1\n/usr/sbin\n"
    assert sb.run("id -u; id -g", user="1234:5678").stdout == "1234\n5678\n"
    out = []
    r = sb.run("id -un", user="nobody", on_stdout=out.append)  # the streaming path sends it too
    assert r.stdout == "".join(out) == "nobody\n"
    with pytest.raises(errors.InvalidArgumentError):
        sb.run("id -u", user="no-such-user-xyz")


def test_run_timeout(sb):
    t = time.monotonic()
    with pytest.raises(errors.CommandTimeoutError) as ei:
        sb.run("echo partial; sleep 30", timeout=0.5)
    assert time.monotonic() - t < 10
    e = ei.value
    assert isinstance(e, errors.TimeoutError) and isinstance(e, builtins.TimeoutError)
    assert e.result.stdout == "partial\n" and e.result.timed_out and e.command_id == e.result.command_id
    h = sb.run("sleep 30", timeout=0.3, wait=False)
    with pytest.raises(errors.CommandTimeoutError):
        h.wait()
    with pytest.raises(errors.CommandTimeoutError):
        sb.run("echo x; sleep 30", timeout=0.3, on_stdout=lambda s: None)


def test_command_handle(sb):
    h = sb.run("python3 -i", wait=False)
    assert h.pid and not h.done and h.exit_code is None and "py-" in repr(h)
    h.send_input("print(6*7)\n")
    h.close_stdin()
    chunks = list(h)
    check_contiguous(chunks)
    assert "42\n" in "".join(c.data for c in chunks if c.stream == "stdout")
    assert h.done and h.exit_code == 0 and h.result.stdout == "42\n"
    assert h.offsets == {"stdout_offset": 3, "stderr_offset": len(h.result.stderr_raw)}
    info = h.info()
    assert info.finished and info.exit_code == 0 and info.stdout_bytes == 3 and info.id == h.command_id
    assert sb.command(h.command_id).log_bytes == info.log_bytes
    assert h.command_id in [c.id for c in sb.commands()]
    # Breaking out and iterating again continues where it stopped.
    h = sb.run("for i in 1 2 3 4; do echo $i; sleep 0.05; done", wait=False)
    first = next(iter(h))
    rest = list(h)
    assert first.data + "".join(c.data for c in rest) == "1\n2\n3\n4\n"
    # reconnect: a new handle on the same command replays, from the start or from offsets.
    h2 = sb.reconnect(h.command_id)
    assert "".join(c.data for c in h2) == "1\n2\n3\n4\n"
    h3 = sb.reconnect(h.command_id, stdout_offset=4)
    assert h3.result.stdout == "3\n4\n"
    # The combined log, paged.
    page = sb.logs(h.command_id, limit=3)
    assert page.cursor == 0 and page.next_cursor == 3 and not page.eof and page.text == "1\n2"
    page2 = h.logs(cursor=page.next_cursor)
    assert page2.eof and page2.finished and page2.text == "\n3\n4\n" and page2.command.exit_code == 0
    # kill, signals
    h = sb.run("sleep 30", wait=False)
    h.kill()
    r = h.wait()
    assert r.exit_code == 137 and r.error.code == "killed" and r.signal == 9
    h = sb.run("trap 'echo got-int; exit 5' INT; echo ready; while :; do sleep 0.05; done", wait=False)
    it = iter(h)
    assert next(it).data == "ready\n"
    h.signal("INT")
    assert h.result.exit_code == 5 and h.result.stdout == "ready\ngot-int\n"
    h = sb.run("sleep 30", wait=False)
    h.kill(signal=15)
    assert h.result.signal == 15
    # An expired command (ttl 0) and an unknown one.
    r = sb.run("true", ttl_seconds=0)
    with pytest.raises(errors.ExpiredError) as ei:
        sb.reconnect(r.command_id)
    assert isinstance(ei.value, errors.NotFoundError) and ei.value.code == "expired"
    with pytest.raises(errors.NotFoundError):
        sb.command("nope")


def test_files(sb, tmp_path):
    info = sb.write("/app/a.py", "print(1)")
    assert (info.path, info.size, info.is_file, info.mode) == ("/app/a.py", 8, True, "0644")
    assert sb.read("/app/a.py") == b"print(1)" and sb.read_text("/app/a.py") == "print(1)"
    assert sb.read("/app/a.py", offset=2, length=3) == b"int" and sb.read("/app/a.py", offset=6) == b"1)"
    assert sb.read("/app/a.py", offset=100) == b"" and sb.read("/app/a.py", length=0) == b""
    assert sb.run("python3 /app/a.py").stdout == "1\n"
    assert sb.write("/app/run.sh", b"#!/bin/sh\necho ran\n", mode=0o755).mode == "0755"
    assert sb.run("/app/run.sh").stdout == "ran\n"
    blob = os.urandom(300000)
    src = tmp_path / "blob.bin"
    src.write_bytes(blob)
    with open(src, "rb") as f:
        assert sb.write("/app/blob.bin", f).size == len(blob)
    assert sb.read("/app/blob.bin") == blob
    os.chmod(src, 0o600)
    assert sb.upload(src, "/app/up.bin").mode == "0600"
    dst = tmp_path / "down.bin"
    assert sb.download("/app/up.bin", dst) == len(blob) and dst.read_bytes() == blob
    assert sorted(e.name for e in sb.ls("/app")) == ["a.py", "blob.bin", "run.sh", "up.bin"]
    st = sb.stat("/app")
    assert st.is_dir and st.type == "dir" and not st.is_file
    assert sb.mkdir("/d/e/f", mode="0700").mode == "0700" and sb.exists("/d/e/f")
    moved = sb.move("/app/a.py", "/d/b.py")
    assert moved.path == "/d/b.py" and not sb.exists("/app/a.py")
    sb.write("/d/c.py", "c")
    with pytest.raises(errors.ConflictError):
        sb.move("/d/b.py", "/d/c.py")
    assert sb.move("/d/b.py", "/d/c.py", overwrite=True).size == 8
    with pytest.raises(errors.ConflictError):
        sb.remove("/d")
    sb.remove("/d/c.py")
    sb.remove("/d", recursive=True)
    assert not sb.exists("/d")
    with pytest.raises(errors.NotFoundError):
        sb.read("/nope")
    with pytest.raises(errors.NotFoundError):
        sb.download("/nope", tmp_path / "x")
    assert not (tmp_path / "x").exists()
    with pytest.raises(errors.InvalidArgumentError):
        sb.stat("relative/path")


def test_keys_tenants_and_auth_errors(client, daemon):
    k = client.create_key("sdk-tenant", max_sandboxes=1, max_memory_mb=1024)
    assert k.key.startswith("sbxk_") and k.max_sandboxes == 1 and k.max_memory_mb == 1024
    listed = {x.id: x for x in client.list_keys()}
    assert k.id in listed and listed[k.id].key is None and listed[k.id].name == "sdk-tenant"
    with sbx.SandboxClient(daemon.url, api_key=k.key) as tenant:
        mine = tenant.create_sandbox()
        try:
            assert [s.id for s in tenant.list_sandboxes()] == [mine.id]
            with pytest.raises(errors.QuotaExceededError) as ei:
                tenant.create_sandbox()
            e = ei.value
            assert e.quota_type == "max_sandboxes" and e.status == 429
            assert isinstance(e, errors.ResourceExhaustedError)
            with pytest.raises(errors.PermissionDeniedError):
                tenant.list_keys()
            other = client.create_sandbox()
            with pytest.raises(errors.NotFoundError):
                tenant.get_sandbox(other.id)
            other.delete()
            client.delete_key(k.id)
            with pytest.raises(errors.AuthenticationError) as ei:
                tenant.list_sandboxes()
            assert ei.value.status == 401 and ei.value.code == "unauthenticated"
        finally:
            client.delete_sandbox(mine.id)
    assert k.id not in {x.id for x in client.list_keys()}
    with sbx.SandboxClient(daemon.url, api_key="wrong") as bad:
        with pytest.raises(errors.AuthenticationError):
            bad.list_sandboxes()
        assert bad.health().status == "ok"  # no key needed


def test_config_and_connection_errors(monkeypatch, daemon):
    monkeypatch.setenv("SBX_URL", daemon.url)
    monkeypatch.setenv("SBX_API_KEY", ADMIN_KEY)
    c = sbx.SandboxClient()
    assert c.url == daemon.url and c.list_sandboxes() is not None
    c.close()
    assert c.health().status == "ok"  # usable after close
    t = time.monotonic()
    with pytest.raises(errors.ConnectionError) as ei:
        sbx.SandboxClient(unused_port_url(), retry_timeout=0.3).health()
    assert isinstance(ei.value, builtins.ConnectionError) and ei.value.code == "unavailable"
    assert time.monotonic() - t < 5
    with pytest.raises(ValueError):
        sbx.SandboxClient("ftp://x")


def test_stream_reconnects_after_dropped_connections(client, proxy):
    pc = sbx.SandboxClient(proxy.url, api_key=ADMIN_KEY, retry_timeout=10)
    sb = pc.create_sandbox()
    try:
        h = sb.run(PRODUCER, wait=False, command_id="drop-producer")
        chunks, drops = [], 0
        for c in h:
            chunks.append(c)
            if len(chunks) in (4, 30, 60):
                drops += proxy.drop()
        assert drops >= 3, drops
        check_contiguous(chunks)
        r = h.result
        assert r.stdout == EXPECTED_OUT and r.stderr == EXPECTED_ERR and r.exit_code == 0
        # A blocking run whose connection is cut while it waits: retried with the same command id, so
        # the command runs once and the answer still has all its output.
        timer = threading.Timer(0.4, proxy.drop)
        timer.start()
        r = sb.run("echo start >> /root/starts; sleep 1; echo done", command_id="drop-once")
        timer.join()
        assert r.stdout == "done\n" and sb.read("/root/starts") == b"start\n"
        # Same with callbacks (the stream path).
        out = []
        timer = threading.Timer(0.3, proxy.drop)
        timer.start()
        r = sb.run("echo s >> /root/starts2; for i in 1 2 3 4 5 6 7 8; do echo $i; sleep 0.1; done",
                   on_stdout=out.append)
        timer.join()
        assert "".join(out) == r.stdout == "".join(f"{i}\n" for i in range(1, 9))
        assert sb.read("/root/starts2") == b"s\n"
        assert proxy.accepted >= 5
    finally:
        client.delete_sandbox(sb.id)
        pc.close()


def test_survives_sbxd_restart():
    rd = RestartableDaemon(ADMIN_KEY)
    try:
        c = sbx.SandboxClient(rd.url, api_key=ADMIN_KEY, retry_timeout=20)
        sb = c.create_sandbox(name="sdk-restart")
        h = sb.run(SLOW_PRODUCER, wait=False)
        chunks, waited = [], {}

        def follow():
            chunks.extend(h)

        def blocking_run():
            waited["r"] = sb.run("echo s >> /root/starts; sleep 1.5; echo finished", command_id="restart-once")

        threads = [threading.Thread(target=follow), threading.Thread(target=blocking_run)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 20
        while h.offsets["stdout_offset"] < 20 or not sb.exists("/root/starts"):
            assert time.monotonic() < deadline, "no progress before the kill"
            time.sleep(0.02)
        rd.kill9()
        time.sleep(0.3)  # the command goes on while no daemon runs
        rd.restart()
        for t in threads:
            t.join(timeout=30)
        assert not any(t.is_alive() for t in threads)
        check_contiguous(chunks)
        assert "".join(x.data for x in chunks) == SLOW_EXPECTED and h.result.stdout == SLOW_EXPECTED
        assert waited["r"].stdout == "finished\n" and sb.read("/root/starts") == b"s\n"
        assert c.get_sandbox("sdk-restart").state == "running"
        assert sb.run("echo after").stdout == "after\n"
        sb.delete()
        c.close()
    finally:
        left = rd.close()
    assert not left, left
