"""Captured snapshots belong to the tenant that captured them: another tenant can neither see, use,
capture from, nor delete them (the same 404 as for a name that does not exist); the admin sees them all.
A tenant cannot capture another tenant's sandbox, pull from a registry, nor delete the admin's (global)
snapshots."""
import pytest

from sbxtest import Daemon, wait_for

ADMIN = "admin-secret-for-snapshot-owner-tests"


class As:
    def __init__(self, d, key):
        self.d, self.key = d, key

    def request(self, method, path, body=None):
        return self.d.request(method, path, body, headers={"Authorization": f"Bearer {self.key}"}, auth=False)


@pytest.fixture(scope="module")
def env():
    with Daemon(api_key=ADMIN, extra_args=["--warm", "0"]) as d:
        admin = As(d, ADMIN)
        keys = {}
        for name in ("alice", "bob"):
            r = admin.request("POST", "/v1/keys", {"name": name})
            assert r.status == 201, r
            keys[name] = As(d, r.json()["key"])
        yield d, admin, keys


def ready(who, name):
    def done():
        j = who.request("GET", f"/v1/snapshots/{name}").json()
        return j if j["status"] != "building" else None
    return wait_for(done, timeout=60, what=f"capture {name}")


def test_captured_snapshot_is_private(env):
    d, admin, keys = env
    alice, bob = keys["alice"], keys["bob"]
    r = alice.request("POST", "/v1/sandboxes", {})
    assert r.status == 201
    a_sid = r.json()["id"]
    r = alice.request("POST", f"/v1/sandboxes/{a_sid}/commands",
                      {"command": ["sh", "-c", "echo alice-secret > /root/s"], "wait": True})
    assert r.json()["exit_code"] == 0
    # Bob cannot capture Alice's sandbox: it does not exist for him.
    r = bob.request("POST", f"/v1/sandboxes/{a_sid}/capture", {"name": "bob-steal"})
    assert r.status == 404 and r.json()["error"]["code"] == "not_found", r
    r = alice.request("POST", f"/v1/sandboxes/{a_sid}/capture", {"name": "alice-snap"})
    assert r.status == 202, r
    sn = ready(alice, "alice-snap")
    assert sn["status"] == "ready" and sn["owner"]

    # Bob: not listed, not found by name or id, not usable, not deletable.
    names = [s["name"] for s in bob.request("GET", "/v1/snapshots").json()["snapshots"]]
    assert "alice-snap" not in names and "host" in names
    for ref in ("alice-snap", sn["id"]):
        r = bob.request("GET", f"/v1/snapshots/{ref}")
        assert r.status == 404, r
        r = bob.request("POST", "/v1/sandboxes", {"snapshot": ref})
        assert r.status == 404 and r.json()["error"]["code"] == "not_found", r
        r = bob.request("DELETE", f"/v1/snapshots/{ref}")
        assert r.status == 404, r
    # Alice and the admin see and use it.
    assert "alice-snap" in [s["name"] for s in alice.request("GET", "/v1/snapshots").json()["snapshots"]]
    assert "alice-snap" in [s["name"] for s in admin.request("GET", "/v1/snapshots").json()["snapshots"]]
    r = alice.request("POST", "/v1/sandboxes", {"snapshot": "alice-snap"})
    assert r.status == 201, r
    a2 = r.json()["id"]
    r = alice.request("POST", f"/v1/sandboxes/{a2}/commands", {"command": ["cat", "/root/s"], "wait": True})
    assert r.json()["stdout"] == "alice-secret\n"
    # Tenants may not pull, nor delete a global snapshot; the admin's captures are global.
    r = bob.request("POST", "/v1/snapshots", {"name": "p", "image": "127.0.0.1:1/x:y", "insecure": True})
    assert r.status == 403, r
    r = admin.request("POST", "/v1/sandboxes", {})
    admin_sid = r.json()["id"]
    r = admin.request("POST", f"/v1/sandboxes/{admin_sid}/capture", {"name": "global-snap"})
    assert r.status == 202, r
    g = ready(admin, "global-snap")
    assert g["owner"] is None
    assert bob.request("GET", "/v1/snapshots/global-snap").status == 200
    r = bob.request("DELETE", "/v1/snapshots/global-snap")
    assert r.status == 403 and r.json()["error"]["code"] == "permission_denied", r
    # Alice deletes her own once no sandbox uses it.
    for sid in (a_sid, a2):
        assert alice.request("DELETE", f"/v1/sandboxes/{sid}").status == 204
    assert alice.request("DELETE", "/v1/snapshots/alice-snap").status == 204
    assert admin.request("DELETE", f"/v1/sandboxes/{admin_sid}").status == 204
    assert admin.request("DELETE", "/v1/snapshots/global-snap").status == 204
