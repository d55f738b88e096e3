"""Network mode egress: a sandbox reaches what its policy allows (IPv4 CIDRs and domains, resolved through
sbxd's DNS path), nothing else, with the policy changeable live and kept across stop/start and an sbxd
crash. Every target is a real network namespace on this machine (tests/nettarget.py); sbxd's upstream
resolver is a fake one on loopback that records what it was asked."""
import shutil
import subprocess
import tempfile

import pytest

from nettarget import Resolver, Target, egress_args, links, probe, table_exists, table_name, wait_gone
from sbxtest import Daemon, sh

PORT = Target.PORT


PRIVATE = "10.99.77.9"  # a private address on the target: not part of "default allow"


@pytest.fixture(scope="module")
def target():
    with Target(extra_addrs=[PRIVATE]) as t:
        yield t


@pytest.fixture(scope="module")
def resolver(target):
    with Resolver({"one.test": target.addrs[0], "two.test": target.addrs[1],
                   "a.svc.test": target.addrs[0], "svc.test": target.addrs[1], "internal.test": PRIVATE}) as r:
        yield r


@pytest.fixture(scope="module")
def daemon(resolver):
    with Daemon(extra_args=egress_args(resolver)) as d:
        yield d
        assert d.stop() == 0, f"sbxd did not exit cleanly: {d.read_log()}"


def create(daemon, egress=None, **kw):
    network = {"mode": "egress"}
    if egress is not None:
        network["egress"] = egress
    r = daemon.request("POST", "/v1/sandboxes", dict(kw, network=network))
    assert r.status == 201, r
    return r.json()


def hello(addr):
    return f"hello from {addr}"


def test_mode_none_is_loopback_only(daemon):
    r = daemon.request("POST", "/v1/sandboxes", {})
    sb = r.json()
    try:
        assert sb["network"] == {"mode": "none"}
        out = sh(daemon, sb["id"], "ls /sys/class/net")
        assert out["stdout"].split() == ["lo"], out
    finally:
        daemon.delete(sb["id"])


def test_default_allow_reaches_outside(daemon, target, resolver):
    sb = create(daemon, {"default": "allow"})
    try:
        assert sb["network"]["mode"] == "egress"
        assert sb["network"]["egress"] == {"default": "allow", "allow": [], "deny": []}
        addr = sb["network"]["address"]
        subnet = daemon.extra_args[daemon.extra_args.index("--egress-subnet") + 1]
        assert addr.rsplit(".", 1)[0] == subnet.rsplit(".", 1)[0]
        out = sh(daemon, sb["id"], "ls /sys/class/net")
        assert out["stdout"].split() == ["eth0", "lo"], out
        res = probe(daemon, sb["id"], f"{target.addrs[0]}:{PORT}", f"two.test:{PORT}")
        assert res == {f"{target.addrs[0]}:{PORT}": hello(target.addrs[0]),
                       f"two.test:{PORT}": hello(target.addrs[1])}
        assert "two.test" in resolver.asked
    finally:
        daemon.delete(sb["id"])


def test_default_allow_excludes_private_ranges_unless_named(daemon):
    t = f"{PRIVATE}:{PORT}"
    sb = create(daemon, {"default": "allow"})
    try:
        # Neither by address nor through a name that resolves there (DNS rebinding).
        res = probe(daemon, sb["id"], t, f"internal.test:{PORT}")
        assert all(v.startswith("connect:") for v in res.values()), res
    finally:
        daemon.delete(sb["id"])
    for allow in (["10.0.0.0/8"], [PRIVATE], ["internal.test"]):
        sb = create(daemon, {"default": "allow", "allow": allow})
        try:
            target = t if "internal.test" not in allow else f"internal.test:{PORT}"
            assert probe(daemon, sb["id"], target)[target] == hello(PRIVATE), allow
        finally:
            daemon.delete(sb["id"])


def test_default_deny_allows_only_listed_cidrs(daemon, target, resolver):
    sb = create(daemon, {"default": "deny", "allow": [f"{target.addrs[1]}/32"]})
    try:
        asked = len(resolver.asked)
        res = probe(daemon, sb["id"], f"{target.addrs[0]}:{PORT}", f"{target.addrs[1]}:{PORT}",
                    f"one.test:{PORT}")
        assert res[f"{target.addrs[1]}:{PORT}"] == hello(target.addrs[1])
        assert res[f"{target.addrs[0]}:{PORT}"].startswith("connect:"), res
        # An unlisted name is answered NXDOMAIN by sbxd itself: the upstream never hears of it.
        assert res[f"one.test:{PORT}"].startswith("resolve:"), res
        assert resolver.asked[asked:] == []
    finally:
        daemon.delete(sb["id"])


def test_deny_overrides_allow(daemon, target):
    sb = create(daemon, {"default": "deny", "allow": [f"{target.net}.0/24"], "deny": [f"{target.addrs[1]}"]})
    try:
        res = probe(daemon, sb["id"], f"{target.addrs[0]}:{PORT}", f"{target.addrs[1]}:{PORT}")
        assert res[f"{target.addrs[0]}:{PORT}"] == hello(target.addrs[0])
        assert res[f"{target.addrs[1]}:{PORT}"].startswith("connect:"), res
    finally:
        daemon.delete(sb["id"])


def test_domains_exact_and_wildcard(daemon, target, resolver):
    sb = create(daemon, {"default": "deny", "allow": ["one.test", "*.svc.test"], "deny": ["two.test"]})
    try:
        asked = len(resolver.asked)
        res = probe(daemon, sb["id"], f"one.test:{PORT}", f"a.svc.test:{PORT}", f"svc.test:{PORT}",
                    f"two.test:{PORT}", f"{target.addrs[1]}:{PORT}")
        assert res[f"one.test:{PORT}"] == hello(target.addrs[0])
        assert res[f"a.svc.test:{PORT}"] == hello(target.addrs[0])
        # "*.svc.test" is the names below it, not svc.test itself; two.test is denied by name.
        assert res[f"svc.test:{PORT}"].startswith("resolve:"), res
        assert res[f"two.test:{PORT}"].startswith("resolve:"), res
        # Resolving an allowed name opens only the addresses it resolved to.
        assert res[f"{target.addrs[1]}:{PORT}"].startswith("connect:"), res
        assert set(resolver.asked[asked:]) == {"one.test", "a.svc.test"}
    finally:
        daemon.delete(sb["id"])


def test_name_letter_case_does_not_bypass_deny(daemon, resolver):
    sb = create(daemon, {"default": "allow", "deny": ["two.test"]})
    try:
        asked = len(resolver.asked)
        res = probe(daemon, sb["id"], f"TWO.Test:{PORT}", f"two.test.:{PORT}")
        assert all(v.startswith("resolve:") for v in res.values()), res
        assert resolver.asked[asked:] == []
    finally:
        daemon.delete(sb["id"])


def test_patch_changes_policy_live(daemon, target):
    sb = create(daemon, {"default": "deny"})
    sid, t = sb["id"], f"{target.addrs[0]}:{PORT}"
    try:
        assert probe(daemon, sid, t)[t].startswith("connect:")
        r = daemon.request("PATCH", f"/v1/sandboxes/{sid}",
                           {"network": {"egress": {"default": "deny", "allow": [target.addrs[0]]}}})
        assert r.status == 200, r
        assert r.json()["network"]["egress"]["allow"] == [target.addrs[0]]
        assert probe(daemon, sid, t)[t] == hello(target.addrs[0])
        r = daemon.request("PATCH", f"/v1/sandboxes/{sid}", {"network": {"egress": {"default": "deny"}}})
        assert r.status == 200, r
        assert probe(daemon, sid, t)[t].startswith("connect:")
        r = daemon.request("GET", f"/v1/sandboxes/{sid}")
        assert r.json()["network"]["egress"] == {"default": "deny", "allow": [], "deny": []}
    finally:
        daemon.delete(sid)


def test_stop_start_keeps_policy_and_frees_interface(daemon, target):
    sb = create(daemon, {"default": "deny", "allow": [target.addrs[0]]})
    sid = sb["id"]
    try:
        host_if_count = links().count(table_name(daemon))
        assert daemon.request("POST", f"/v1/sandboxes/{sid}/stop").status == 200
        got = daemon.request("GET", f"/v1/sandboxes/{sid}").json()
        assert got["state"] == "stopped"
        assert "address" not in got["network"]
        assert wait_gone(lambda: links().count(table_name(daemon)) == host_if_count - 1)
        assert daemon.request("POST", f"/v1/sandboxes/{sid}/start").status == 200
        res = probe(daemon, sid, f"{target.addrs[0]}:{PORT}", f"{target.addrs[1]}:{PORT}")
        assert res[f"{target.addrs[0]}:{PORT}"] == hello(target.addrs[0])
        assert res[f"{target.addrs[1]}:{PORT}"].startswith("connect:")
    finally:
        daemon.delete(sid)


def test_delete_removes_interface_and_chain(daemon):
    before = links().count(table_name(daemon))
    sb = create(daemon, {"default": "allow"})
    assert links().count(table_name(daemon)) == before + 1
    out = subprocess.run(["nft", "list", "table", "inet", table_name(daemon)], capture_output=True,
                         text=True).stdout
    chains = out.count("\tchain s")
    daemon.delete(sb["id"])
    assert wait_gone(lambda: links().count(table_name(daemon)) == before)
    out = subprocess.run(["nft", "list", "table", "inet", table_name(daemon)], capture_output=True,
                         text=True).stdout
    assert out.count("\tchain s") == chains - 1


def test_warm_pool_sandbox_gets_egress(daemon, target):
    # A create without a snapshot may be served by the warm pool (made with mode none): egress is added
    # to it as it is claimed.
    for _ in range(2):
        sb = create(daemon, {"default": "deny", "allow": [target.addrs[0]]})
        try:
            t = f"{target.addrs[0]}:{PORT}"
            assert probe(daemon, sb["id"], t)[t] == hello(target.addrs[0])
        finally:
            daemon.delete(sb["id"])


@pytest.mark.parametrize("network,fragment", [
    ({"mode": "bridge"}, "network.mode"),
    ({"mode": "none", "egress": {}}, "network.egress"),
    ({"mode": "egress", "egress": {"default": "maybe"}}, "egress.default"),
    ({"mode": "egress", "egress": {"allow": ["2001:db8::/32"]}}, "IPv6"),
    ({"mode": "egress", "egress": {"allow": ["10.0.0.0/33"]}}, "neither"),
    ({"mode": "egress", "egress": {"allow": ["bad..name"]}}, "neither"),
    ({"mode": "egress", "egress": {"allow": "one.test"}}, "egress.allow"),
    ({"mode": "egress", "egress": {"allow": [1]}}, "egress.allow"),
    ({"mode": "egress", "egress": {"allow": ["x.test"] * 257}}, "more than"),
    ({"mode": "egress", "egress": {"permit": []}}, "egress.permit"),
    ({"mode": "egress", "ports": []}, "network.ports"),
    ("egress", "network"),
])
def test_bad_network_is_a_typed_400(daemon, network, fragment):
    r = daemon.request("POST", "/v1/sandboxes", {"network": network})
    assert r.status == 400, r
    assert r.error_code() == "invalid_argument"
    assert fragment in r.json()["error"]["message"], r


def test_patch_validation(daemon):
    none = daemon.create()
    sb = create(daemon, {"default": "deny"})
    try:
        r = daemon.request("PATCH", f"/v1/sandboxes/{none}", {"network": {"egress": {"default": "allow"}}})
        assert r.status == 400 and r.error_code() == "invalid_argument", r
        r = daemon.request("PATCH", f"/v1/sandboxes/{sb['id']}", {"network": {"mode": "none"}})
        assert r.status == 400 and r.error_code() == "invalid_argument", r
        r = daemon.request("PATCH", f"/v1/sandboxes/{sb['id']}", {"network": {"egress": {"allow": ["::1"]}}})
        assert r.status == 400 and r.error_code() == "invalid_argument", r
        # A refused change leaves the policy as it was.
        got = daemon.request("GET", f"/v1/sandboxes/{sb['id']}").json()
        assert got["network"]["egress"] == {"default": "deny", "allow": [], "deny": []}
    finally:
        daemon.delete(none)
        daemon.delete(sb["id"])


def test_table_goes_with_the_daemon(resolver):
    d = Daemon(extra_args=egress_args(resolver))
    with d:
        sb = create(d, {"default": "allow"})
        assert table_exists(d)
    # --ephemeral: every sandbox deleted, then sbxd's table.
    assert not table_exists(d)
    assert table_name(d) not in links()
    assert sb["id"]


def test_rules_survive_sbxd_crash_and_are_rebuilt(resolver, target):
    data = tempfile.mkdtemp(prefix="sbx-e2e-egress-", dir="/var/tmp")
    args = egress_args(resolver)
    t0, t1 = f"{target.addrs[0]}:{PORT}", f"{target.addrs[1]}:{PORT}"
    d = Daemon(ephemeral=False, data_dir=data, extra_args=args + ["--warm", "0", "--log-level", "debug"]).start()
    sid = None
    try:
        sid = create(d, {"default": "deny", "allow": [target.addrs[0], "two.test"]})["id"]
        assert probe(d, sid, t0, t1)[t0] == hello(target.addrs[0])
        d.stop(sig=9)
        # sbxd is gone; its sandbox and the rules that confine it stay.
        assert table_exists(d)
        d = Daemon(ephemeral=False, data_dir=data, extra_args=args + ["--warm", "0", "--log-level", "debug"]).start()
        got = d.request("GET", f"/v1/sandboxes/{sid}").json()
        assert got["state"] == "running", got
        # Rebuilt in one piece: the CIDR rule, the new resolver port, the domain pinning.
        res = probe(d, sid, t0, f"{target.addrs[1]}:{PORT}", f"two.test:{PORT}", f"one.test:{PORT}")
        assert res[t0] == hello(target.addrs[0])
        assert res[f"two.test:{PORT}"] == hello(target.addrs[1])
        assert res[f"one.test:{PORT}"].startswith("resolve:"), res
        assert res[f"{target.addrs[1]}:{PORT}"].startswith("connect:"), res
    finally:
        if d.proc.poll() is not None:
            d = Daemon(ephemeral=False, data_dir=data, extra_args=args + ["--warm", "0", "--log-level", "debug"]).start()
        if sid:
            d.request("DELETE", f"/v1/sandboxes/{sid}")
        d.stop()
        assert not table_exists(d)
        shutil.rmtree(data, ignore_errors=True)


def test_cli_create_with_egress(daemon, target):
    from sbxtest import cli
    p = cli(daemon, "create", "--allow", target.addrs[0], "--allow", "*.svc.test", "--deny", "two.test")
    sid = p.stdout.decode().strip()
    try:
        net = daemon.request("GET", f"/v1/sandboxes/{sid}").json()["network"]
        assert net["mode"] == "egress"
        assert net["egress"] == {"default": "deny", "allow": [target.addrs[0], "*.svc.test"], "deny": ["two.test"]}
        t = f"{target.addrs[0]}:{PORT}"
        assert probe(daemon, sid, t)[t] == hello(target.addrs[0])
    finally:
        daemon.delete(sid)
    p = cli(daemon, "create", "--network", "egress", "--egress-default", "allow")
    sid = p.stdout.decode().strip()
    try:
        net = daemon.request("GET", f"/v1/sandboxes/{sid}").json()["network"]
        assert net["egress"] == {"default": "allow", "allow": [], "deny": []}
    finally:
        daemon.delete(sid)
    p = cli(daemon, "create", "--allow", "2001:db8::1", check=False)
    assert p.returncode != 0 and b"IPv6" in p.stderr, p
    p = cli(daemon, "create", "--network", "bridge", check=False)
    assert p.returncode == 2 and b"--network" in p.stderr, p


def test_fork_keeps_policy_with_its_own_address(daemon, target):
    sb = create(daemon, {"default": "deny", "allow": [target.addrs[0]]})
    forks = []
    try:
        r = daemon.request("POST", f"/v1/sandboxes/{sb['id']}/fork", {"count": 1}, timeout=120)
        assert r.status == 201, r
        forks = [f["id"] for f in r.json()["sandboxes"]]
        f = daemon.request("GET", f"/v1/sandboxes/{forks[0]}").json()
        assert f["network"]["egress"] == sb["network"]["egress"]
        assert f["network"]["address"] != sb["network"]["address"]
        res = probe(daemon, forks[0], f"{target.addrs[0]}:{PORT}", f"{target.addrs[1]}:{PORT}")
        assert res[f"{target.addrs[0]}:{PORT}"] == hello(target.addrs[0])
        assert res[f"{target.addrs[1]}:{PORT}"].startswith("connect:")
    finally:
        for fid in forks:
            daemon.delete(fid)
        daemon.delete(sb["id"])


def test_resolving_again_refreshes_the_pin(daemon, target):
    import re
    import time
    sb = create(daemon, {"default": "deny", "allow": ["one.test"]})
    try:
        t = f"one.test:{PORT}"
        assert probe(daemon, sb["id"], t)[t] == hello(target.addrs[0])

        def expires():
            out = subprocess.run(["nft", "list", "table", "inet", table_name(daemon)], capture_output=True,
                                 text=True).stdout
            m = re.search(re.escape(target.addrs[0]) + r" timeout 5m expires (?:(\d+)m)?(?:(\d+)s)?", out)
            assert m, out
            return int(m.group(1) or 0) * 60 + int(m.group(2) or 0)

        first = expires()
        time.sleep(3)
        assert expires() <= first - 2
        assert probe(daemon, sb["id"], t)[t] == hello(target.addrs[0])
        assert expires() >= first - 1  # a fresh 5 minutes, not what was left
    finally:
        daemon.delete(sb["id"])


def test_without_upstream_names_fail_fast_and_addresses_work(target):
    import time
    with Daemon(extra_args=egress_args(None)) as d:
        sb = create(d, {"default": "allow"})
        try:
            t0 = time.monotonic()
            res = probe(d, sb["id"], f"one.test:{PORT}", f"{target.addrs[0]}:{PORT}")
            assert res[f"one.test:{PORT}"].startswith("resolve:"), res
            assert res[f"{target.addrs[0]}:{PORT}"] == hello(target.addrs[0])
            assert time.monotonic() - t0 < 5  # NXDOMAIN at once, not a resolver timeout
        finally:
            d.delete(sb["id"])
        assert d.stop() == 0, d.read_log()
