"""Service URLs (docs/security.md "Service URLs"): a request without a valid token for exactly this
sandbox and port never reaches the service inside (401); only whoever may see a sandbox can mint a URL
for it; the token cannot be forged or extended; and the host has no other way into the sandbox's port
(no route, no listening socket on the host for it)."""
import os
import socket
import stat
import time
import types

import pytest

from sbxtest import Daemon, WebSocket, free_port, wait_for
from svcurl import HEADER, app_log, get, mint, path_of, start_app

ADMIN = "admin-secret-for-service-url-tests"


@pytest.fixture(scope="module")
def daemon():
    with Daemon(api_key=ADMIN, extra_args=["--service-domain", "svc.test"]) as d:
        yield d
        assert d.stop() == 0, f"sbxd did not exit cleanly: {d.read_log()}"


@pytest.fixture(scope="module")
def two(daemon):
    """Two sandboxes, each running the app on its own port: [(sid, port, url)]."""
    out = []
    for _ in range(2):
        port = free_port()  # free on the host right now: nothing of the host's can answer for it
        sid = daemon.create()
        start_app(daemon, sid, port)
        out.append((sid, port, mint(daemon, sid, port)))
    yield out
    for sid, _, _ in out:
        daemon.request("DELETE", f"/v1/sandboxes/{sid}")


def seen(daemon, sid, port, marker):
    return [r for r in app_log(daemon, sid, port) if marker in r["line"]]


def assert_401_unseen(daemon, sid, port, path, headers, marker):
    status, h, body = get(daemon, path, headers)
    assert status == 401, (status, body)
    assert h["content-type"] == "application/json" and b'"unauthenticated"' in body
    assert not seen(daemon, sid, port, marker), "a refused request reached the service"


def test_positive_control(daemon, two):
    sid, port, u = two[0]
    status, _, body = get(daemon, path_of(u["path_url"]) + "control", {HEADER: u["token"]})
    assert status == 200 and body == b"ok /control"
    assert seen(daemon, sid, port, "/control")


def test_missing_token(daemon, two):
    sid, port, u = two[0]
    assert_401_unseen(daemon, sid, port, path_of(u["path_url"]) + "m1", {}, "/m1")
    # An API key is not a service token, not even the admin's.
    assert_401_unseen(daemon, sid, port, path_of(u["path_url"]) + "m2", {"Authorization": f"Bearer {ADMIN}"},
                      "/m2")


def test_wrong_tokens(daemon, two):
    sid, port, u = two[0]
    prefix = path_of(u["path_url"])
    expiry, mac = u["token"].split(".")
    flipped = mac[:-1] + ("A" if mac[-1] != "A" else "B")
    for i, bad in enumerate(["x", "", u["token"] + "x", f"{expiry}.{flipped}", f"{int(expiry) + 3600}.{mac}",
                             f"{expiry}.", f".{mac}", "9" * 80]):
        assert_401_unseen(daemon, sid, port, f"{prefix}w{i}", {HEADER: bad}, f"/w{i}")
        status, h, _ = get(daemon, f"{prefix}q{i}?sbx_token={bad}")
        assert status == 401 and "set-cookie" not in h, "a wrong query token sets no cookie"
        assert_401_unseen(daemon, sid, port, f"{prefix}c{i}", {"Cookie": f"sbx_service_token={bad}"}, f"/c{i}")


def test_expired_token(daemon, two):
    sid, port, _ = two[0]
    u = mint(daemon, sid, port, expires_in_seconds=1)
    prefix = path_of(u["path_url"])
    assert get(daemon, prefix + "fresh", {HEADER: u["token"]})[0] == 200
    time.sleep(2.1)
    status, _, body = get(daemon, prefix + "stale", {HEADER: u["token"]})
    assert status == 401 and b"expired" in body
    assert not seen(daemon, sid, port, "/stale")


def test_token_for_another_port_or_sandbox(daemon, two):
    (sid_a, port_a, u_a), (sid_b, port_b, u_b) = two
    other_port = mint(daemon, sid_a, port_a + 1)
    # A's token for another port, and B's token, on A's URL.
    for i, t in enumerate([other_port["token"], u_b["token"]]):
        assert_401_unseen(daemon, sid_a, port_a, f"/s/{sid_a}/{port_a}/x{i}", {HEADER: t}, f"/x{i}")
    # A's token on B's URL and on A's id with B's port.
    assert_401_unseen(daemon, sid_b, port_b, f"/s/{sid_b}/{port_b}/y", {HEADER: u_a["token"]}, "/y")
    assert_401_unseen(daemon, sid_b, port_b, f"/s/{sid_a}/{port_b}/z", {HEADER: u_b["token"]}, "/z")
    # The host-header form checks the same binding.
    assert_401_unseen(daemon, sid_b, port_b, "/h", {"Host": f"{port_b}-{sid_b}.svc.test", HEADER: u_a["token"]},
                      "/h")


def test_other_tenant_cannot_mint_or_tunnel(daemon, two):
    sid, port, _ = two[0]
    admin = {"Authorization": f"Bearer {ADMIN}"}
    keys = {}
    for name in ("alice", "bob"):
        r = daemon.request("POST", "/v1/keys", {"name": name}, headers=admin, auth=False)
        assert r.status == 201, r
        keys[name] = {"Authorization": f"Bearer {r.json()['key']}"}
    r = daemon.request("POST", "/v1/sandboxes", {}, headers=keys["alice"], auth=False)
    assert r.status == 201, r
    alice_sb = r.json()["id"]
    try:
        r = daemon.request("POST", f"/v1/sandboxes/{alice_sb}/ports/80/url", {}, headers=keys["alice"], auth=False)
        assert r.status == 200, "the owner mints"
        for who in ("bob",):
            r = daemon.request("POST", f"/v1/sandboxes/{alice_sb}/ports/80/url", {}, headers=keys[who], auth=False)
            assert r.status == 404 and r.json()["error"]["code"] == "not_found", r
            r = daemon.request("GET", f"/v1/sandboxes/{alice_sb}/ports", headers=keys[who], auth=False)
            assert r.status == 404, r
            bob = types.SimpleNamespace(port=daemon.port, headers=lambda: keys[who])
            with pytest.raises(ConnectionError, match="404"):
                WebSocket(bob, f"/v1/sandboxes/{alice_sb}/tunnel")
        with pytest.raises(ConnectionError, match="401"):
            WebSocket(types.SimpleNamespace(port=daemon.port, headers=lambda: {}), f"/v1/sandboxes/{alice_sb}/tunnel")
        alice = types.SimpleNamespace(port=daemon.port, headers=lambda: keys["alice"])
        WebSocket(alice, f"/v1/sandboxes/{alice_sb}/tunnel").sock.close()  # control: the owner may
        r = daemon.request("POST", f"/v1/sandboxes/{sid}/ports/{port}/url", {}, headers=keys["alice"], auth=False)
        assert r.status == 404, "a tenant cannot mint for the admin's sandbox"
        r = daemon.request("POST", f"/v1/sandboxes/{alice_sb}/ports/80/url", {}, auth=False)
        assert r.status == 401, "minting needs an API key"
    finally:
        daemon.request("DELETE", f"/v1/sandboxes/{alice_sb}", headers=admin, auth=False)


def host_listeners():
    """Ports in LISTEN state in the host's network namespace (tcp and tcp6)."""
    out = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(name) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A":
                    out.add(int(fields[1].rsplit(":", 1)[1], 16))
    return out


def test_host_cannot_reach_the_port_otherwise(daemon, two):
    sid, port, u = two[0]
    assert get(daemon, path_of(u["path_url"]) + "still", {HEADER: u["token"]})[0] == 200, "positive control"
    assert port not in host_listeners(), "nothing listens on the host for the sandbox's port"
    for family, addr in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            with pytest.raises(OSError):
                s.connect((addr, port))
    # sbxd listens on its API port only, before and after a proxied connection.
    sbxd_pid = daemon.proc.pid
    inodes = set()
    for fd in os.listdir(f"/proc/{sbxd_pid}/fd"):
        try:
            target = os.readlink(f"/proc/{sbxd_pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    listening = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(name) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:
                    listening.add(int(fields[1].rsplit(":", 1)[1], 16))
    assert listening == {daemon.port}, listening


def test_service_paths_never_reach_the_api(daemon, two):
    sid, port, u = two[0]
    # Anything under /s/ is a service URL (or 404), never an API route, whatever it claims.
    for path in ("/s/../v1/sandboxes", "/s/%2e%2e/v1/sandboxes", f"/s/{sid}/0/", f"/s/{sid}/x/", "/s/"):
        status, _, body = get(daemon, path, {HEADER: u["token"]})
        assert status in (401, 404) and b"sandboxes" not in body.replace(b"/s/", b""), (path, status, body)
    # A path that climbs out of the prefix goes to the service as it was sent, not to the API.
    status, _, body = get(daemon, path_of(u["path_url"]) + "../../../v1/sandboxes", {HEADER: u["token"]})
    assert status == 200 and body == b"ok /../../../v1/sandboxes", body


def test_secret_file_is_private(daemon, two):
    path = os.path.join(daemon.data_dir, "service.key")
    st = os.stat(path)
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_size == 32 and st.st_uid == 0


def test_the_service_never_sees_the_token(daemon, two):
    sid, port, u = two[0]
    prefix = path_of(u["path_url"])
    get(daemon, prefix + "nt1", {HEADER: u["token"]})
    get(daemon, prefix + "nt2", {"Cookie": f"x=1; sbx_service_token={u['token']}"})
    wait_for(lambda: seen(daemon, sid, port, "/nt2"), what="the request")
    for r in app_log(daemon, sid, port):
        assert u["token"] not in repr(r), r
