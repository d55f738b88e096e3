"""Snapshot sources beyond tarball imports, sync and asyncio, against the real sbxd of the other SDK tests:
``Sandbox.capture_snapshot`` (files written in a sandbox come back in a new sandbox made from the capture;
unknown sandbox, taken name, bad name, a capture that fails) and ``SandboxClient.pull_snapshot`` from a
real registry on loopback (Debian's docker-registry, started by tests/e2e/test_registry_pull.py's
fixture, with images built by tests/imagebuild.py): progress, basic auth, a given token, failures."""
import asyncio
import functools
import os
import sys
import uuid

import pytest

import sbx
from conftest import ADMIN_KEY, SOURCE
from sbx import errors

sys.path.insert(0, os.path.join(SOURCE, "tests"))
sys.path.insert(0, os.path.join(SOURCE, "tests", "e2e"))
import imagebuild as ib  # noqa: E402
# The registry as the daemon's own pull tests run it (module-scoped fixture; a second one with htpasswd;
# the bearer-token front). Importing the fixture makes it this module's.
from test_registry_pull import Registry, TokenFront, base_layer, registry  # noqa: E402,F401
from throttle import Throttle  # noqa: E402


def arun(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return asyncio.run(asyncio.wait_for(fn(*args, **kwargs), 180))
    return wrapper


def aclient(url, **kw):
    return sbx.AsyncSandboxClient(url, api_key=ADMIN_KEY, transport="sse", **kw)


def uniq(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def names(client):
    return [s.name for s in client.list_snapshots()]


# --- capture ----------------------------------------------------------------------------------------


def test_capture_sync_files_come_back(client):
    name, name2 = uniq("sdk-cap"), uniq("sdk-cap2")
    with client.sandbox(env={"WHO": "capture"}) as sb:
        sb.write("/root/data/hello.txt", "hello from the first sandbox\n")
        sb.write("/root/data/blob.bin", bytes(range(256)) * 64, mode=0o640)
        sb.mkdir("/srv/app/sub")
        r = sb.run("echo by-command > /srv/app/sub/cmd.txt && ln -s /root/data/hello.txt /root/link && "
                   "rm -rf /media && echo $WHO > /root/who")
        assert r.success, r
        snap = sb.capture_snapshot(name)                     # waits until ready
        assert isinstance(snap, sbx.Snapshot) and snap.ready and snap.name == name, snap
        assert snap.id.startswith("snap_") and snap.source == "capture" and snap.base == "host"
        assert len(snap.layers) == 1 and snap.layers[0].startswith("sha256:") and snap.size_bytes > 0
        assert snap.progress is None and snap.owner is None       # admin key: a global snapshot
        assert client.get_snapshot(name).id == snap.id and name in names(client)
        # The sandbox goes on as it was (not busy any more, still writable).
        sb.write("/root/after.txt", "after")
        assert sb.read_text("/root/data/hello.txt") == "hello from the first sandbox\n"

    with client.sandbox(snapshot=name) as sb2:
        assert sb2.snapshot == snap.id and sb2.state == "running"
        assert sb2.read_text("/root/data/hello.txt") == "hello from the first sandbox\n"
        assert sb2.read("/root/data/blob.bin") == bytes(range(256)) * 64
        assert sb2.stat("/root/data/blob.bin").mode == "0640"
        assert sb2.read_text("/srv/app/sub/cmd.txt") == "by-command\n"
        assert sb2.read_text("/root/who") == "capture\n"      # written by the command, with the env
        out = sb2.run("readlink /root/link; test -e /media || echo no-media; test -e /root/after.txt || "
                      "echo no-after; test -x /usr/bin/python3 && echo host-usr")
        assert out.stdout.split() == ["/root/data/hello.txt", "no-media", "no-after", "host-usr"], out
        # A second generation: its layers are the first capture's plus one.
        sb2.remove("/root/data/blob.bin")
        sb2.write("/root/data/gen2.txt", "two")
        snap2 = sb2.capture_snapshot(name2)
        assert snap2.layers[0] == snap.layers[0] and len(snap2.layers) == 2
        with pytest.raises(errors.ConflictError):             # in use by sb2
            client.delete_snapshot(name)

    with client.sandbox(snapshot=name2) as sb3:
        assert not sb3.exists("/root/data/blob.bin")
        assert sb3.read_text("/root/data/gen2.txt") == "two"
        assert sb3.read_text("/root/data/hello.txt") == "hello from the first sandbox\n"
    client.delete_snapshot(name2)
    client.delete_snapshot(name)
    assert name not in names(client) and name2 not in names(client)


def test_capture_sync_errors(client):
    name = uniq("sdk-cape")
    with client.sandbox() as sb:
        sb.write("/root/f", "x")
        snap = sb.capture_snapshot(name, wait=False)          # answered at once
        assert snap.name == name and snap.source == "capture" and snap.status in ("building", "ready")
        ready = client.wait_snapshot(snap.id, timeout=120)
        assert ready.ready and ready.id == snap.id
        # Names are unique across every snapshot: a taken one is ConflictError, and nothing is added.
        with pytest.raises(errors.ConflictError) as ei:
            sb.capture_snapshot(name)
        assert ei.value.status == 409 and ei.value.code == "conflict"
        assert names(client).count(name) == 1
        for bad in ("bad/name", "host", ""):
            with pytest.raises(errors.InvalidArgumentError):
                sb.capture_snapshot(bad)
        # A capture that fails: a name the layer format reserves. The typed error carries sbxd's reason.
        sb.write("/root/.wh.reserved", "no")
        failed = uniq("sdk-capf")
        with pytest.raises(sbx.SnapshotCaptureError) as ei:
            sb.capture_snapshot(failed)
        e = ei.value
        assert isinstance(e, sbx.SnapshotImportError) and isinstance(e, errors.CreationError)
        assert e.code == "snapshot_failed" and ".wh." in (e.reason or ""), e.reason
        assert e.snapshot.failed and e.snapshot.name == failed and e.snapshot.source == "capture"
        assert "failed to capture" in str(e)
        with pytest.raises(errors.ConflictError):             # a failed snapshot cannot be used
            client.create_sandbox(snapshot=failed)
        client.delete_snapshot(failed)                        # frees the name
        sid = sb.id
    # An unknown sandbox, and one that was deleted.
    with pytest.raises(errors.NotFoundError):
        sbx.Sandbox(client, {"id": "sbx_doesnotexist"}).capture_snapshot(uniq("sdk-capn"))
    gone = client.get_sandbox(sid)
    assert gone.state == "deleted"
    with pytest.raises(errors.NotFoundError):
        gone.capture_snapshot(uniq("sdk-capn"))
    client.delete_snapshot(name)


@arun
async def test_capture_async(daemon):
    name = uniq("sdk-acap")
    async with aclient(daemon.url) as ac:
        async with ac.sandbox() as sb:
            await sb.write("/root/async.txt", "async capture\n")
            assert (await sb.run("mkdir -p /srv/a && echo cmd > /srv/a/b")).success
            snap = await sb.capture_snapshot(name)
            assert snap.ready and snap.source == "capture" and snap.base == "host" and len(snap.layers) == 1
            with pytest.raises(errors.ConflictError):
                await sb.capture_snapshot(name)
            b = await sb.capture_snapshot(uniq("sdk-acap-nw"), wait=False)
            assert b.status in ("building", "ready")
            assert (await ac.wait_snapshot(b.name)).ready
            await ac.delete_snapshot(b.id)
            await sb.write("/root/.wh.x", "")
            with pytest.raises(sbx.SnapshotCaptureError) as ei:
                await sb.capture_snapshot(uniq("sdk-acapf"))
            assert ".wh." in (ei.value.reason or "")
            await ac.delete_snapshot(ei.value.snapshot.id)
        async with ac.sandbox(snapshot=name) as sb2:
            assert sb2.snapshot == snap.id
            assert await sb2.read_text("/root/async.txt") == "async capture\n"
            assert (await sb2.run("cat /srv/a/b")).stdout == "cmd\n"
        with pytest.raises(errors.NotFoundError):
            await sbx.AsyncSandbox(ac, {"id": "sbx_doesnotexist"}).capture_snapshot(uniq("sdk-acapn"))
        await ac.delete_snapshot(name)


# --- registry pull ----------------------------------------------------------------------------------


def check_progress(seen, at_least):
    """What on_progress got: several reports while the (throttled) download ran, each within its total,
    never going back, one of them in the middle of it."""
    assert len(seen) >= 3, seen
    assert all(isinstance(p, sbx.SnapshotProgress) for p in seen)
    for a, b in zip(seen, seen[1:]):
        assert a != b                                         # only changes are reported
        assert b.bytes_done >= a.bytes_done and b.bytes_total >= a.bytes_total, seen
    for p in seen:
        assert p.bytes_total == 0 or 0 <= p.bytes_done <= p.bytes_total, seen
        assert p.fraction is None if p.bytes_total == 0 else 0.0 <= p.fraction <= 1.0
    assert any(0 < p.bytes_done < p.bytes_total for p in seen), seen
    assert seen[-1].bytes_total >= at_least, seen


def test_pull_sync(client, registry, base_layer):
    app = ib.Layer().dir("app").file("app/hello", "hello from the registry\n").file(
        "app/noise", os.urandom(2 << 20)).bytes()                   # 2 MiB that gzip cannot shrink
    registry.push_image("sdk/app", "v1", [base_layer, app], env=["PATH=/bin", "WHO=pulled"], workdir="/app")
    ref = f"{registry.host}/sdk/app:v1"
    name = uniq("sdk-pull")
    seen = []
    slow = Throttle(registry.port, 2 << 20)                  # 2 MiB/s: the pull takes a second or two
    try:
        snap = client.pull_snapshot(f"{slow.host}/sdk/app:v1", name=name, insecure=True, on_progress=seen.append)
    finally:
        slow.close()
    assert snap.ready and snap.name == name and snap.source == "registry" and snap.progress is None, snap
    assert snap.layers == ["sha256:" + ib.sha256(base_layer), "sha256:" + ib.sha256(app)]
    assert snap.config.get("WorkingDir") == "/app" and "WHO=pulled" in snap.config.get("Env", [])
    check_progress(seen, 2 << 20)
    with client.sandbox(snapshot=name) as sb:
        assert sb.snapshot == snap.id
        r = sb.run("pwd; cat hello; echo $WHO; wc -c < noise")
        assert r.stdout.split() == ["/app", "hello", "from", "the", "registry", "pulled", str(2 << 20)], r

    # wait=False: building with progress; wait_snapshot reports progress too.
    nw = uniq("sdk-pull-nw")
    b = client.pull_snapshot(ref, name=nw, insecure=True, wait=False)
    assert b.name == nw and b.source == "registry"
    assert b.status in ("building", "ready")
    if b.building:
        assert isinstance(b.progress, sbx.SnapshotProgress)
    seen2 = []
    assert client.wait_snapshot(b.id, timeout=120, on_progress=seen2.append).layers == snap.layers
    assert all(isinstance(p, sbx.SnapshotProgress) for p in seen2)

    # Refusals before the pull starts: typed API errors, and nothing is created.
    with pytest.raises(errors.ConflictError):
        client.pull_snapshot(ref, name=name, insecure=True)
    for bad in ("no-registry", f"{registry.host}/UPPER:v1", f"{registry.host}/a@sha256:12"):
        with pytest.raises(errors.InvalidArgumentError):
            client.pull_snapshot(bad, name=uniq("sdk-pull-bad"), insecure=True)
    # Caught by the SDK before any request.
    with pytest.raises(ValueError):
        client.pull_snapshot(ref, name=uniq("x"), username="alice")
    with pytest.raises(ValueError):
        client.pull_snapshot(ref, name=uniq("x"), password="p")
    with pytest.raises(ValueError):
        client.pull_snapshot(ref, name=uniq("x"), username="alice", password="p", token="t")
    with pytest.raises(ValueError):
        client.pull_snapshot(ref, name=uniq("x"), wait=False, on_progress=print)
    assert not [n for n in names(client) if n.startswith(("sdk-pull-bad", "x-"))]

    # Pulls that fail later: SnapshotPullError with the registry's reason.
    missing = uniq("sdk-pull-missing")
    with pytest.raises(sbx.SnapshotPullError) as ei:
        client.pull_snapshot(f"{registry.host}/sdk/app:nope", name=missing, insecure=True)
    e = ei.value
    assert isinstance(e, sbx.SnapshotImportError) and e.code == "snapshot_failed"
    assert "not found" in (e.reason or "") and "MANIFEST_UNKNOWN" in e.reason, e.reason
    assert e.snapshot.failed and e.snapshot.name == missing and "failed to pull" in str(e)
    client.delete_snapshot(missing)
    tls = uniq("sdk-pull-tls")
    with pytest.raises(sbx.SnapshotPullError) as ei:            # HTTPS (the default) to a plain-HTTP registry
        client.pull_snapshot(ref, name=tls)
    assert "GET https://" in (ei.value.reason or ""), ei.value.reason
    client.delete_snapshot(tls)

    # Admin only.
    key = client.create_key(uniq("sdk-pull-tenant"))
    try:
        with sbx.SandboxClient(client.url, api_key=key.key) as tenant:
            with pytest.raises(errors.PermissionDeniedError):
                tenant.pull_snapshot(ref, name=uniq("sdk-pull-t"), insecure=True)
    finally:
        client.delete_key(key.id)
    client.delete_snapshot(nw)
    client.delete_snapshot(name)


def test_pull_sync_credentials(client, registry, base_layer):
    # Basic auth (username/password) against a registry with htpasswd.
    reg = Registry(htpasswd=True)
    try:
        reg.push_image("sdk/private", "v1", [base_layer, ib.Layer().file("private", "basic\n").bytes()])
        ref = f"{reg.host}/sdk/private:v1"
        wrong = uniq("sdk-pull-wrong")
        with pytest.raises(sbx.SnapshotPullError) as ei:
            client.pull_snapshot(ref, name=wrong, insecure=True, username="alice", password="wrong")
        assert "refused" in (ei.value.reason or ""), ei.value.reason
        client.delete_snapshot(wrong)
        ok = uniq("sdk-pull-basic")
        snap = client.pull_snapshot(ref, name=ok, insecure=True, username="alice", password="s3cret")
        with client.sandbox(snapshot=snap.id) as sb:
            assert sb.read_text("/private") == "basic\n"
        client.delete_snapshot(ok)
    finally:
        reg.stop()
    # A token given as is (the Distribution token flow's front: it accepts only its own token).
    registry.push_image("sbx/tok", "v1", [base_layer, ib.Layer().file("tok", "bearer\n").bytes()])
    front = TokenFront(registry.host)
    try:
        ref = f"127.0.0.1:{front.port}/sbx/tok:v1"
        bad = uniq("sdk-pull-badtok")
        with pytest.raises(sbx.SnapshotPullError):
            client.pull_snapshot(ref, name=bad, insecure=True, token="not-the-token")
        client.delete_snapshot(bad)
        ok = uniq("sdk-pull-tok")
        snap = client.pull_snapshot(ref, name=ok, insecure=True, token=front.token)
        assert snap.ready
        with client.sandbox(snapshot=ok) as sb:
            assert sb.read_text("/tok") == "bearer\n"
        client.delete_snapshot(ok)
    finally:
        front.stop()


@arun
async def test_pull_async(daemon, registry, base_layer):
    layer = ib.Layer().file("etc/motd", "pulled async\n").file("noise", os.urandom(1 << 20)).bytes()
    dg, _, _, _ = registry.push_image("sdk/async", "v1", [base_layer, layer])
    name = uniq("sdk-apull")
    seen = []

    async def progress(p):                                   # a coroutine function works too
        await asyncio.sleep(0)
        seen.append(p)

    slow = Throttle(registry.port, 1 << 20)
    async with aclient(daemon.url) as ac:
        try:
            snap = await ac.pull_snapshot(f"{slow.host}/sdk/async@{dg}", name=name, insecure=True,
                                          on_progress=progress)
        finally:
            slow.close()
        assert snap.ready and snap.source == "registry" and len(snap.layers) == 2
        check_progress(seen, 1 << 20)
        async with ac.sandbox(snapshot=name) as sb:
            assert (await sb.read_text("/etc/motd")) == "pulled async\n"
        plain = []
        b = await ac.pull_snapshot(f"{registry.host}/sdk/async:v1", name=uniq("sdk-apull-nw"), insecure=True,
                                   wait=False)
        assert (await ac.wait_snapshot(b.id, on_progress=plain.append)).layers == snap.layers
        await ac.delete_snapshot(b.id)
        with pytest.raises(errors.ConflictError):
            await ac.pull_snapshot(f"{registry.host}/sdk/async:v1", name=name, insecure=True)
        missing = uniq("sdk-apull-missing")
        with pytest.raises(sbx.SnapshotPullError) as ei:
            await ac.pull_snapshot(f"{registry.host}/sdk/async:v404", name=missing, insecure=True)
        assert "not found" in (ei.value.reason or "")
        await ac.delete_snapshot(missing)
        with pytest.raises(ValueError):
            await ac.pull_snapshot("r.example/a:v1", name="x", token="t", username="u", password="p")
        await ac.delete_snapshot(name)
