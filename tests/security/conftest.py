"""Fixtures for the security tests: every test tries to break one isolation claim (docs/security.md)."""
import os
import uuid

import pytest

from sbxtest import BIN


@pytest.fixture
def new_sandbox(daemon):
    """Factory: new_sandbox(**create_fields) -> id. Every sandbox it made is deleted after the test."""
    made = []

    def make(**kw):
        sid = daemon.create(**kw)
        made.append(sid)
        return sid

    yield make
    for sid in made:
        daemon.request("DELETE", f"/v1/sandboxes/{sid}")


@pytest.fixture
def th(daemon, helper_in):
    """th(sid, *args, timeout=60, **command_fields) runs sbx-testhelper inside the sandbox (uploading it
    on first use) and returns the command object (stdout/stderr decoded)."""
    if not os.path.exists(os.path.join(BIN, "sbx-testhelper")):
        pytest.fail(f"{BIN}/sbx-testhelper is not built")
    uploaded = {}

    def run(sid, *args, timeout=60, **kw):
        if sid not in uploaded:
            uploaded[sid] = helper_in(sid)
        argv = [uploaded[sid]] + [str(a) for a in args]
        r = daemon.request("POST", f"/v1/sandboxes/{sid}/commands",
                           dict(kw, command=argv, wait=True, timeout=timeout), timeout=timeout + 30)
        assert r.status == 200, r
        return r.json()

    def path(sid):
        if sid not in uploaded:
            uploaded[sid] = helper_in(sid)
        return uploaded[sid]

    run.path = path
    return run


@pytest.fixture
def token():
    """A unique marker for names and file contents."""
    return "sbxsec" + uuid.uuid4().hex[:12]


@pytest.fixture
def host_markers(token):
    """Marker files in host directories a sandbox must never see: {path: content}. Removed afterwards."""
    made = {}
    for d in ("/tmp", "/var/tmp", "/root", "/home", "/"):
        if not os.path.isdir(d):
            continue
        p = os.path.join(d, f"{token}-host-marker")
        content = f"HOST-SECRET-{token}-{d}\n"
        with open(p, "w") as f:
            f.write(content)
        os.chmod(p, 0o644)
        made[p] = content
    yield made
    for p in made:
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass
