"""GET /v1/sandboxes?state=...&metadata.KEY=VALUE filters."""


def ids(daemon, query):
    r = daemon.request("GET", f"/v1/sandboxes?{query}")
    assert r.status == 200, r
    return {s["id"] for s in r.json()["sandboxes"]}


def test_state_and_metadata_filters(daemon):
    a = daemon.create(metadata={"owner": "alice", "team": "x"})
    b = daemon.create(metadata={"owner": "bob", "team": "x"})
    c = daemon.create(metadata={"owner": "alice y", "team": "z"})
    try:
        assert ids(daemon, "metadata.owner=alice") == {a}
        assert ids(daemon, "metadata.owner=alice+y") == {c}  # '+' is a space, like %20
        assert ids(daemon, "metadata.owner=alice%20y") == {c}
        assert ids(daemon, "metadata.team=x") == {a, b}
        assert ids(daemon, "metadata.team=x&metadata.owner=bob") == {b}
        assert ids(daemon, "metadata.nope=x") == set()
        assert {a, b, c} <= ids(daemon, "")
        assert daemon.request("POST", f"/v1/sandboxes/{b}/pause").status == 200
        assert ids(daemon, "state=paused") == {b}
        assert ids(daemon, "state=paused&metadata.team=z") == set()
        assert {a, c} <= ids(daemon, "state=running")
        r = daemon.request("GET", "/v1/sandboxes?state=sleeping")
        assert r.status == 400 and r.error_code() == "invalid_argument", r
        r = daemon.request("GET", "/v1/sandboxes?metadata.owner=%ZZ")
        assert r.status == 400 and r.error_code() == "invalid_argument", r
    finally:
        for s in (a, b, c):
            daemon.delete(s)
