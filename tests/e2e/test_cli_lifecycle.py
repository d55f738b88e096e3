"""The sbx CLI's lifecycle and tenant commands end to end against a real sbxd started with an admin key:
create/run --idle-ttl/--lifetime/--delete-after-stop, renew, update, ls --state (tombstones included),
keys create/ls/rm, and a tenant key made by `sbx keys create` that cannot see the admin's sandbox. Every
effect is checked through the HTTP API, not through the CLI's own output."""
import datetime
import json
import os
import subprocess
import time

import pytest

from sbxtest import BIN, Daemon, wait_for

ADMIN_KEY = "admin-cli-lifecycle-test-key"


@pytest.fixture(scope="module")
def admin():
    with Daemon(api_key=ADMIN_KEY) as d:
        yield d
        assert d.stop() == 0, f"sbxd did not exit cleanly: {d.read_log()}"


def sbx(daemon, *args, key=ADMIN_KEY, check=False):
    env = dict(os.environ, SBX_URL=daemon.url)
    env.pop("SBX_API_KEY", None)
    if key:
        env["SBX_API_KEY"] = key
    p = subprocess.run([os.path.join(BIN, "sbx"), *args], env=env, capture_output=True, timeout=120)
    if check:
        assert p.returncode == 0, (args, p.returncode, p.stdout, p.stderr)
    return p


def out(p):
    return p.stdout.decode()


def get(d, sid):
    r = d.request("GET", f"/v1/sandboxes/{sid}")
    assert r.status == 200, r
    return r.json()


def ts(s):
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc).timestamp()


def create(d, *args):
    sid = out(sbx(d, "create", *args, check=True)).strip()
    assert sid.startswith("sbx_"), sid
    return sid


def test_create_sets_lifecycle_fields(admin):
    sid = create(admin, "--idle-ttl", "0", "--lifetime", "1h", "--delete-after-stop", "1.5m")
    try:
        sb = get(admin, sid)
        assert sb["idle_ttl_seconds"] == 0
        assert sb["timeout_seconds"] == 3600
        assert sb["delete_after_stop_seconds"] == 90
        assert abs(ts(sb["expires_at"]) - (time.time() + 3600)) < 60
    finally:
        sbx(admin, "rm", sid, check=True)
    # Without the flags, the daemon's defaults apply.
    sid = create(admin)
    try:
        sb = get(admin, sid)
        assert (sb["idle_ttl_seconds"], sb["timeout_seconds"], sb["delete_after_stop_seconds"]) == (600, 0, 0)
        assert sb["expires_at"] is None
    finally:
        sbx(admin, "rm", sid, check=True)


def test_idle_ttl_stops_then_rm_leaves_a_tombstone(admin):
    # Named, so it is built for this create rather than taken from the warm pool (see the next test).
    sid = create(admin, "--idle-ttl", "1", "--name", "idle-box")
    assert get(admin, sid)["idle_ttl_seconds"] == 1
    got = wait_for(lambda: (s := get(admin, sid))["state"] == "stopped" and s, timeout=15, what="idle stop")
    assert got["stopped_at"] is not None and "idle" in (got["state_reason"] or "")
    assert sid in out(sbx(admin, "ls", "--state", "stopped", check=True))
    assert sid not in out(sbx(admin, "ls", "--state", "running", check=True))
    sbx(admin, "rm", sid, check=True)
    # Deleted: only `ls --state deleted` lists it, and `get` still answers with the tombstone.
    assert sid not in out(sbx(admin, "ls", check=True))
    table = out(sbx(admin, "ls", "--state", "deleted", check=True))
    assert any(line.split()[0] == sid and "deleted" in line.split() for line in table.splitlines()[1:]), table
    listed = json.loads(out(sbx(admin, "ls", "--state=deleted", "--json", check=True)))
    assert sid in [s["id"] for s in listed]
    assert json.loads(out(sbx(admin, "get", sid, check=True)))["state"] == "deleted"


def test_idle_ttl_stops_a_sandbox_from_the_warm_pool(admin):
    wait_for(lambda: admin.warm_ids(), timeout=30, what="a ready warm sandbox")
    sid = create(admin, "--idle-ttl", "1")  # unnamed: served from the warm pool
    try:
        wait_for(lambda: get(admin, sid)["state"] == "stopped", timeout=10, what="idle stop")
    finally:
        sbx(admin, "rm", sid)


def test_ls_metadata_filter(admin):
    a = create(admin, "--metadata", "team=cli-ls", "--metadata", "n=1")
    b = create(admin, "--metadata", "team=cli-ls", "--metadata", "n=2")
    try:
        both = out(sbx(admin, "ls", "--metadata", "team=cli-ls", check=True))
        assert a in both and b in both
        one = out(sbx(admin, "ls", "--metadata", "team=cli-ls", "--metadata", "n=2", check=True))
        assert a not in one and b in one
    finally:
        sbx(admin, "rm", a, b, check=True)


def test_renew_and_update(admin):
    sid = create(admin, "--lifetime", "10m")
    try:
        first = get(admin, sid)
        assert first["timeout_seconds"] == 600
        # renew with a new lifetime: expires_at = now + 2 h, and the lifetime is kept.
        p = sbx(admin, "renew", sid, "--lifetime", "2h", check=True)
        assert p.stdout == b""  # silent, like pause/stop
        sb = get(admin, sid)
        assert sb["timeout_seconds"] == 7200
        assert abs(ts(sb["expires_at"]) - (time.time() + 7200)) < 60
        # renew without one: now + the kept lifetime again (never earlier than before).
        before = ts(sb["expires_at"])
        renewed = json.loads(out(sbx(admin, "renew", sid, "--json", check=True)))
        assert renewed["id"] == sid and renewed["timeout_seconds"] == 7200
        assert ts(get(admin, sid)["expires_at"]) >= before

        p = sbx(admin, "update", sid, "--idle-ttl", "5m", "--delete-after-stop", "30", "--metadata", "a=1",
                "--metadata", "b=x=y", check=True)
        assert p.stdout == b""
        sb = get(admin, sid)
        assert sb["idle_ttl_seconds"] == 300 and sb["delete_after_stop_seconds"] == 30
        assert sb["metadata"] == {"a": "1", "b": "x=y"}
        assert sb["timeout_seconds"] == 7200  # untouched

        # --metadata replaces; 0 switches a setting off; --json prints the result.
        shown = json.loads(out(sbx(admin, "update", sid, "--metadata", "c=3", "--delete-after-stop", "0",
                                   "--idle-ttl", "0", "--json", check=True)))
        sb = get(admin, sid)
        assert shown["metadata"] == sb["metadata"] == {"c": "3"}
        assert sb["idle_ttl_seconds"] == 0 and sb["delete_after_stop_seconds"] == 0

        # A new lifetime restarts expires_at from now; 0 removes it.
        sbx(admin, "update", sid, "--lifetime", "1h", check=True)
        sb = get(admin, sid)
        assert sb["timeout_seconds"] == 3600 and abs(ts(sb["expires_at"]) - (time.time() + 3600)) < 60
        sbx(admin, "update", sid, "--lifetime", "0", check=True)
        sb = get(admin, sid)
        assert sb["timeout_seconds"] == 0 and sb["expires_at"] is None
        # Nothing to renew now: the daemon's error, exit 1.
        p = sbx(admin, "renew", sid)
        assert p.returncode == 1 and b"invalid_argument" in p.stderr, p.stderr
    finally:
        sbx(admin, "rm", sid, check=True)
    p = sbx(admin, "update", "sbx_nosuchsandbox", "--idle-ttl", "1")
    assert p.returncode == 1 and b"not_found" in p.stderr
    p = sbx(admin, "renew", "sbx_nosuchsandbox", "--lifetime", "1")
    assert p.returncode == 1 and b"not_found" in p.stderr


def test_run_accepts_lifecycle_flags(admin):
    p = sbx(admin, "run", "--idle-ttl", "0", "--lifetime", "10m", "--delete-after-stop", "1h", "-t", "30", "--",
            "sh", "-c", "echo ran")
    assert p.returncode == 0 and p.stdout == b"ran\n", p.stderr


def test_keys_round_trip(admin):
    p = sbx(admin, "keys", "create", "--name", "cli-fleet", "--max-sandboxes", "2", "--max-memory", "1G",
            check=True)
    lines = dict(line.split(":", 1) for line in out(p).splitlines())
    kid, secret = lines["id"].strip(), lines["secret"].strip()
    assert kid.startswith("key_") and secret.startswith("sbxk_")
    assert b"only" in p.stderr and b"once" in p.stderr  # the secret is shown once, and sbx says so
    k2 = json.loads(out(sbx(admin, "keys", "create", "--json", check=True)))
    assert k2["key"].startswith("sbxk_") and k2["quotas"] == {"max_sandboxes": 0, "max_memory_mb": 0}

    api = {k["id"]: k for k in admin.request("GET", "/v1/keys").json()["keys"]}
    assert api[kid]["name"] == "cli-fleet"
    assert api[kid]["quotas"] == {"max_sandboxes": 2, "max_memory_mb": 1024}
    table = out(sbx(admin, "keys", "ls", check=True))
    assert table.splitlines()[0].split() == ["ID", "NAME", "CREATED", "QUOTAS"]
    row = next(line for line in table.splitlines() if line.startswith(kid))
    assert "cli-fleet" in row and "sandboxes=2 memory=1G" in row
    assert "unlimited" in next(line for line in table.splitlines() if line.startswith(k2["id"]))
    assert secret not in table and k2["key"] not in table
    listed = json.loads(out(sbx(admin, "keys", "ls", "--json", check=True)))
    assert {kid, k2["id"]} <= {k["id"] for k in listed} and all("key" not in k for k in listed)

    sbx(admin, "keys", "rm", kid, k2["id"], check=True)
    remaining = {k["id"] for k in admin.request("GET", "/v1/keys").json()["keys"]}
    assert kid not in remaining and k2["id"] not in remaining
    p = sbx(admin, "keys", "rm", kid)
    assert p.returncode == 1 and b"not_found" in p.stderr


def test_tenant_key_cannot_see_the_admins_sandbox(admin):
    mine = create(admin, "--name", "admin-box")
    p = sbx(admin, "keys", "create", "--name", "tenant", "--max-sandboxes", "1", check=True)
    lines = dict(line.split(":", 1) for line in out(p).splitlines())
    kid, secret = lines["id"].strip(), lines["secret"].strip()
    theirs = None
    try:
        for ref in (mine, "admin-box"):
            p = sbx(admin, "get", ref, key=secret)
            assert p.returncode == 1, p
            assert b"not_found" in p.stderr, p.stderr
        for verb in ("rm", "stop"):
            p = sbx(admin, verb, mine, key=secret)
            assert p.returncode == 1 and b"not_found" in p.stderr
        p = sbx(admin, "update", mine, "--idle-ttl", "1", key=secret)
        assert p.returncode == 1 and b"not_found" in p.stderr
        assert get(admin, mine)["idle_ttl_seconds"] == 600
        assert mine not in out(sbx(admin, "ls", key=secret, check=True))
        # Admin-only routes.
        for args in (("keys", "ls"), ("keys", "create"), ("keys", "rm", kid)):
            p = sbx(admin, *args, key=secret)
            assert p.returncode == 1 and b"permission_denied" in p.stderr, (args, p.stderr)
        # Its own sandbox works; the quota (1 sandbox) stops a second one.
        theirs = create_as(admin, secret)
        assert theirs in out(sbx(admin, "ls", key=secret, check=True))
        assert theirs in out(sbx(admin, "ls", check=True))  # the admin sees every sandbox
        p = sbx(admin, "create", key=secret)
        assert p.returncode == 1 and b"quota_exceeded" in p.stderr, p.stderr
        # Revoked: the key stops working at once; its sandbox stays for the admin.
        sbx(admin, "keys", "rm", kid, check=True)
        kid = None
        p = sbx(admin, "ls", key=secret)
        assert p.returncode == 1 and b"unauthenticated" in p.stderr, p.stderr
        assert get(admin, theirs)["state"] == "running"
    finally:
        if kid:
            sbx(admin, "keys", "rm", kid)
        for sid in (mine, theirs):
            if sid:
                sbx(admin, "rm", sid, check=True)


def create_as(d, key):
    sid = out(sbx(d, "create", key=key, check=True)).strip()
    assert sid.startswith("sbx_")
    return sid


@pytest.mark.parametrize("args", [
    ("create", "--idle-ttl", "soon"),
    ("create", "--idle-ttl", "1.5"),
    ("create", "--lifetime", "-1"),
    ("create", "--delete-after-stop", "2d"),
    ("create", "--idle-ttl"),
    ("create", "--json"),
    ("renew",),
    ("renew", "sbx_x", "--lifetime", "0"),
    ("renew", "sbx_x", "--idle-ttl", "1"),
    ("renew", "sbx_x", "sbx_y"),
    ("update",),
    ("update", "sbx_x"),
    ("update", "sbx_x", "--env", "A=B"),
    ("update", "sbx_x", "--memory", "1G"),
    ("update", "sbx_x", "--metadata", "novalue"),
    ("update", "sbx_x", "extra", "--idle-ttl", "1"),
    ("keys",),
    ("keys", "bogus"),
    ("keys", "create", "--max-sandboxes", "0"),
    ("keys", "create", "--max-memory", "lots"),
    ("keys", "create", "extra"),
    ("keys", "ls", "extra"),
    ("keys", "rm"),
    ("ls", "--state"),
    ("ls", "extra"),
    ("ls", "--metadata", "x"),
])
def test_usage_errors_exit_2(admin, args):
    p = sbx(admin, *args)
    assert p.returncode == 2, (args, p.returncode, p.stderr)
    assert b"--help" in p.stderr and p.stdout == b""


def test_help_texts(admin):
    main = out(sbx(admin, "--help", check=True))
    for verb in ("update", "renew", "keys"):
        assert f"  {verb} " in main
    for args, words in [(("create", "--help"), ["--idle-ttl", "--lifetime", "--delete-after-stop"]),
                        (("run", "--help"), ["--idle-ttl", "--lifetime", "--delete-after-stop", "--timeout"]),
                        (("update", "--help"), ["--idle-ttl", "--lifetime", "--delete-after-stop", "--metadata"]),
                        (("renew", "--help"), ["--lifetime"]),
                        (("keys", "--help"), ["create", "ls", "rm", "--max-sandboxes", "--max-memory", "once"]),
                        (("keys", "create", "--help"), ["--max-sandboxes"]),
                        (("ls", "--help"), ["--state", "deleted"]),
                        (("help", "renew"), ["--lifetime"])]:
        text = out(sbx(admin, *args, check=True))
        for w in words:
            assert w in text, (args, w)
