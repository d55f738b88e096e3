"""Sandbox lifecycle timers and settings: idle_ttl_seconds stops an idle sandbox (and activity or an
attached stream keeps it up), delete_after_stop_seconds deletes a stopped one, timeout_seconds deletes
at expires_at and renew pushes it back; PATCH changes all of them live; every sbxd-made change leaves a
reason, and a deleted sandbox leaves a tombstone GET still answers. Short values (1-2 s) keep them quick."""
import datetime
import os
import signal
import subprocess
import tempfile
import threading
import time

from sbxtest import Daemon, collect, force_cleanup, host_mounts_under, processes_with_cmdline, wait_for


def parse_time(s):
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc).timestamp()


def state(d, sid):
    return d.request("GET", f"/v1/sandboxes/{sid}").json()


def test_defaults_and_timestamps(daemon):
    before = time.time()
    sb = daemon.request("POST", "/v1/sandboxes", {}).json()
    try:
        assert sb["state"] == "running"
        assert sb["idle_ttl_seconds"] == 600
        assert sb["delete_after_stop_seconds"] == 0 and sb["timeout_seconds"] == 0
        assert sb["expires_at"] is None and sb["stopped_at"] is None and sb["state_reason"] is None
        created, active = parse_time(sb["created_at"]), parse_time(sb["last_active_at"])
        assert before - 1 <= created <= time.time() + 1 and active >= created
    finally:
        daemon.delete(sb["id"])


def test_idle_ttl_stops_an_idle_sandbox_and_activity_defers_it(daemon):
    idle = daemon.request("POST", "/v1/sandboxes", {"idle_ttl_seconds": 1}).json()["id"]
    busy = daemon.request("POST", "/v1/sandboxes", {"idle_ttl_seconds": 1}).json()["id"]
    never = daemon.request("POST", "/v1/sandboxes", {"idle_ttl_seconds": 0}).json()["id"]
    try:
        daemon.request("PUT", f"/v1/sandboxes/{idle}/files?path=/root/kept", body=b"files survive idling")
        t0 = time.monotonic()
        # busy gets a command or file call every 0.3 s for 2 s: never idle for a whole second.
        while time.monotonic() - t0 < 2.0:
            assert daemon.run(busy, "true")["exit_code"] == 0
            time.sleep(0.3)
        got = wait_for(lambda: (s := state(daemon, idle))["state"] == "stopped" and s, what="idle stop")
        assert "idle" in got["state_reason"] and got["stopped_at"] is not None
        assert state(daemon, busy)["state"] == "running"
        assert state(daemon, never)["state"] == "running"
        # Stopped by the timer, started again: same files; a command answers not_running meanwhile.
        r = daemon.request("POST", f"/v1/sandboxes/{idle}/commands", {"command": "true", "wait": True})
        assert r.status == 409 and r.error_code() == "not_running"
        assert daemon.request("POST", f"/v1/sandboxes/{idle}/start").json()["state"] == "running"
        assert daemon.request("GET", f"/v1/sandboxes/{idle}/files?path=/root/kept").body == b"files survive idling"
        assert state(daemon, idle)["state_reason"] is None
    finally:
        for sid in (idle, busy, never):
            daemon.delete(sid)


def test_an_attached_stream_keeps_the_sandbox_up(daemon):
    sid = daemon.request("POST", "/v1/sandboxes", {"idle_ttl_seconds": 1}).json()["id"]
    try:
        r = daemon.request("POST", f"/v1/sandboxes/{sid}/commands",
                           {"id": "slow", "command": "sleep 2.5; echo done"})
        assert r.status == 201
        out = []
        t = threading.Thread(target=lambda: out.append(collect(daemon.sse(sid, "slow"))[0]))
        t.start()
        t.join(10)
        assert out == [b"done\n"], out  # the stream outlived idle_ttl: the sandbox was not stopped under it
        assert state(daemon, sid)["state"] == "running"
        # Detached now: the idle clock starts again.
        wait_for(lambda: state(daemon, sid)["state"] == "stopped", what="idle stop after the stream ended")
    finally:
        daemon.delete(sid)


def test_delete_after_stop(daemon):
    sid = daemon.request("POST", "/v1/sandboxes", {"delete_after_stop_seconds": 1}).json()["id"]
    keep = daemon.request("POST", "/v1/sandboxes", {"delete_after_stop_seconds": 0}).json()["id"]
    try:
        daemon.request("POST", f"/v1/sandboxes/{sid}/stop")
        daemon.request("POST", f"/v1/sandboxes/{keep}/stop")
        state_dir = f"{daemon.data_dir}/sandboxes/{sid}"
        wait_for(lambda: state(daemon, sid)["state"] == "deleted", what="delete after stop")
        tomb = state(daemon, sid)
        assert "delete_after_stop_seconds" in tomb["state_reason"] and tomb["deleted_at"]
        assert sid not in [s["id"] for s in daemon.request("GET", "/v1/sandboxes").json()["sandboxes"]]
        assert sid in [s["id"] for s in daemon.request("GET", "/v1/sandboxes?state=deleted").json()["sandboxes"]]
        assert not __import__("os").path.exists(state_dir)
        r = daemon.request("POST", f"/v1/sandboxes/{sid}/commands", {"command": "true"})
        assert r.status == 404 and r.error_code() == "not_found"
        time.sleep(1.2)
        assert state(daemon, keep)["state"] == "stopped"
    finally:
        daemon.delete(keep)


def test_timeout_deletes_and_renew_extends(daemon):
    short = daemon.request("POST", "/v1/sandboxes", {"timeout_seconds": 1}).json()
    renewed = daemon.request("POST", "/v1/sandboxes", {"timeout_seconds": 2}).json()
    assert short["expires_at"] and parse_time(short["expires_at"]) - parse_time(short["created_at"]) == 1.0
    try:
        time.sleep(1.0)
        r = daemon.request("POST", f"/v1/sandboxes/{renewed['id']}/renew", {"timeout_seconds": 3})
        assert r.status == 200, r
        new_exp = parse_time(r.json()["expires_at"])
        assert new_exp > parse_time(renewed["expires_at"]) and r.json()["timeout_seconds"] == 3
        wait_for(lambda: state(daemon, short["id"])["state"] == "deleted", what="timeout delete")
        assert "timeout_seconds" in state(daemon, short["id"])["state_reason"]
        time.sleep(max(0.0, parse_time(renewed["expires_at"]) + 0.3 - time.time()))
        assert state(daemon, renewed["id"])["state"] == "running", "renew did not extend the lifetime"
        wait_for(lambda: state(daemon, renewed["id"])["state"] == "deleted", what="renewed timeout")
        # renew without a timeout on a sandbox without one: typed error
        sid = daemon.create()
        r = daemon.request("POST", f"/v1/sandboxes/{sid}/renew", {})
        assert r.status == 400 and r.error_code() == "invalid_argument"
        daemon.delete(sid)
    finally:
        for sid in (short["id"], renewed["id"]):
            daemon.request("DELETE", f"/v1/sandboxes/{sid}")


def test_patch_changes_settings_live(daemon):
    sid = daemon.create()
    try:
        r = daemon.request("PATCH", f"/v1/sandboxes/{sid}",
                           {"idle_ttl_seconds": 1, "metadata": {"owner": "patched"}})
        assert r.status == 200 and r.json()["idle_ttl_seconds"] == 1 and r.json()["metadata"] == {"owner": "patched"}
        wait_for(lambda: state(daemon, sid)["state"] == "stopped", what="the patched idle ttl to apply")
        r = daemon.request("PATCH", f"/v1/sandboxes/{sid}", {"delete_after_stop_seconds": 1, "timeout_seconds": 600})
        assert r.json()["expires_at"] is not None
        wait_for(lambda: state(daemon, sid)["state"] == "deleted", what="the patched delete_after_stop")
    finally:
        daemon.request("DELETE", f"/v1/sandboxes/{sid}")


def test_lifecycle_bad_input(daemon):
    for body in ({"idle_ttl_seconds": -1}, {"idle_ttl_seconds": "60"}, {"timeout_seconds": 1.5},
                 {"delete_after_stop_seconds": 10 ** 12}):
        r = daemon.request("POST", "/v1/sandboxes", body)
        assert r.status == 400 and r.error_code() == "invalid_argument", (body, r)
    sid = daemon.create()
    try:
        for body in ({"idle_ttl_seconds": -5}, {"metadata": "x"}):
            r = daemon.request("PATCH", f"/v1/sandboxes/{sid}", body)
            assert r.status == 400 and r.error_code() == "invalid_argument", (body, r)
        r = daemon.request("POST", f"/v1/sandboxes/{sid}/renew", {"timeout_seconds": 0})
        assert r.status == 400 and r.error_code() == "invalid_argument"
        assert daemon.request("PATCH", "/v1/sandboxes/sbx_nope", {}).error_code() == "not_found"
        assert daemon.request("GET", "/v1/sandboxes?state=zombie").error_code() == "invalid_argument"
    finally:
        daemon.delete(sid)


def test_settings_and_timers_survive_a_restart():
    """Lifecycle settings are persisted; a restarted sbxd still deletes at expires_at, and gives idle
    sandboxes a fresh idle period rather than stopping them for sbxd's own absence."""
    data_dir = tempfile.mkdtemp(prefix="sbx-e2e-timers-", dir="/var/tmp")
    d = Daemon(ephemeral=False, data_dir=data_dir).start()
    try:
        exp = d.request("POST", "/v1/sandboxes", {"timeout_seconds": 3, "name": "expiring"}).json()
        idle = d.request("POST", "/v1/sandboxes", {"idle_ttl_seconds": 2, "name": "idler"}).json()["id"]
        d.stop(signal.SIGKILL)
        time.sleep(1.5)
        d2 = Daemon(ephemeral=False, data_dir=data_dir)
        d2.port = d.port
        d2.start()
        try:
            got = d2.request("GET", "/v1/sandboxes/expiring").json()
            assert got["timeout_seconds"] == 3 and got["expires_at"] == exp["expires_at"]
            assert state(d2, idle)["state"] == "running", "idle clock must restart with sbxd"
            wait_for(lambda: state(d2, exp["id"])["state"] == "deleted", what="expiry after restart")
            wait_for(lambda: state(d2, idle)["state"] == "stopped", what="idle stop after restart")
            d2.delete(idle)
        finally:
            d2.stop()
        leftovers = host_mounts_under(data_dir), processes_with_cmdline(data_dir)
        assert leftovers == ([], []), leftovers
    finally:
        force_cleanup(data_dir)  # after a failure half-way: kill, unmount and remove what is left


def test_creating_is_visible_and_can_be_deleted():
    """A create that is built (not from the warm pool) is listed as `creating` meanwhile; deleting it then
    kills its half-built sandbox, leaves nothing behind and answers its create request 409."""
    with Daemon(extra_args=["--warm", "0"]) as d:
        for attempt in range(8):
            results = {}

            def create(i):
                r = d.request("POST", "/v1/sandboxes", {"name": f"c{attempt}-{i}"})
                results[i] = r

            threads = [threading.Thread(target=create, args=(i,)) for i in range(6)]
            for t in threads:
                t.start()
            victim = None
            while victim is None and any(t.is_alive() for t in threads):
                listed = d.request("GET", "/v1/sandboxes?state=creating").json()["sandboxes"]
                if listed:
                    victim = listed[0]
                    assert d.request("DELETE", f"/v1/sandboxes/{victim['id']}").status == 204
            for t in threads:
                t.join(30)
            if victim is None:
                continue
            mine = [r for r in results.values() if r.status != 201]
            assert all(r.status == 409 and r.error_code() == "conflict" for r in mine), mine
            assert d.request("GET", f"/v1/sandboxes/{victim['id']}").json()["state"] == "deleted"
            for r in results.values():
                if r.status == 201:
                    d.delete(r.json()["id"])
            if mine:
                assert not os.path.exists(os.path.join(d.data_dir, "sandboxes", victim["id"]))
                assert host_mounts_under(os.path.join(d.data_dir, "sandboxes", victim["id"])) == []
                return
        raise AssertionError("never caught a sandbox in `creating` to delete")
