"""Checkpoints (create/list/get/delete/restore), sandboxes created from a checkpoint, and fork, sync and
asyncio, against the same real sbxd as the other SDK tests. Every sandbox made here is deleted."""
import asyncio
import functools
import uuid

import pytest

import sbx
from conftest import ADMIN_KEY
from sbx import errors


def arun(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return asyncio.run(asyncio.wait_for(fn(*args, **kwargs), 120))
    return wrapper


def aclient(url):
    return sbx.AsyncSandboxClient(url, api_key=ADMIN_KEY, transport="sse")


def uniq(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def check_checkpoint(ck, sb, name=None):
    assert isinstance(ck, sbx.Checkpoint)
    assert ck.id.startswith("ckp_") and ck.sandbox_id == sb.id
    assert ck.name == (name if name is not None else ck.id)     # unnamed: named by its id
    assert ck.snapshot == sb.snapshot == "host"
    assert ck.disk_mb == sb.resources.disk_mb > 0
    assert ck.size_bytes >= 0 and ck.created_at and ck.raw["id"] == ck.id


# --- sync ---------------------------------------------------------------------------------------------


def test_checkpoint_restore_sync(sb):
    sb.write("/root/state.txt", "v1")
    ck = sb.checkpoint("before")
    check_checkpoint(ck, sb, "before")
    unnamed = sb.checkpoint()
    check_checkpoint(unnamed, sb)
    assert [c.id for c in sb.checkpoints()] == [ck.id, unnamed.id]          # oldest first
    assert sb.get_checkpoint("before") == ck and sb.get_checkpoint(unnamed) == unnamed

    # A taken name is the typed conflict error (not BusyError: nothing else runs).
    with pytest.raises(errors.ConflictError) as ei:
        sb.checkpoint("before")
    assert ei.value.code == "conflict" and ei.value.status == 409 and not isinstance(ei.value, errors.BusyError)
    with pytest.raises(errors.InvalidArgumentError):
        sb.checkpoint("bad name!")

    # Change the files, start a process; restore puts the files back and the processes end.
    sb.write("/root/state.txt", "v2")
    sb.write("/root/new.txt", "new")
    h = sb.run("sleep 300", wait=False, idle_timeout=-1)
    assert sb.restore("before") is sb
    assert sb.state == "running"
    assert sb.read_text("/root/state.txt") == "v1"
    assert not sb.exists("/root/new.txt")
    assert h.command_id not in [c.id for c in sb.commands()]    # a fresh start: no process survives
    assert sb.run("pgrep -x sleep").exit_code == 1
    assert sb.run("echo alive").stdout == "alive\n"

    # By a Checkpoint object too; a stopped sandbox stays stopped.
    sb.write("/root/state.txt", "v3")
    sb.stop()
    assert sb.restore(ck).state == "stopped"
    assert sb.refresh().state == "stopped"
    sb.start()
    assert sb.read_text("/root/state.txt") == "v1"

    sb.delete_checkpoint(unnamed.name)
    assert [c.name for c in sb.checkpoints()] == ["before"]
    with pytest.raises(errors.NotFoundError):
        sb.delete_checkpoint(unnamed.name)
    sb.delete_checkpoint(unnamed.name, missing_ok=True)


def test_unknown_checkpoints_are_not_found_sync(client, sb):
    for call in (lambda: sb.get_checkpoint("nope"), lambda: sb.restore("nope"),
                 lambda: sb.delete_checkpoint("nope"),
                 lambda: client.create_sandbox(checkpoint="ckp_doesnotexist"),
                 lambda: client.create_sandbox(checkpoint=f"{sb.id}:nope"),
                 lambda: client.create_sandbox(checkpoint="sbx_doesnotexist:nope")):
        with pytest.raises(errors.NotFoundError) as ei:
            call()
        assert ei.value.code == "not_found" and ei.value.status == 404
    assert sb.checkpoints() == []
    sb.delete_checkpoint("nope", missing_ok=True)
    ck = sb.checkpoint()
    with pytest.raises(errors.InvalidArgumentError):            # not with a snapshot
        client.create_sandbox(checkpoint=ck, snapshot="host")
    with pytest.raises(errors.InvalidArgumentError):            # the disk size is the checkpoint's
        client.create_sandbox(checkpoint=ck, disk_mb=ck.disk_mb // 2)
    with pytest.raises(errors.InvalidArgumentError):            # neither an id nor SANDBOX:NAME
        client.create_sandbox(checkpoint="nonsense")
    with pytest.raises(ValueError):                             # a checkpoint of another sandbox
        with client.sandbox() as other:
            other.restore(ck)


def test_create_from_checkpoint_sync(client):
    name = uniq("sdk-ckp-src")
    with client.sandbox(name=name, disk_mb=512) as src:
        src.write("/root/app/data.txt", "from the checkpoint")
        src.run("chown 1234 /root/app/data.txt")
        ck = src.checkpoint("base")
        src.write("/root/app/data.txt", "changed after")
        # By the Checkpoint, its id, and SANDBOX_NAME:NAME.
        for ref in (ck, ck.id, f"{name}:base", f"{src.id}:base"):
            with client.sandbox(checkpoint=ref, env={"K": "v"}) as a:
                assert a.id != src.id and a.state == "running"
                assert a.snapshot == src.snapshot and a.resources.disk_mb == 512 == ck.disk_mb
                assert a.read_text("/root/app/data.txt") == "from the checkpoint"
                assert a.run("stat -c %u /root/app/data.txt; echo $K").stdout == "1234\nv\n"
                a.write("/root/app/data.txt", "mine")
            assert client.get_sandbox(a.id).state == "deleted"
        assert src.read_text("/root/app/data.txt") == "changed after"


def test_fork_sync(client):
    with client.sandbox(env={"FOO": "bar"}, metadata={"suite": "sdk-fork"}, memory_mb=256) as sb:
        sb.write("/root/shared.txt", "parent")
        forks = sb.fork(count=2)
        try:
            assert len(forks) == 2 and all(isinstance(f, sbx.Sandbox) for f in forks)
            assert len({f.id for f in forks} | {sb.id}) == 3
            for i, f in enumerate(forks):
                assert f.state == "running" and f.name is None
                assert f.env["FOO"] == "bar" and f.metadata == {"suite": "sdk-fork"}
                assert f.resources == sb.resources and f.snapshot == sb.snapshot
                assert f.read_text("/root/shared.txt") == "parent"
                f.write("/root/shared.txt", f"fork-{i}")
            # Independent: each sees its own write, the parent none of them.
            assert [f.read_text("/root/shared.txt") for f in forks] == ["fork-0", "fork-1"]
            assert sb.read_text("/root/shared.txt") == "parent"
            assert sorted(s.id for s in client.list_sandboxes(metadata={"suite": "sdk-fork"})) == \
                sorted([sb.id] + [f.id for f in forks])
            with pytest.raises(errors.InvalidArgumentError):
                sb.fork(0)
            with pytest.raises(errors.InvalidArgumentError):
                sb.fork(17)
            one = sb.fork()
            assert len(one) == 1
            with one[0]:
                assert one[0].read_text("/root/shared.txt") == "parent"
        finally:
            for f in forks:
                f.delete(missing_ok=True)
        assert all(client.get_sandbox(f.id).state == "deleted" for f in forks)


def test_busy_is_a_typed_error():
    e = errors.error_from_response(409, b'{"error": {"code": "busy", "message": "a fork of sandbox x is in progress"}}')
    assert isinstance(e, errors.BusyError) and isinstance(e, errors.NotReadyError)
    assert isinstance(e, errors.ConflictError) and e.code == "busy" and e.status == 409


# --- asyncio ------------------------------------------------------------------------------------------


@arun
async def test_checkpoints_async(daemon):
    async with aclient(daemon.url) as ac:
        async with ac.sandbox() as sb:
            await sb.write("/root/state.txt", "v1")
            ck = await sb.checkpoint("before")
            check_checkpoint(ck, sb, "before")
            unnamed = await sb.checkpoint()
            check_checkpoint(unnamed, sb)
            assert [c.name for c in await sb.checkpoints()] == ["before", unnamed.id]
            assert await sb.get_checkpoint("before") == ck
            with pytest.raises(errors.ConflictError):
                await sb.checkpoint("before")

            await sb.write("/root/state.txt", "v2")
            assert await sb.restore("before") is sb and sb.state == "running"
            assert await sb.read_text("/root/state.txt") == "v1"
            await sb.stop()
            assert (await sb.restore(ck)).state == "stopped"
            await sb.start()

            for call in (lambda: sb.get_checkpoint("nope"), lambda: sb.restore("nope"),
                         lambda: sb.delete_checkpoint("nope"), lambda: ac.create_sandbox(checkpoint="ckp_doesnotexist"),
                         lambda: ac.create_sandbox(checkpoint=f"{sb.id}:nope")):
                with pytest.raises(errors.NotFoundError):
                    await call()
            await sb.delete_checkpoint(unnamed)
            await sb.delete_checkpoint(unnamed, missing_ok=True)
            assert [c.id for c in await sb.checkpoints()] == [ck.id]

            # Create from it.
            async with ac.sandbox(checkpoint=ck) as a, ac.sandbox(checkpoint=f"{sb.id}:before") as b:
                assert {await a.read_text("/root/state.txt"), await b.read_text("/root/state.txt")} == {"v1"}
                await a.write("/root/state.txt", "a")
                assert await b.read_text("/root/state.txt") == "v1"

            # Fork.
            await sb.write("/root/state.txt", "parent")
            forks = await sb.fork(2)
            try:
                assert len(forks) == 2 and all(isinstance(f, sbx.AsyncSandbox) for f in forks)
                assert len({f.id for f in forks} | {sb.id}) == 3
                for i, f in enumerate(forks):
                    assert await f.read_text("/root/state.txt") == "parent"
                    await f.write("/root/state.txt", f"fork-{i}")
                assert [await f.read_text("/root/state.txt") for f in forks] == ["fork-0", "fork-1"]
                assert await sb.read_text("/root/state.txt") == "parent"
                with pytest.raises(errors.InvalidArgumentError):
                    await sb.fork(17)
            finally:
                for f in forks:
                    await f.delete(missing_ok=True)
            for f in forks:
                assert (await ac.get_sandbox(f.id)).state == "deleted"
