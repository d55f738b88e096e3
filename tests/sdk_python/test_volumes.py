"""Named volumes (create/list/get/delete) and mounting them into sandboxes, sync and asyncio, against the
same real sbxd as the other SDK tests. Every sandbox and volume made here is deleted."""
import asyncio
import functools
import uuid

import pytest

import sbx
from conftest import ADMIN_KEY
from sbx import errors
from sbx._common import volume_mounts


def arun(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return asyncio.run(asyncio.wait_for(fn(*args, **kwargs), 120))
    return wrapper


def aclient(url):
    return sbx.AsyncSandboxClient(url, api_key=ADMIN_KEY, transport="sse")


def uniq(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def check_volume(v, name, size_mb):
    assert isinstance(v, sbx.Volume)
    assert v.id.startswith("vol_") and v.name == name and v.size_mb == size_mb
    assert v.used_bytes is None or (isinstance(v.used_bytes, int) and v.used_bytes >= 0)
    assert v.created_at and v.raw["id"] == v.id


# --- sync ---------------------------------------------------------------------------------------------


def test_volume_shared_between_sandboxes_sync(client):
    name = uniq("sdk-vol")
    vol = client.create_volume(name, size_mb=64)
    made = []
    try:
        check_volume(vol, name, 64)
        assert client.get_volume(name).id == vol.id
        assert client.get_volume(vol.id).name == name
        assert client.get_volume(vol).id == vol.id               # a Volume works as a reference
        assert vol.id in [v.id for v in client.list_volumes()]

        # A taken name is the typed conflict error (not BusyError); bad input is InvalidArgumentError.
        with pytest.raises(errors.ConflictError) as ei:
            client.create_volume(name)
        assert ei.value.code == "conflict" and ei.value.status == 409 and not isinstance(ei.value, errors.BusyError)
        with pytest.raises(errors.InvalidArgumentError):
            client.create_volume("bad name!")
        with pytest.raises(errors.InvalidArgumentError):
            client.create_volume(uniq("sdk-vol-small"), size_mb=8)

        # One sandbox mounts it read-write (a VolumeMount, by name), another read-only (a tuple, by Volume).
        writer = client.create_sandbox(volumes=[sbx.VolumeMount(name, "/data")])
        made.append(writer)
        reader = client.create_sandbox(volumes=[(vol, "/mnt/shared", True)])
        made.append(reader)
        assert writer.volumes == [sbx.VolumeMount(vol.id, "/data", False)]
        assert reader.volumes == [sbx.VolumeMount(vol.id, "/mnt/shared", True)]
        assert client.get_sandbox(reader.id).volumes == reader.volumes

        r = writer.run("echo from-writer > /data/hello.txt && mkdir -p /data/d && chown 1000:1000 /data/d")
        assert r.exit_code == 0, r.stderr
        assert reader.run("cat /mnt/shared/hello.txt").stdout == "from-writer\n"
        assert reader.run("stat -c %u:%g /mnt/shared/d").stdout == "1000:1000\n"   # same owners everywhere

        # The read-only mount refuses writes; nothing reaches the volume.
        r = reader.run("echo nope > /mnt/shared/nope.txt")
        assert r.exit_code != 0
        assert "read-only" in r.stderr.lower()
        assert writer.run("test -e /data/nope.txt").exit_code == 1

        # Deleting a mounted volume is BusyError (a ConflictError), also while the sandboxes are stopped.
        with pytest.raises(errors.BusyError) as ei:
            client.delete_volume(name)
        assert ei.value.code == "busy" and ei.value.status == 409 and isinstance(ei.value, errors.ConflictError)
        writer.stop()
        reader.stop()
        with pytest.raises(errors.BusyError):
            client.delete_volume(vol)
        assert client.get_volume(vol.id).id == vol.id

        # The volume outlives the sandboxes: a new one sees the files.
        for s in made:
            s.delete()
        with client.sandbox(volumes=[{"volume": vol.id, "path": "/srv/data"}]) as again:
            assert again.volumes == [sbx.VolumeMount(vol.id, "/srv/data", False)]
            assert again.run("cat /srv/data/hello.txt").stdout == "from-writer\n"
        after = client.get_volume(vol)
        assert after.used_bytes is None or after.used_bytes > 0

        # Once no sandbox mounts it, it can be deleted; then it is gone.
        client.delete_volume(name)
        with pytest.raises(errors.NotFoundError) as ei:
            client.get_volume(vol.id)
        assert ei.value.code == "not_found" and ei.value.status == 404
        with pytest.raises(errors.NotFoundError):
            client.get_volume(name)
        with pytest.raises(errors.NotFoundError):
            client.delete_volume(vol)
        client.delete_volume(vol, missing_ok=True)
        assert vol.id not in [v.id for v in client.list_volumes()]
    finally:
        for s in made:
            s.delete(missing_ok=True)
        client.delete_volume(vol, missing_ok=True)


def test_volume_mount_errors_sync(client):
    # Unknown volumes are NotFoundError; a bad mount path is InvalidArgumentError (the daemon's checks).
    with pytest.raises(errors.NotFoundError):
        client.create_sandbox(volumes=[("sdk-vol-doesnotexist", "/data")])
    vol = client.create_volume(uniq("sdk-vol-err"), size_mb=16)
    try:
        for path in ("data", "/", "/proc/x", "/a/../b"):
            with pytest.raises(errors.InvalidArgumentError):
                client.create_sandbox(volumes=[(vol, path)])
        with pytest.raises(errors.InvalidArgumentError):      # one volume per path
            client.create_sandbox(volumes=[(vol, "/a"), (vol.name, "/a", True)])
        # Without volumes, a sandbox lists none.
        with client.sandbox() as plain:
            assert plain.volumes == []
        # Every sandbox the failed creates might have left is gone: the volume can be deleted.
        client.delete_volume(vol)
    finally:
        client.delete_volume(vol, missing_ok=True)


def test_volume_mount_forms():
    v = sbx.Volume.from_json({"id": "vol_abc", "name": "data", "size_mb": 16, "used_bytes": None,
                              "created_at": "2024-01-01T00:00:00Z"})
    assert v.used_bytes is None and v.size_mb == 16
    assert volume_mounts([sbx.VolumeMount("data", "/data"), ("data", "/ro", True), (v, "/v"),
                          {"volume": v, "path": "/d", "read_only": True}, {"volume": "vol_x", "path": "/e"}]) == [
        {"volume": "data", "path": "/data", "read_only": False},
        {"volume": "data", "path": "/ro", "read_only": True},
        {"volume": "vol_abc", "path": "/v", "read_only": False},
        {"volume": "vol_abc", "path": "/d", "read_only": True},
        {"volume": "vol_x", "path": "/e", "read_only": False},
    ]
    for bad in (("data", "/data"), [("data",)], [{"volume": "x"}], [{"volume": "x", "path": "/a", "ro": 1}],
                ["data"], [("", "/a")], [("data", "/a", "yes")]):
        with pytest.raises(ValueError):
            volume_mounts(bad)


# --- asyncio ------------------------------------------------------------------------------------------


@arun
async def test_volumes_async(daemon):
    async with aclient(daemon.url) as ac:
        name = uniq("sdk-avol")
        vol = await ac.create_volume(name)
        try:
            check_volume(vol, name, 1024)                      # the default size
            assert (await ac.get_volume(name)).id == vol.id
            assert vol.id in [v.id for v in await ac.list_volumes()]
            with pytest.raises(errors.ConflictError) as ei:
                await ac.create_volume(name)
            assert ei.value.code == "conflict" and not isinstance(ei.value, errors.BusyError)

            async with ac.sandbox(volumes=[{"volume": name, "path": "/data"}]) as w, \
                    ac.sandbox(volumes=[sbx.VolumeMount(vol.id, "/data", read_only=True)]) as r:
                assert w.volumes == [sbx.VolumeMount(vol.id, "/data", False)]
                assert r.volumes == [sbx.VolumeMount(vol.id, "/data", True)]
                assert (await w.run("echo async > /data/a.txt")).exit_code == 0
                assert (await r.run("cat /data/a.txt")).stdout == "async\n"
                assert (await r.run("touch /data/b.txt")).exit_code != 0
                assert (await w.run("test -e /data/b.txt")).exit_code == 1
                with pytest.raises(errors.BusyError):
                    await ac.delete_volume(vol)
                assert (await r.refresh()).volumes == r.volumes

            await ac.delete_volume(name)
            with pytest.raises(errors.NotFoundError):
                await ac.get_volume(vol.id)
            with pytest.raises(errors.NotFoundError):
                await ac.delete_volume(vol)
            await ac.delete_volume(vol, missing_ok=True)
        finally:
            await ac.delete_volume(vol, missing_ok=True)
