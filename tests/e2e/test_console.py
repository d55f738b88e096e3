"""The web console's static files at /console/ (src/api/console.c): content types, caching headers, index.html
for /console/, no way out of the console directory, a clear 404 when the console is not built; and the
WebSocket subprotocol that carries a browser's API key (browsers cannot set headers on a WebSocket)."""
import base64
import os
import shutil
import socket
import tempfile

import pytest

from sbxtest import Daemon

KEY = "console-test-admin-key"


@pytest.fixture(scope="module")
def console_dir():
    d = tempfile.mkdtemp(prefix="sbx-console-")
    os.makedirs(os.path.join(d, "assets"))
    files = {
        "index.html": b"<!doctype html><title>sbx</title>",
        "assets/app-1234.js": b"console.log(1)",
        "assets/app-1234.css": b"body{}",
        "assets/logo.svg": b"<svg/>",
        "assets/blob.bin": b"\x00\x01",
        ".secret": b"hidden",
    }
    for name, data in files.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
    os.symlink("/etc/passwd", os.path.join(d, "assets", "passwd"))
    os.symlink("app-1234.js", os.path.join(d, "assets", "inside.js"))
    os.mkdir(os.path.join(d, "sub"))
    yield d
    shutil.rmtree(d)


@pytest.fixture(scope="module")
def cdaemon(console_dir):
    with Daemon(api_key=KEY, extra_args=["--console-dir", console_dir]) as d:
        yield d
        assert d.stop() == 0, d.read_log()


def raw_get(daemon, target, method="GET", headers=""):
    """Sends the request target exactly as given (no client-side normalisation of `..`)."""
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as s:
        s.sendall(f"{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    hdrs = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), hdrs, body


def test_index_and_content_types(cdaemon):
    r = cdaemon.request("GET", "/console/", auth=False)  # public: no key needed
    assert r.status == 200, r
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.body == b"<!doctype html><title>sbx</title>"
    assert r.headers["cache-control"] == "no-cache"
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert cdaemon.request("GET", "/console/index.html", auth=False).body == r.body
    for path, ctype in [("assets/app-1234.js", "text/javascript; charset=utf-8"),
                        ("assets/app-1234.css", "text/css; charset=utf-8"),
                        ("assets/logo.svg", "image/svg+xml"),
                        ("assets/blob.bin", "application/octet-stream"),
                        ("assets/inside.js", "text/javascript; charset=utf-8")]:  # a symlink inside is fine
        r = cdaemon.request("GET", "/console/" + path, auth=False)
        assert r.status == 200, (path, r)
        assert r.headers["content-type"] == ctype, path
        assert r.headers["cache-control"] == "public, max-age=31536000, immutable", path
        assert "content-security-policy" not in r.headers


def test_redirect_head_etag_and_methods(cdaemon):
    r = cdaemon.request("GET", "/console", auth=False)
    assert r.status == 301 and r.headers["location"] == "/console/"
    status, hdrs, body = raw_get(cdaemon, "/console/assets/app-1234.js", method="HEAD")
    assert status == 200 and hdrs["content-length"] == "14" and body == b""
    etag = hdrs["etag"]
    r = cdaemon.request("GET", "/console/assets/app-1234.js", headers={"If-None-Match": etag}, auth=False)
    assert r.status == 304 and r.body == b""
    r = cdaemon.request("POST", "/console/index.html", body=b"x", auth=False)
    assert r.status == 405 and r.error_code() == "method_not_allowed"


@pytest.mark.parametrize("target", [
    "/console/../../../../etc/passwd",
    "/console/%2e%2e/%2e%2e/etc/passwd",
    "/console/assets/../../../etc/passwd",
    "/console//etc/passwd",
    "/console/.secret",
    "/console/assets/%2e%2e%2f%2e%2e%2fetc/passwd",
    "/console/assets/..%5c..%5cetc%5cpasswd",
])
def test_traversal_refused(cdaemon, target):
    status, hdrs, body = raw_get(cdaemon, target)
    assert status == 400, (target, status, body)
    assert b'"invalid_argument"' in body and b"root:" not in body


def test_symlink_out_and_missing_are_404(cdaemon):
    for target in ["/console/assets/passwd", "/console/nope.js", "/console/sub", "/console/sub/"]:
        status, _, body = raw_get(cdaemon, target)
        assert status in (400, 404), (target, status)
        assert b"root:" not in body
    r = cdaemon.request("GET", "/console/assets/passwd", auth=False)
    assert r.status == 404 and r.error_code() == "not_found"


def test_the_api_still_needs_a_key(cdaemon):
    assert cdaemon.request("GET", "/v1/sandboxes", auth=False).status == 401
    assert cdaemon.request("GET", "/v1/sandboxes").status == 200


def test_not_built_is_a_clear_404():
    empty = tempfile.mkdtemp(prefix="sbx-console-empty-")
    try:
        with Daemon(extra_args=["--console-dir", os.path.join(empty, "missing")]) as d:
            for path in ["/console/", "/console/index.html", "/console/assets/x.js"]:
                r = d.request("GET", path)
                assert r.status == 404, r
                assert r.headers["content-type"] == "application/json"
                assert r.error_code() == "not_found"
                assert "console is not built" in r.json()["error"]["message"]
            assert d.request("GET", "/healthz").status == 200  # sbxd runs fine without it
            assert d.stop() == 0, d.read_log()
    finally:
        shutil.rmtree(empty)


def ws_handshake(daemon, path, protocol):
    key = base64.b64encode(os.urandom(16)).decode()
    proto = f"Sec-WebSocket-Protocol: {protocol}\r\n" if protocol is not None else ""
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as s:
        s.sendall((f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{proto}\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    head = data.partition(b"\r\n\r\n")[0].decode()
    lines = head.split("\r\n")
    hdrs = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), hdrs


def b64url(s):
    return base64.urlsafe_b64encode(s.encode()).decode().rstrip("=")


def test_websocket_key_in_subprotocol(cdaemon):
    sid = cdaemon.create()
    try:
        cid = cdaemon.run(sid, "echo hi")["id"]
        path = f"/v1/sandboxes/{sid}/commands/{cid}/stream"
        status, hdrs = ws_handshake(cdaemon, path, f"sbx, sbx.key.{b64url(KEY)}")
        assert status == 101
        assert hdrs["sec-websocket-protocol"] == "sbx"
        # A wrong key, a key without the "sbx" protocol, garbage and no protocol at all: 401.
        for proto in [f"sbx, sbx.key.{b64url('wrong')}", f"sbx.key.{b64url(KEY)}", "sbx, sbx.key.!!!", "sbx", None]:
            status, _ = ws_handshake(cdaemon, path, proto)
            assert status == 401, proto
        # A tenant's key works the same way, and sees only its own sandboxes.
        r = cdaemon.request("POST", "/v1/keys", {"name": "console"})
        assert r.status == 201, r
        tenant = r.json()["key"]
        status, _ = ws_handshake(cdaemon, path, f"sbx, sbx.key.{b64url(tenant)}")
        assert status == 404
        # Plain HTTP requests are not authenticated by the header.
        r = cdaemon.request("GET", "/v1/sandboxes", auth=False,
                            headers={"Sec-WebSocket-Protocol": f"sbx, sbx.key.{b64url(KEY)}"})
        assert r.status == 401
    finally:
        cdaemon.delete(sid)
