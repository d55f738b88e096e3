"""Tenants: API keys made by the admin. A tenant's key must not reach another tenant's sandbox on any
route (every answer is the same 404 as for an id that never existed), must not manage keys or read the
daemon's metrics, stops working the moment it is revoked, and is held to its quotas. Secrets are stored
hashed only."""
import glob
import os

import pytest

from sbxtest import Daemon, WebSocket

ADMIN = "admin-secret-for-tenant-tests"


class As:
    """The daemon seen with one key."""

    def __init__(self, d, key):
        self.d, self.key = d, key

    def request(self, method, path, body=None, headers=None):
        h = {"Authorization": f"Bearer {self.key}"}
        h.update(headers or {})
        return self.d.request(method, path, body, headers=h, auth=False)

    def create(self, **body):
        r = self.request("POST", "/v1/sandboxes", body)
        assert r.status == 201, r
        return r.json()["id"]


@pytest.fixture(scope="module")
def env():
    with Daemon(api_key=ADMIN, extra_args=["--warm", "1"]) as d:
        admin = As(d, ADMIN)
        keys = {}
        for name in ("alice", "bob"):
            r = admin.request("POST", "/v1/keys", {"name": name})
            assert r.status == 201, r
            keys[name] = r.json()
        yield d, admin, keys


def test_key_create_answer_and_listing(env):
    d, admin, keys = env
    k = keys["alice"]
    assert k["key"].startswith("sbxk_") and len(k["key"]) >= 40 and k["id"].startswith("key_")
    listed = admin.request("GET", "/v1/keys").json()["keys"]
    assert {x["id"] for x in listed} >= {keys["alice"]["id"], keys["bob"]["id"]}
    assert all("key" not in x for x in listed), "the secret is shown once, at creation"


def test_secrets_are_stored_hashed(env):
    d, admin, keys = env
    blob = b""
    for path in glob.glob(os.path.join(d.data_dir, "sbx.db*")):
        with open(path, "rb") as f:
            blob += f.read()
    assert keys["alice"]["id"].encode() in blob, "positive control: the key's row is in the database"
    assert keys["alice"]["key"].encode() not in blob


def every_route(sid):
    """(method, path, body) for every route that names a sandbox."""
    c = f"/v1/sandboxes/{sid}"
    return [
        ("GET", c, None), ("DELETE", c, None), ("PATCH", c, {"idle_ttl_seconds": 5}),
        ("POST", f"{c}/pause", None), ("POST", f"{c}/resume", None), ("POST", f"{c}/stop", None),
        ("POST", f"{c}/start", None), ("POST", f"{c}/renew", {"timeout_seconds": 60}), ("GET", f"{c}/metrics", None),
        ("POST", f"{c}/commands", {"command": "echo pwned", "wait": True}), ("GET", f"{c}/commands", None),
        ("GET", f"{c}/commands/victim", None), ("GET", f"{c}/commands/victim/stream", None),
        ("POST", f"{c}/commands/victim/stdin", b"x"), ("POST", f"{c}/commands/victim/signal", {"signal": 9}),
        ("POST", f"{c}/commands/victim/kill", None), ("GET", f"{c}/commands/victim/logs", None),
        ("PUT", f"{c}/files?path=/root/pwned", b"x"), ("GET", f"{c}/files?path=/etc/hostname", None),
        ("DELETE", f"{c}/files?path=/root/secret", None), ("GET", f"{c}/files/stat?path=/root", None),
        ("GET", f"{c}/files/list?path=/root", None), ("POST", f"{c}/files/mkdir", {"path": "/root/x"}),
        ("POST", f"{c}/files/move", {"from": "/root/secret", "to": "/root/moved"}),
    ]


def test_another_tenants_sandbox_is_invisible_on_every_route(env):
    d, admin, keys = env
    alice, bob = As(d, keys["alice"]["key"]), As(d, keys["bob"]["key"])
    sid = alice.create(name="alices-box")
    try:
        assert alice.request("PUT", f"/v1/sandboxes/{sid}/files?path=/root/secret", b"s3cret").status == 200
        r = alice.request("POST", f"/v1/sandboxes/{sid}/commands", {"id": "victim", "command": "sleep 30"})
        assert r.status == 201
        fake = "sbx_" + "z" * 20
        for method, path, body in every_route(sid):
            r = bob.request(method, path, body)
            assert r.status == 404 and r.error_code() == "not_found", (method, path, r)
            assert r.json()["error"]["message"] == f"sandbox `{sid}` not found", (method, path, r)
            # Indistinguishable from an id that never existed.
            never = bob.request(method, path.replace(sid, fake), body)
            assert (never.status, never.body.replace(fake.encode(), sid.encode())) == (r.status, r.body)
        # The same holds for a name, the list and the WebSocket stream.
        assert bob.request("GET", "/v1/sandboxes/alices-box").status == 404
        assert sid not in [s["id"] for s in bob.request("GET", "/v1/sandboxes").json()["sandboxes"]]
        with pytest.raises(ConnectionError, match="404"):
            ws_as(d, keys["bob"]["key"], f"/v1/sandboxes/{sid}/commands/victim/stream")
        # Nothing bob tried changed anything: alice's sandbox runs, her file and command are intact.
        assert alice.request("GET", f"/v1/sandboxes/{sid}").json()["state"] == "running"
        assert alice.request("GET", f"/v1/sandboxes/{sid}/files?path=/root/secret").body == b"s3cret"
        assert alice.request("GET", f"/v1/sandboxes/{sid}/commands/victim").json()["state"] == "running"
        assert alice.request("GET", f"/v1/sandboxes/{sid}/files/stat?path=/root/pwned").status == 404
        # The admin sees every tenant's sandboxes.
        assert admin.request("GET", f"/v1/sandboxes/{sid}").status == 200
        assert sid in [s["id"] for s in admin.request("GET", "/v1/sandboxes").json()["sandboxes"]]
    finally:
        assert alice.request("DELETE", f"/v1/sandboxes/{sid}").status == 204
    # Even its tombstone is alice's alone.
    assert alice.request("GET", f"/v1/sandboxes/{sid}").json()["state"] == "deleted"
    assert bob.request("GET", f"/v1/sandboxes/{sid}").status == 404
    assert sid not in [s["id"] for s in bob.request("GET", "/v1/sandboxes?state=deleted").json()["sandboxes"]]


def ws_as(d, key, path):
    saved = d.api_key
    d.api_key = key
    try:
        return WebSocket(d, path)
    finally:
        d.api_key = saved


def test_names_are_per_tenant(env):
    d, admin, keys = env
    alice, bob = As(d, keys["alice"]["key"]), As(d, keys["bob"]["key"])
    a = alice.create(name="web")
    b = bob.create(name="web")
    try:
        assert a != b
        assert alice.request("GET", "/v1/sandboxes/web").json()["id"] == a
        assert bob.request("GET", "/v1/sandboxes/web").json()["id"] == b
        r = alice.request("POST", "/v1/sandboxes", {"name": "web"})
        assert r.status == 409 and r.error_code() == "conflict"
    finally:
        alice.request("DELETE", f"/v1/sandboxes/{a}")
        bob.request("DELETE", f"/v1/sandboxes/{b}")


def test_tenants_cannot_manage_keys_or_read_daemon_metrics(env):
    d, admin, keys = env
    bob = As(d, keys["bob"]["key"])
    for method, path, body in (("GET", "/v1/keys", None), ("POST", "/v1/keys", {"name": "mine"}),
                               ("DELETE", f"/v1/keys/{keys['alice']['id']}", None), ("GET", "/metrics", None)):
        r = bob.request(method, path, body)
        assert r.status == 403 and r.error_code() == "permission_denied", (path, r)
    assert As(d, "sbxk_" + "a" * 40).request("GET", "/v1/sandboxes").status == 401
    assert As(d, keys["bob"]["key"] + "x").request("GET", "/v1/sandboxes").status == 401


def test_revoked_key_stops_at_once_and_its_sandboxes_stay(env):
    d, admin, _ = env
    k = admin.request("POST", "/v1/keys", {"name": "temp"}).json()
    t = As(d, k["key"])
    sid = t.create()
    assert admin.request("DELETE", f"/v1/keys/{k['id']}").status == 204
    r = t.request("GET", "/v1/sandboxes")
    assert r.status == 401 and r.error_code() == "unauthenticated"
    assert admin.request("GET", f"/v1/sandboxes/{sid}").json()["state"] == "running"
    assert admin.request("DELETE", f"/v1/keys/{k['id']}").error_code() == "not_found"
    assert admin.request("DELETE", f"/v1/sandboxes/{sid}").status == 204


def test_quotas(env):
    d, admin, _ = env
    k = admin.request("POST", "/v1/keys", {"name": "small", "quotas": {"max_sandboxes": 2, "max_memory_mb": 400}}).json()
    assert k["quotas"] == {"max_sandboxes": 2, "max_memory_mb": 400}
    t = As(d, k["key"])
    a = t.create(resources={"memory_mb": 256})
    try:
        r = t.request("POST", "/v1/sandboxes", {"resources": {"memory_mb": 256}})
        assert r.status == 429 and r.error_code() == "quota_exceeded" and "max_memory_mb" in r.json()["error"]["message"]
        b = t.create(resources={"memory_mb": 128})
        r = t.request("POST", "/v1/sandboxes", {"resources": {"memory_mb": 16}})
        assert r.status == 429 and r.error_code() == "quota_exceeded" and "max_sandboxes" in r.json()["error"]["message"]
        # Memory counts only while running: with a stopped, b2 fits; then a cannot start again.
        assert t.request("POST", f"/v1/sandboxes/{a}/stop").status == 200
        assert t.request("DELETE", f"/v1/sandboxes/{b}").status == 204
        b2 = t.create(resources={"memory_mb": 256})
        r = t.request("POST", f"/v1/sandboxes/{a}/start")
        assert r.status == 429 and r.error_code() == "quota_exceeded", r
        assert t.request("GET", f"/v1/sandboxes/{a}").json()["state"] == "stopped"
        c = admin.create(resources={"memory_mb": 1024})  # the admin has no quota
        assert admin.request("DELETE", f"/v1/sandboxes/{c}").status == 204
        assert t.request("DELETE", f"/v1/sandboxes/{b2}").status == 204
        assert t.request("POST", f"/v1/sandboxes/{a}/start").status == 200
    finally:
        t.request("DELETE", f"/v1/sandboxes/{a}")
    for body in ({"quotas": {"max_sandboxes": -1}}, {"quotas": "x"}, {"name": 5}):
        r = admin.request("POST", "/v1/keys", body)
        assert r.status == 400 and r.error_code() == "invalid_argument", (body, r)
