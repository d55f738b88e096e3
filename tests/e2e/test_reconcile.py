"""Crash safety: what sbxd finds on its data dir at start is reconciled with its database. A row whose
files are gone becomes a tombstone; a state dir no row names (a crash between the database and the
filesystem) is shut down and removed, its shim and mounts included; everything else is re-attached."""
import os
import signal
import sqlite3
import subprocess
import tempfile

from sbxtest import (Daemon, force_cleanup, cgroup_dirs_named, host_mounts_under, loop_devices_backed_under,
                     processes_with_cmdline, wait_for)


def test_ghost_rows_and_orphan_dirs_are_reconciled():
    data_dir = tempfile.mkdtemp(prefix="sbx-e2e-reconcile-", dir="/var/tmp")
    d = Daemon(ephemeral=False, data_dir=data_dir, extra_args=["--warm", "0"]).start()
    try:
        ghost = d.create(name="ghost")
        orphan = d.create(name="orphan")
        kept = d.create(name="kept")
        d.request("PUT", f"/v1/sandboxes/{kept}/files?path=/root/k", body=b"k")
        sandboxes = os.path.join(data_dir, "sandboxes")
        d.stop(signal.SIGKILL)

        # The ghost's files vanish (its shim killed, its mounts and directory removed by hand).
        ghost_dir = os.path.join(sandboxes, ghost)
        for pid in processes_with_cmdline(ghost_dir):
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: processes_with_cmdline(ghost_dir) == [], what="the ghost's shim to die")
        for m in sorted((line.split()[4] for line in host_mounts_under(ghost_dir)), key=len, reverse=True):
            subprocess.run(["umount", "-l", m], check=True)
        subprocess.run(["rm", "-rf", "--one-file-system", ghost_dir], check=True)

        # The orphan's row disappears while its shim, mounts and files stay (a crash between the two).
        orphan_dir = os.path.join(sandboxes, orphan)
        assert processes_with_cmdline(orphan_dir) and host_mounts_under(orphan_dir), "positive control"
        db = sqlite3.connect(os.path.join(data_dir, "sbx.db"))
        db.execute("DELETE FROM sandboxes WHERE id = ?", (orphan,))
        db.commit()
        db.close()
        # And a stray directory that never had a row or a shim.
        stray = os.path.join(sandboxes, "sbx_strayxxxxxxxxxxxxxxx")
        os.makedirs(os.path.join(stray, "upper"))

        d2 = Daemon(ephemeral=False, data_dir=data_dir, extra_args=["--warm", "0"])
        d2.port = d.port
        d2.start()
        try:
            tomb = d2.request("GET", f"/v1/sandboxes/{ghost}").json()
            assert tomb["state"] == "deleted" and "state directory was gone" in tomb["state_reason"]
            assert d2.request("GET", "/v1/sandboxes/ghost").status == 404
            assert d2.request("GET", f"/v1/sandboxes/{orphan}").status == 404
            assert not os.path.exists(orphan_dir) and not os.path.exists(stray)
            assert processes_with_cmdline(orphan_dir) == [] and host_mounts_under(orphan_dir) == []
            assert cgroup_dirs_named([ghost, orphan]) == []
            assert loop_devices_backed_under(orphan_dir) == [] and loop_devices_backed_under(ghost_dir) == []
            listed = {s["id"] for s in d2.request("GET", "/v1/sandboxes").json()["sandboxes"]}
            assert listed == {kept}
            assert d2.run(kept, "cat /root/k")["stdout"] == "k"
            assert "no sandbox of that id is recorded" in d2.read_log()
            d2.delete(kept)
        finally:
            d2.stop()
        leftovers = host_mounts_under(data_dir), processes_with_cmdline(data_dir)
        assert leftovers == ([], []), leftovers
    finally:
        force_cleanup(data_dir)  # after a failure half-way: kill, unmount and remove what is left
