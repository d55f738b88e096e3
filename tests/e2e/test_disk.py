"""resources.disk_mb: the size of a sandbox's own disk, and the disk figures of its metrics."""
from sbxtest import wait_for


def metrics(daemon, sid):
    r = daemon.request("GET", f"/v1/sandboxes/{sid}/metrics")
    assert r.status == 200, r
    return r.json()


def test_default_disk_and_metrics_follow_writes(daemon, sandbox):
    r = daemon.request("GET", f"/v1/sandboxes/{sandbox}")
    assert r.json()["resources"]["disk_mb"] == 10240, r
    before = metrics(daemon, sandbox)
    assert before["limits"]["disk_bytes"] == 10240 << 20, before
    assert 0 < before["disk_used_bytes"] < 16 << 20, before  # the root directories only
    assert before["disk_free_bytes"] > 9 << 30, before
    assert before["io_read_bytes"] is not None and before["io_write_bytes"] is not None, before
    r = daemon.request("PUT", f"/v1/sandboxes/{sandbox}/files?path=/root/data.bin", body=b"\x5a" * (16 << 20))
    assert r.status == 200, r
    daemon.run(sandbox, "sync")
    now = wait_for(lambda: (lambda m: m if m["disk_used_bytes"] >= before["disk_used_bytes"] + (15 << 20) else None)(
        metrics(daemon, sandbox)), timeout=10, what="disk use to grow")
    assert now["disk_free_bytes"] <= before["disk_free_bytes"] - (15 << 20), (before, now)
    assert now["io_write_bytes"] >= before["io_write_bytes"] + (15 << 20), (before, now)


def test_disk_size_is_chosen_at_create(daemon):
    r = daemon.request("POST", "/v1/sandboxes", {"resources": {"disk_mb": 100}})
    assert r.status == 201, r
    sid = r.json()["id"]
    try:
        assert r.json()["resources"]["disk_mb"] == 100
        m = metrics(daemon, sid)
        assert m["limits"]["disk_bytes"] == 100 << 20, m
        out = daemon.run(sid, "df -k / | tail -1")["stdout"].split()
        assert 80 * 1024 <= int(out[1]) <= 100 * 1024, out
    finally:
        daemon.request("DELETE", f"/v1/sandboxes/{sid}")


def test_bad_disk_mb_is_invalid_argument(daemon):
    for bad in (0, 63, 1048577, -5, "1G", 2.5, False, [64]):
        r = daemon.request("POST", "/v1/sandboxes", {"resources": {"disk_mb": bad}})
        assert r.status == 400 and r.error_code() == "invalid_argument", (bad, r)
        assert "disk_mb" in r.json()["error"]["message"], r
