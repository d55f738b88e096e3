"""Claim: a sandbox's writes are bounded by its own disk (resources.disk_mb): filling it gives ENOSPC inside
and 507 no_space through the file API, its neighbours and the host are unaffected, its files survive
stop/start and crashes, and delete or recovery leaves no image, mount or loop device behind
(docs/design/runtime.md, "The sandbox's disk")."""
import os
import signal
import subprocess
import tempfile

from sbxtest import Daemon, host_mounts_under, loop_devices_backed_under, sandbox_state_dir, sh, wait_for

MiB = 1 << 20


def allocated(path):
    return os.stat(path).st_blocks * 512


def host_usage_outside_disk(state):
    """Bytes allocated on the host filesystem under the state dir, not counting the disk image and not
    descending into other filesystems (the mounted disk, the rootfs)."""
    dev = os.stat(state).st_dev
    total = 0
    for dirpath, dirs, files in os.walk(state):
        dirs[:] = [d for d in dirs if os.lstat(os.path.join(dirpath, d)).st_dev == dev]
        for n in files:
            p = os.path.join(dirpath, n)
            if p == os.path.join(state, "disk.img"):
                continue
            st = os.lstat(p)
            if st.st_dev == dev:
                total += st.st_blocks * 512
    return total


def disk_mounted(state):
    return any(l.split()[4] == os.path.join(state, "disk") for l in host_mounts_under(state))


def nothing_left(state):
    return not loop_devices_backed_under(state) and not host_mounts_under(state)


def test_full_disk_is_enospc_inside_507_outside_and_nobody_else_notices(daemon, new_sandbox, token):
    small = new_sandbox(resources={"disk_mb": 64})
    neighbour = new_sandbox(resources={"disk_mb": 256})
    r = daemon.request("GET", f"/v1/sandboxes/{small}")
    assert r.json()["resources"]["disk_mb"] == 64, r
    state = sandbox_state_dir(daemon, small)
    assert disk_mounted(state), host_mounts_under(state)
    assert os.path.getsize(os.path.join(state, "disk.img")) == 64 * MiB
    host_before = os.statvfs(daemon.data_dir)

    # Try to write 1 GiB: the sandbox's disk ends it at (a little under) 64 MiB.
    res = sh(daemon, small, "dd if=/dev/zero of=/root/fill bs=1M count=1024; echo rc=$?; "
                            "stat -c size=%s /root/fill; df -k /", timeout=120)
    assert "No space left on device" in res["stderr"], res
    assert "rc=0" not in res["stdout"], res
    size = int(res["stdout"].split("size=")[1].split()[0])
    assert 32 * MiB <= size <= 64 * MiB, res
    # A small file too: nothing more fits, as root inside either (no reserved blocks to dip into).
    res = sh(daemon, small, "echo more > /tmp/more-" + token + "; echo rc=$?; "
                            "head -c 1048576 /dev/zero > /root/more; echo rc2=$?")
    assert "rc2=0" not in res["stdout"], res

    # The file API writes through the same overlay: 507 no_space, and no partial file left.
    r = daemon.request("PUT", f"/v1/sandboxes/{small}/files?path=/root/upload.bin", body=os.urandom(4 * MiB))
    assert r.status == 507 and r.error_code() == "no_space", r

    # Everything it wrote is inside its image; the host holds no more than the image's size for it.
    assert allocated(os.path.join(state, "disk.img")) <= 66 * MiB
    assert host_usage_outside_disk(state) < 2 * MiB, host_usage_outside_disk(state)
    host_after = os.statvfs(daemon.data_dir)
    used = (host_before.f_bfree - host_after.f_bfree) * host_after.f_frsize
    assert used < 64 * MiB + 448 * MiB, f"host free space fell by {used >> 20} MiB"  # others share this disk

    # The neighbour (and the host) still write normally.
    res = sh(daemon, neighbour, "dd if=/dev/zero of=/root/x bs=1M count=32 && echo wrote")
    assert "wrote" in res["stdout"], res
    r = daemon.request("PUT", f"/v1/sandboxes/{neighbour}/files?path=/root/upload.bin", body=b"x" * MiB)
    assert r.status == 200, r
    with tempfile.NamedTemporaryFile(dir=daemon.data_dir) as f:
        f.write(b"h" * MiB)
        f.flush()

    # Freeing space inside gives it back, to the sandbox and (discard) to the host.
    res = sh(daemon, small, "rm -f /root/fill /root/more && head -c 8388608 /dev/zero > /root/again && echo ok")
    assert "ok" in res["stdout"], res
    wait_for(lambda: allocated(os.path.join(state, "disk.img")) < 32 * MiB, timeout=30,
             what="freed blocks to be punched out of the image")


def test_bad_disk_sizes_are_invalid_argument(daemon):
    for bad in (0, 63, 1048577, -1, "10G", 1.5, True, {}):
        r = daemon.request("POST", "/v1/sandboxes", {"resources": {"disk_mb": bad}})
        assert r.status == 400 and r.error_code() == "invalid_argument", (bad, r)


def test_files_survive_stop_start_and_stop_detaches_the_disk(daemon, new_sandbox, token):
    sid = new_sandbox(resources={"disk_mb": 64})
    state = sandbox_state_dir(daemon, sid)
    res = sh(daemon, sid, f"echo {token} > /root/keep && head -c 1048576 /dev/urandom > /home/blob && "
                          "sha256sum /home/blob")
    digest = res["stdout"].split()[0]
    assert daemon.request("POST", f"/v1/sandboxes/{sid}/stop").status == 200
    wait_for(lambda: nothing_left(state), timeout=10, what="disk unmounted and loop device released")
    assert os.path.exists(os.path.join(state, "disk.img"))
    assert daemon.request("POST", f"/v1/sandboxes/{sid}/start").status == 200
    assert disk_mounted(state)
    res = sh(daemon, sid, "cat /root/keep; sha256sum /home/blob; df -k / | tail -1")
    assert token in res["stdout"] and digest in res["stdout"], res
    # Still the same 64 MiB disk.
    assert int(res["stdout"].splitlines()[-1].split()[1]) <= 64 * 1024, res


def test_delete_leaves_no_image_mount_or_loop_device(daemon, token):
    sid = daemon.create(resources={"disk_mb": 64})
    state = sandbox_state_dir(daemon, sid)
    sh(daemon, sid, "head -c 4194304 /dev/zero > /root/x")
    assert loop_devices_backed_under(state), "the disk has no loop device"
    daemon.delete(sid)
    wait_for(lambda: nothing_left(state), timeout=10, what="loop device and mounts gone")
    assert not os.path.exists(state)


def test_crashed_shim_and_killed_sbxd_leave_no_disk_behind(token):
    """kill -9 of the shim: sbxd unmounts and detaches. kill -9 of sbxd and the shim together: the next
    sbxd's recovery does. In both cases start brings the files back."""
    data_dir = tempfile.mkdtemp(prefix="sbx-disk-", dir="/var/tmp")
    try:
        d = Daemon(ephemeral=False, data_dir=data_dir, extra_args=["--warm", "0"]).start()
        sid = d.create(resources={"disk_mb": 64})
        state = sandbox_state_dir(d, sid)
        sh(d, sid, f"echo {token} > /root/keep; sync")

        with open(os.path.join(state, "shim.pid")) as f:
            os.kill(int(f.read()), signal.SIGKILL)
        wait_for(lambda: d.request("GET", f"/v1/sandboxes/{sid}").json()["state"] not in ("running",),
                 timeout=10, what="the sandbox to leave running")
        wait_for(lambda: nothing_left(state), timeout=10, what="the dead shim's disk to be detached")
        assert d.request("POST", f"/v1/sandboxes/{sid}/start").status == 200
        assert token in sh(d, sid, "cat /root/keep")["stdout"]

        with open(os.path.join(state, "shim.pid")) as f:
            shim = int(f.read())
        d.stop(signal.SIGKILL)
        os.kill(shim, signal.SIGKILL)
        wait_for(lambda: not os.path.exists(f"/proc/{shim}/cmdline") or
                 not open(f"/proc/{shim}/cmdline", "rb").read(), timeout=10, what="the shim to die")
        assert loop_devices_backed_under(state), "nothing to recover: the disk went with the shim"

        d = Daemon(ephemeral=True, data_dir=data_dir, extra_args=["--warm", "0"]).start()
        wait_for(lambda: nothing_left(state), timeout=10, what="recovery to detach the disk")
        assert d.request("POST", f"/v1/sandboxes/{sid}/start").status == 200
        assert token in sh(d, sid, "cat /root/keep")["stdout"]
        assert d.stop() == 0
        wait_for(lambda: nothing_left(data_dir), timeout=10, what="ephemeral shutdown to detach everything")
        assert not os.path.exists(state)
    finally:
        subprocess.run(["rm", "-rf", "--one-file-system", data_dir], check=False)


def test_command_output_on_the_host_is_bounded(daemon, new_sandbox):
    """Output a sandbox prints is kept on the host (logs/) for reconnects: it cannot grow past the
    sandbox's disk size. Past it the shim stops reading, the writer blocks and no byte is lost; once the
    command is gone (killed, then expired) output flows again."""
    sid = new_sandbox(resources={"disk_mb": 64})
    state = sandbox_state_dir(daemon, sid)
    r = daemon.request("POST", f"/v1/sandboxes/{sid}/commands",
                       {"id": "flood", "command": "head -c 200000000 /dev/zero; echo finished", "ttl_seconds": 0.2})
    assert r.status == 201, r

    def stalled():
        a = daemon.request("GET", f"/v1/sandboxes/{sid}/commands/flood").json()["stdout_bytes"]
        import time
        time.sleep(0.5)
        b = daemon.request("GET", f"/v1/sandboxes/{sid}/commands/flood").json()
        return b["stdout_bytes"] == a and b["state"] == "running" and b

    got = wait_for(stalled, timeout=60, what="the flood to be held back")
    assert 16 * MiB < got["stdout_bytes"] <= 64 * MiB, got
    assert host_usage_outside_disk(state) <= 70 * MiB
    # Nothing was dropped: every byte up to where it stopped is readable, in order.
    data = daemon.request("GET", f"/v1/sandboxes/{sid}/commands/flood/logs?cursor={got['stdout_bytes'] - 10}&format=raw").body
    assert data == b"\0" * 10
    assert daemon.request("POST", f"/v1/sandboxes/{sid}/commands/flood/kill").status == 204
    wait_for(lambda: daemon.request("GET", f"/v1/sandboxes/{sid}/commands/flood").status == 404,
             what="the killed flood to expire")
    # Output flows again.
    assert daemon.run(sid, "head -c 3000000 /dev/zero | wc -c")["stdout"].strip() == "3000000"
    assert daemon.run(sid, "echo ok")["stdout"] == "ok\n"
