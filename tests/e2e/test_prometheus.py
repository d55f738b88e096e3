"""GET /metrics (sbxd's own metrics in the Prometheus text format 0.0.4) and JSON log lines."""
import json
import math
import os
import re
import subprocess
import time

import pytest

from sbxtest import BIN, Daemon, wait_for

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
STATES = {"creating", "running", "paused", "stopped", "failed"}


def parse_value(s):
    if s in ("+Inf", "Inf"):
        return math.inf
    if s == "-Inf":
        return -math.inf
    if s == "NaN":
        return math.nan
    assert re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", s), f"bad value {s!r}"
    return float(s)


def parse_labels(s, i):
    """Parses `{a="x",b="y\\"z"}` starting at s[i] == '{'; returns (labels, index after '}')."""
    assert s[i] == "{"
    i += 1
    labels = {}
    while True:
        if s[i] == "}":
            return labels, i + 1
        m = LABEL.match(s, i)
        assert m, f"bad label name at {s[i:]!r}"
        name = m.group(0)
        i = m.end()
        assert s[i:i + 2] == '="', f"bad label in {s!r}"
        i += 2
        value = []
        while s[i] != '"':
            if s[i] == "\\":
                nxt = s[i + 1]
                assert nxt in '\\"n', f"bad escape in {s!r}"
                value.append("\n" if nxt == "n" else nxt)
                i += 2
            else:
                value.append(s[i])
                i += 1
        i += 1
        assert name not in labels, f"repeated label {name} in {s!r}"
        labels[name] = "".join(value)
        if s[i] == ",":
            i += 1
        else:
            assert s[i] == "}", f"bad label list in {s!r}"


def parse_exposition(text):
    """Strictly parses the text format: every line is a HELP/TYPE comment or `name{labels} value`.
    Returns (types, samples) with samples a list of (name, labels, value)."""
    assert text.endswith("\n"), "the exposition ends with a newline"
    types, helps, samples = {}, {}, []
    seen_families = []
    for line in text[:-1].split("\n"):
        assert line, "no blank lines"
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                assert NAME.fullmatch(name), line
                if parts[1] == "TYPE":
                    assert name not in types, f"TYPE twice for {name}"
                    assert parts[3] in ("counter", "gauge", "histogram", "summary", "untyped"), line
                    types[name] = parts[3]
                    seen_families.append(name)
                else:
                    assert name not in helps, f"HELP twice for {name}"
                    assert len(parts) == 4 and parts[3], f"empty HELP: {line}"
                    helps[name] = parts[3]
            continue
        m = NAME.match(line)
        assert m, f"bad sample line {line!r}"
        name, i = m.group(0), m.end()
        labels = {}
        if i < len(line) and line[i] == "{":
            labels, i = parse_labels(line, i)
        assert line[i] == " ", f"bad sample line {line!r}"
        fields = line[i + 1:].split(" ")
        assert 1 <= len(fields) <= 2, f"bad sample line {line!r}"
        samples.append((name, labels, parse_value(fields[0])))
        family = name
        if family not in types:
            family = re.sub(r"_(bucket|sum|count)$", "", name)
            assert types.get(family) == "histogram", f"sample {name} has no TYPE"
        assert seen_families[-1] == family, f"sample {name} is not grouped under its TYPE"
    for name in types:
        assert name.startswith("sbx_"), name
        assert name in helps, f"no HELP for {name}"
    return types, samples


def scrape(daemon, **kw):
    r = daemon.request("GET", "/metrics", **kw)
    assert r.status == 200, r
    assert r.headers["content-type"] == CONTENT_TYPE, r.headers
    return parse_exposition(r.body.decode())


def value(samples, name, **labels):
    """The sum of the samples called name whose labels include `labels` (0 when there is none)."""
    return sum(v for n, l, v in samples if n == name and all(l.get(k) == x for k, x in labels.items()))


def test_exposition_format(daemon):
    types, samples = scrape(daemon)
    assert types["sbx_sandboxes"] == "gauge"
    for name in ("sbx_sandboxes_created_total", "sbx_sandboxes_deleted_total", "sbx_commands_started_total",
                 "sbx_http_requests_total", "sbx_errors_total", "sbx_process_cpu_seconds_total"):
        assert types[name] == "counter", name
    assert types["sbx_http_request_duration_seconds"] == "histogram"
    for name in ("sbx_warm_pool_sandboxes", "sbx_http_connections", "sbx_process_resident_memory_bytes",
                 "sbx_process_open_fds", "sbx_process_start_time_seconds"):
        assert types[name] == "gauge", name
    # Every state is there, even at 0.
    states = {l["state"] for n, l, _ in samples if n == "sbx_sandboxes"}
    assert STATES <= states, states
    assert value(samples, "sbx_process_resident_memory_bytes") > 1 << 20
    assert value(samples, "sbx_process_open_fds") >= 3
    start = value(samples, "sbx_process_start_time_seconds")
    assert time.time() - 3600 < start <= time.time() + 5, start
    assert value(samples, "sbx_http_connections") >= 1  # this scrape's
    # The previous scrape is counted once its response is complete.
    _, again = scrape(daemon)
    assert value(again, "sbx_http_requests_total", method="GET", route="metrics", code="200") >= 1


def test_counters_follow_actions(daemon):
    _, before = scrape(daemon)
    a, b = daemon.create(), daemon.create()
    try:
        _, mid = scrape(daemon)
        assert value(mid, "sbx_sandboxes", state="running") == value(before, "sbx_sandboxes", state="running") + 2
        assert value(mid, "sbx_sandboxes_created_total") == value(before, "sbx_sandboxes_created_total") + 2

        cmd = daemon.run(a, "echo hi")
        assert cmd["exit_code"] == 0, cmd
        events, _ = daemon.sse(a, cmd["id"])
        assert events, "the finished command's stream replays"
        r = daemon.request("GET", "/v1/sandboxes/sbx_nope")
        assert r.status == 404 and r.error_code() == "not_found", r
        r = daemon.request("GET", "/no/such/route")
        assert r.status == 404, r
        r = daemon.request("POST", f"/v1/sandboxes/{a}/commands", b"{not json")
        assert r.status == 400, r
        code400 = r.error_code()

        _, after = scrape(daemon)
        assert value(after, "sbx_commands_started_total") == value(mid, "sbx_commands_started_total") + 1
        for name, labels, delta in [
            ("sbx_errors_total", {"code": "not_found"}, 2),
            ("sbx_errors_total", {"code": code400}, 1),
            ("sbx_http_requests_total", {"method": "GET", "route": "v1/sandboxes/*", "code": "404"}, 1),
            ("sbx_http_requests_total", {"method": "GET", "route": "unmatched", "code": "404"}, 1),
            ("sbx_http_requests_total", {"method": "POST", "route": "v1/sandboxes/*/commands", "code": "200"}, 1),
            ("sbx_http_requests_total", {"method": "POST", "route": "v1/sandboxes/*/commands", "code": "400"}, 1),
            ("sbx_http_requests_total", {"route": "v1/sandboxes/*/commands/*/stream", "code": "200"}, 1),
            ("sbx_http_requests_total", {"method": "GET", "route": "metrics", "code": "200"}, 1),
        ]:
            assert value(after, name, **labels) == value(mid, name, **labels) + delta, (name, labels)
        # The raw path never becomes a label.
        assert not any(a in v or "sbx_nope" in v for _, l, _ in after for v in l.values())
    finally:
        daemon.delete(a)
        daemon.delete(b)
    _, end = scrape(daemon)
    assert value(end, "sbx_sandboxes_deleted_total") == value(after, "sbx_sandboxes_deleted_total") + 2
    assert value(end, "sbx_sandboxes", state="running") == value(before, "sbx_sandboxes", state="running")


def test_histogram_buckets(daemon):
    daemon.request("GET", "/v1/sandboxes")
    _, samples = scrape(daemon)
    routes = {l["route"] for n, l, _ in samples if n == "sbx_http_request_duration_seconds_count"}
    assert "v1/sandboxes" in routes, routes
    for route in routes:
        buckets = [(parse_value(l["le"]), v) for n, l, v in samples
                   if n == "sbx_http_request_duration_seconds_bucket" and l["route"] == route]
        les = [le for le, _ in buckets]
        assert les == sorted(les) and les[-1] == math.inf, les
        assert les[0] == pytest.approx(0.0001) and 10.0 in les, les
        counts = [v for _, v in buckets]
        assert counts == sorted(counts), (route, counts)  # cumulative
        count = value(samples, "sbx_http_request_duration_seconds_count", route=route)
        assert counts[-1] == count
        assert value(samples, "sbx_http_request_duration_seconds_sum", route=route) >= 0
        # Every request of the route is in both the counter and the histogram.
        assert value(samples, "sbx_http_requests_total", route=route) == count, route


def check_json_log(text, must_contain):
    lines = [l for l in text.split("\n") if l]
    assert lines
    msgs = []
    for line in lines:
        o = json.loads(line)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", o["ts"]), o
        assert o["level"] in ("error", "warning", "notice", "info", "debug"), o
        assert isinstance(o["msg"], str)
        msgs.append(o["msg"])
    assert any(must_contain in m for m in msgs), msgs


def test_auth_and_json_logs_from_env(monkeypatch):
    monkeypatch.setenv("SBX_LOG_FORMAT", "json")
    d = Daemon(api_key="s3cret", extra_args=["--warm", "0"])
    with d:
        r = d.request("GET", "/metrics", auth=False)
        assert r.status == 401 and r.error_code() == "unauthenticated", r
        r = d.request("GET", "/metrics", headers={"Authorization": "Bearer wrong"}, auth=False)
        assert r.status == 401, r
        _, samples = scrape(d)
        assert value(samples, "sbx_http_requests_total", route="unmatched", code="401") == 2
        assert value(samples, "sbx_errors_total", code="unauthenticated") == 2
        # Daemon-wide numbers are the admin's: a tenant key is refused.
        r = d.request("POST", "/v1/keys", {"name": "tenant"})
        assert r.status == 201, r
        r = d.request("GET", "/metrics", headers={"Authorization": f"Bearer {r.json()['key']}"}, auth=False)
        assert r.status == 403 and r.error_code() == "permission_denied", r
        sid = d.create()
        d.delete(sid)
        rc = d.stop()
        assert rc == 0, d.read_log()
        check_json_log(open(d.log_path).read(), f"sandbox {sid} created")


def test_log_format_flag():
    d = Daemon(extra_args=["--warm", "0", "--log-format", "json"])
    with d:
        assert d.stop() == 0, d.read_log()
        text = open(d.log_path).read()
    check_json_log(text, "listening on")
    assert any(json.loads(l)["msg"] == "stopped" for l in text.split("\n") if l)


def test_log_format_default_text_and_bad_values(daemon):
    assert re.search(r"^sbxd\[\d+\] notice: sbxd .* listening on", daemon.read_log(), re.M), daemon.read_log()
    sbxd = os.path.join(BIN, "sbxd")
    p = subprocess.run([sbxd, "--log-format", "xml"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 2 and "--log-format" in p.stderr, p
    p = subprocess.run([sbxd, "--help"], env=dict(os.environ, SBX_LOG_FORMAT="yaml"), capture_output=True,
                       text=True, timeout=10)
    assert p.returncode == 2 and "SBX_LOG_FORMAT" in p.stderr, p


def test_connection_closed_midstream_is_counted(daemon, sandbox):
    """A stream the client leaves is observed once, with the status it had sent."""
    r = daemon.request("POST", f"/v1/sandboxes/{sandbox}/commands", {"id": "long", "command": "sleep 30"})
    assert r.status == 201, r
    _, before = scrape(daemon)
    route = "v1/sandboxes/*/commands/*/stream"
    c = daemon.conn(10)
    c.request("GET", f"/v1/sandboxes/{sandbox}/commands/long/stream",
              headers=daemon.headers({"Accept": "text/event-stream"}))
    resp = c.getresponse()
    assert resp.status == 200
    c.close()
    wait_for(lambda: value(scrape(daemon)[1], "sbx_http_requests_total", route=route, code="200")
             == value(before, "sbx_http_requests_total", route=route, code="200") + 1, timeout=10,
             what="the cut stream to be counted")
    daemon.request("POST", f"/v1/sandboxes/{sandbox}/commands/long/kill")
