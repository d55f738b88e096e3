import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sbxtest import Daemon  # noqa: E402


def pytest_configure(config):
    if os.geteuid() != 0:
        pytest.exit("sbx's end-to-end tests need root (namespaces, cgroups, mounts)", returncode=1)


@pytest.fixture(scope="module")
def daemon():
    with Daemon() as d:
        yield d
        # A clean exit: under ASan this is also where LeakSanitizer reports (exit status 1).
        assert d.stop() == 0, f"sbxd did not exit cleanly: {d.read_log()}"


@pytest.fixture
def sandbox(daemon):
    sid = daemon.create()
    yield sid
    daemon.request("DELETE", f"/v1/sandboxes/{sid}")


@pytest.fixture
def helper_in(daemon):
    """Copies the static test helper into a sandbox and returns its path there."""
    from sbxtest import BIN

    def put(sid):
        with open(os.path.join(BIN, "sbx-testhelper"), "rb") as f:
            data = f.read()
        r = daemon.request("PUT", f"/v1/sandboxes/{sid}/files?path=/root/.sbx-th&mode=0755", body=data)
        assert r.status == 200, r
        return "/root/.sbx-th"

    return put
