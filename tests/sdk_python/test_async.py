"""AsyncSandboxClient, AsyncSandbox and AsyncCommandHandle against a real sbxd, over SSE and (when the
websockets package is importable) over WebSocket."""
import asyncio
import builtins
import functools
import os
import time

import pytest

import sbx
from conftest import ADMIN_KEY
from helpers import (EXPECTED_ERR, EXPECTED_OUT, PRODUCER, SLOW_EXPECTED, SLOW_PRODUCER, RestartableDaemon,
                     check_contiguous, unused_port_url)
from sbx import errors
from sbx.aio import HAVE_WEBSOCKETS

TRANSPORTS = ["sse", pytest.param("websocket", marks=pytest.mark.skipif(
    not HAVE_WEBSOCKETS, reason="the websockets package (python3-websockets) is not installed"))]


def arun(fn):
    """Runs an async test function in a fresh event loop (no pytest-asyncio needed)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return asyncio.run(asyncio.wait_for(fn(*args, **kwargs), 120))
    return wrapper


def aclient(url, transport="sse", **kw):
    return sbx.AsyncSandboxClient(url, api_key=ADMIN_KEY, transport=transport, **kw)


@arun
async def test_health_metrics_and_sandbox_contexts(daemon):
    async with aclient(daemon.url) as ac:
        assert (await ac.health()).status == "ok"
        assert "sbx_sandboxes" in await ac.daemon_metrics()
        async with ac.sandbox(name="sdk-actx", env={"FOO": "bar"}, memory_mb=256, metadata={"m": "1"}) as sb:
            assert sb.state == "running" and sb.name == "sdk-actx" and sb.resources.memory_mb == 256
            assert (await sb.run("echo $FOO")).stdout == "bar\n"
            sid = sb.id
        assert (await ac.get_sandbox(sid)).state == "deleted"
        async with await ac.sandbox() as sb2:  # the spelling
            sid2 = sb2.id
        assert (await ac.get_sandbox(sid2)).state == "deleted"
        sb3 = await ac.sandbox()
        async with sb3:
            pass
        assert (await ac.get_sandbox(sb3.id)).state == "deleted"


@arun
async def test_get_list_update_delete(daemon):
    async with aclient(daemon.url) as ac:
        a = await ac.create_sandbox(name="sdk-alist", metadata={"ateam": "x"}, idle_ttl_seconds=100)
        b = await ac.create_sandbox(metadata={"ateam": "x"})
        try:
            assert (await ac.get_sandbox("sdk-alist")).id == a.id
            assert [s.id for s in await ac.list_sandboxes(metadata={"ateam": "x"})] == [a.id, b.id]
            assert a.id in {s.id for s in await ac.list_sandboxes(state="running")}
            u = await ac.update_sandbox(a.id, idle_ttl_seconds=200, metadata={"ateam": "z"})
            assert u.idle_ttl_seconds == 200 and u.metadata == {"ateam": "z"}
            with pytest.raises(errors.ConflictError):
                await ac.create_sandbox(name="sdk-alist")
        finally:
            await ac.delete_sandbox(a.id)
            await b.delete()
        assert a.id in {s.id for s in await ac.list_sandboxes(state="deleted")}
        with pytest.raises(errors.NotFoundError):
            await ac.delete_sandbox("sbx_nope")
        await ac.delete_sandbox("sbx_nope", missing_ok=True)
        with pytest.raises(errors.NotFoundError):
            await ac.get_sandbox("sbx_nope")


@arun
async def test_lifecycle(daemon):
    async with aclient(daemon.url) as ac:
        sb = await ac.create_sandbox()
        assert (await sb.pause()).state == "paused" and (await sb.refresh()).state == "paused"
        assert (await sb.resume()).state == "running"
        m = await sb.metrics()
        assert m.state == "running" and m.memory_bytes > 0
        assert (await sb.stop()).state == "stopped"
        with pytest.raises(errors.NotRunningError):
            await sb.run("true")
        assert (await sb.start()).state == "running"
        assert (await sb.renew(300)).timeout_seconds == 300 and sb.expires_at
        assert (await sb.update(timeout_seconds=0)).expires_at is None
        await sb.delete()
        assert sb.state == "deleted"
        await sb.delete(missing_ok=True)


@arun
async def test_run(daemon):
    async with aclient(daemon.url) as ac, ac.sandbox() as sb:
        r = await sb.run("echo hi; echo err >&2; exit 3")
        assert (r.stdout, r.stderr, r.exit_code, r.success) == ("hi\n", "err\n", 3, False)
        r = await sb.run(["sh", "-c", 'echo "$A $PWD"'], env={"A": "1"}, cwd="/tmp")
        assert r.stdout == "1 /tmp\n"
        assert (await sb.run("cat", stdin="in")).stdout == "in"
        assert (await sb.run("od -An -tx1", stdin=b"\x00\xff")).stdout.split() == ["00", "ff"]
        assert (await sb.run(r"printf 'a\377b'")).stdout_raw == b"a\xffb"
        assert (await sb.run(["no-such-binary-xyz"])).exit_code == 127
        out, err = [], []

        async def async_cb(s):
            err.append(s)

        r = await sb.run("for i in 1 2 3; do echo o$i; echo e$i >&2; done", on_stdout=out.append, on_stderr=async_cb)
        assert "".join(out) == r.stdout == "o1\no2\no3\n" and "".join(err) == "e1\ne2\ne3\n"
        with pytest.raises(errors.CommandTimeoutError) as ei:
            await sb.run("echo partial; sleep 30", timeout=0.5)
        assert ei.value.result.stdout == "partial\n" and isinstance(ei.value, builtins.TimeoutError)
        h = await sb.run("sleep 30", timeout=0.3, wait=False)
        with pytest.raises(errors.CommandTimeoutError):
            await h.wait()
        big = await sb.run("head -c 3000000 /dev/zero | tr '\\0' x")
        assert big.stdout == "x" * 3000000
        # Several commands at once on one client.
        rs = await asyncio.gather(*(sb.run(f"sleep 0.2; echo {i}") for i in range(5)))
        assert [x.stdout for x in rs] == [f"{i}\n" for i in range(5)]



@arun
async def test_run_as_user(daemon):
    async with aclient(daemon.url) as ac, ac.sandbox() as sb:
        assert (await sb.run("id -u; pwd", user="daemon")).stdout == "1\n/usr/sbin\n"
        assert (await sb.run("id -u; id -g", user="1234:5678")).stdout == "1234\n5678\n"
        h = await sb.run("id -un", user="nobody", wait=False)
        assert (await h.wait()).stdout == "nobody\n"
        with pytest.raises(errors.InvalidArgumentError):
            await sb.run("id -u", user="no-such-user-xyz")


@pytest.mark.parametrize("transport", TRANSPORTS)
@arun
async def test_command_handle(daemon, transport):
    async with aclient(daemon.url, transport) as ac, ac.sandbox() as sb:
        assert ac.transport == transport
        h = await sb.run("python3 -i", wait=False)
        assert h.pid and not h.done
        await h.send_input("print(6*7)\n")
        await h.close_stdin()
        chunks = [c async for c in h]
        check_contiguous(chunks)
        assert h.done and h.exit_code == 0 and (await h.result).stdout == "42\n"
        info = await h.info()
        assert info.finished and info.stdout_bytes == 3
        assert (await sb.command(h.command_id)).id == h.command_id
        assert h.command_id in [c.id for c in await sb.commands()]
        # stdin and signals while the stream is open (over the WebSocket itself with that transport)
        h = await sb.run("trap 'echo int; exit 4' INT; echo armed; while :; do sleep 0.05; done", wait=False)
        seen = ""
        async for c in h:
            seen += c.data
            if seen == "armed\n":
                await h.signal("SIGINT")
        assert seen == "armed\nint\n" and h.exit_code == 4
        h = await sb.run("read x; echo got-$x", wait=False)
        it = h.__aiter__()
        await h.send_input(b"abc\n")
        assert [c.data async for c in it] == ["got-abc\n"]
        h = await sb.run("for i in 1 2 3 4; do echo $i; sleep 0.05; done", wait=False)
        it = h.__aiter__()
        first = await it.__anext__()
        await it.aclose()
        rest = [c async for c in h]
        assert first.data + "".join(c.data for c in rest) == "1\n2\n3\n4\n"
        h2 = await sb.reconnect(h.command_id, stdout_offset=4)
        assert (await h2.wait()).stdout == "3\n4\n"
        page = await sb.logs(h.command_id, limit=3)
        assert page.text == "1\n2" and not page.eof
        assert (await h.logs(cursor=page.next_cursor)).eof
        h = await sb.run("sleep 30", wait=False)
        await h.kill()
        r = await h.wait()
        assert r.exit_code == 137 and r.error.code == "killed"
        h = await sb.run("sleep 30", wait=False)
        await h.kill(signal="TERM")
        assert (await h.wait()).signal == 15
        r = await sb.run("true", ttl_seconds=0)
        with pytest.raises(errors.ExpiredError):
            await sb.reconnect(r.command_id)


@arun
async def test_files(daemon, tmp_path):
    async with aclient(daemon.url) as ac, ac.sandbox() as sb:
        assert (await sb.write("/app/a.py", "print(1)")).size == 8
        assert await sb.read("/app/a.py") == b"print(1)" and await sb.read_text("/app/a.py") == "print(1)"
        assert await sb.read("/app/a.py", offset=2, length=3) == b"int"
        blob = os.urandom(200000)

        async def parts():
            for i in range(0, len(blob), 50000):
                yield blob[i:i + 50000]

        assert (await sb.write("/app/blob", parts())).size == len(blob)
        assert await sb.read("/app/blob") == blob
        src = tmp_path / "f.bin"
        src.write_bytes(blob)
        assert (await sb.upload(src, "/app/up.bin", mode=0o640)).mode == "0640"
        assert await sb.download("/app/up.bin", tmp_path / "d.bin") == len(blob)
        assert (tmp_path / "d.bin").read_bytes() == blob
        assert sorted(e.name for e in await sb.ls("/app")) == ["a.py", "blob", "up.bin"]
        assert (await sb.stat("/app")).is_dir
        assert (await sb.mkdir("/d/e")).is_dir and await sb.exists("/d/e")
        assert (await sb.move("/app/a.py", "/d/a.py")).path == "/d/a.py"
        with pytest.raises(errors.ConflictError):
            await sb.remove("/d")
        await sb.remove("/d", recursive=True)
        assert not await sb.exists("/d")
        with pytest.raises(errors.NotFoundError):
            await sb.read("/nope")


@arun
async def test_keys_and_errors(daemon):
    async with aclient(daemon.url) as ac:
        k = await ac.create_key("sdk-atenant", max_memory_mb=300)
        assert k.key and k.id in {x.id for x in await ac.list_keys()}
        async with sbx.AsyncSandboxClient(daemon.url, api_key=k.key) as tenant:
            mine = await tenant.create_sandbox(memory_mb=256)
            with pytest.raises(errors.QuotaExceededError) as ei:
                await tenant.create_sandbox(memory_mb=256)
            assert ei.value.quota_type == "max_memory_mb"
            with pytest.raises(errors.PermissionDeniedError):
                await tenant.list_keys()
            await mine.delete()
            await ac.delete_key(k.id)
            with pytest.raises(errors.AuthenticationError):
                await tenant.list_sandboxes()
    t = time.monotonic()
    async with sbx.AsyncSandboxClient(unused_port_url(), retry_timeout=0.3) as dead:
        with pytest.raises(errors.ConnectionError):
            await dead.health()
    assert time.monotonic() - t < 5


@pytest.mark.parametrize("transport", TRANSPORTS)
@arun
async def test_stream_reconnects_after_dropped_connections(daemon, proxy, transport):
    async with aclient(proxy.url, transport, retry_timeout=10) as ac, ac.sandbox() as sb:
        h = await sb.run(PRODUCER, wait=False)
        chunks, drops = [], 0
        async for c in h:
            chunks.append(c)
            if len(chunks) in (4, 30, 60):
                drops += proxy.drop()
        assert drops >= 3
        check_contiguous(chunks)
        r = await h.wait()
        assert r.stdout == EXPECTED_OUT and r.stderr == EXPECTED_ERR
        loop = asyncio.get_running_loop()
        loop.call_later(0.4, proxy.drop)
        r = await sb.run("echo start >> /root/starts; sleep 1; echo done", command_id="adrop-once")
        assert r.stdout == "done\n" and await sb.read("/root/starts") == b"start\n"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_survives_sbxd_restart(transport):
    rd = RestartableDaemon(ADMIN_KEY)
    try:
        asyncio.run(asyncio.wait_for(_restart_scenario(rd, transport), 60))
    finally:
        left = rd.close()
    assert not left, left


async def _restart_scenario(rd, transport):
    async with aclient(rd.url, transport, retry_timeout=20) as ac:
        sb = await ac.create_sandbox()
        h = await sb.run(SLOW_PRODUCER, wait=False)
        chunks = []

        async def follow():
            async for c in h:
                chunks.append(c)

        fut = asyncio.gather(follow(), sb.run("echo s >> /root/starts; sleep 1.5; echo finished",
                                              command_id="arestart-once"))
        deadline = time.monotonic() + 20
        while h.offsets["stdout_offset"] < 20 or not await sb.exists("/root/starts"):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        await asyncio.to_thread(rd.kill9)
        await asyncio.sleep(0.3)
        await asyncio.to_thread(rd.restart)
        _, waited = await fut
        check_contiguous(chunks)
        assert "".join(c.data for c in chunks) == SLOW_EXPECTED
        assert waited.stdout == "finished\n" and await sb.read("/root/starts") == b"s\n"
        assert (await sb.run("echo after")).stdout == "after\n"
        await sb.delete()
