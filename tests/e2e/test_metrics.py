"""GET /v1/sandboxes/{id}/metrics: CPU, memory and processes from the sandbox's cgroups."""


def metrics(daemon, sid):
    r = daemon.request("GET", f"/v1/sandboxes/{sid}/metrics")
    assert r.status == 200, r
    return r.json()


def test_metrics_follow_what_the_sandbox_does(daemon, sandbox):
    before = metrics(daemon, sandbox)
    assert before["pids"] >= 1 and before["memory_bytes"] > 0, before  # init is there
    assert before["limits"] == {"cpus": 1.0, "memory_bytes": 512 << 20, "pids": 512, "disk_bytes": 10240 << 20}
    # Half a second of its own CPU time (not wall time: the host may be busy), 64 MiB held meanwhile.
    r = daemon.request("POST", f"/v1/sandboxes/{sandbox}/commands", {
        "id": "burn", "command": "python3 -c 'import time\nb = b\"x\" * (64 << 20)\n"
                                 "while time.process_time() < 0.5: pass\ntime.sleep(30)'"})
    assert r.status == 201, r
    from sbxtest import wait_for
    wait_for(lambda: metrics(daemon, sandbox)["cpu_usage_seconds"] >= before["cpu_usage_seconds"] + 0.4,
             timeout=20, what="CPU usage to show")
    now = metrics(daemon, sandbox)
    assert now["memory_bytes"] >= before["memory_bytes"] + (60 << 20), (before, now)
    assert now["pids"] >= before["pids"] + 1, (before, now)
    assert now["memory_peak_bytes"] >= now["memory_bytes"]
    daemon.request("POST", f"/v1/sandboxes/{sandbox}/commands/burn/kill")


def test_metrics_errors(daemon, sandbox):
    r = daemon.request("GET", "/v1/sandboxes/sbx_nope/metrics")
    assert r.status == 404 and r.error_code() == "not_found", r
    assert daemon.request("POST", f"/v1/sandboxes/{sandbox}/stop").status == 200
    r = daemon.request("GET", f"/v1/sandboxes/{sandbox}/metrics")
    assert r.status == 409 and r.error_code() == "not_running", r
