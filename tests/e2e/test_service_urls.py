"""Service URLs: sbxd proxies HTTP/1.1 (chunked and streamed bodies both ways, SSE) and WebSocket to a
port inside a sandbox that has no network but loopback, authorized by a signed token (docs/api.md
"Service URLs"). The server inside is tests/helpers/service_app.py."""
import hashlib
import http.client
import json
import os
import subprocess
import time
import types
import urllib.parse

import pytest

from sbxtest import BIN, Daemon, WebSocket, wait_for
from svcurl import HEADER, app_log, get, mint, path_of, ports, start_app

DOMAIN = "sbx.test"
PORT = 8000


@pytest.fixture(scope="module")
def daemon():
    with Daemon(extra_args=["--service-domain", DOMAIN]) as d:
        yield d
        assert d.stop() == 0, f"sbxd did not exit cleanly: {d.read_log()}"


@pytest.fixture(scope="module")
def app(daemon):
    """One sandbox running the test app on PORT, and a URL for it: (sid, url dict, path prefix)."""
    sid = daemon.create()
    start_app(daemon, sid, PORT)
    u = mint(daemon, sid, PORT)
    yield sid, u, path_of(u["path_url"])
    daemon.request("DELETE", f"/v1/sandboxes/{sid}")


def tok(u):
    return {HEADER: u["token"]}


def big_block(i):
    return hashlib.sha256(str(i).encode()).digest() * 2048


def test_mint_answer_shape(daemon, app):
    sid, u, prefix = app
    assert prefix == f"/s/{sid}/{PORT}/"
    assert u["path_url"] == f"http://127.0.0.1:{daemon.port}/s/{sid}/{PORT}/"
    assert u["url"] == f"http://{PORT}-{sid}.{DOMAIN}:{daemon.port}/", "host form when a domain is set"
    assert u["expires_at"].endswith("Z") and u["token"].count(".") == 1
    expiry = int(u["token"].split(".")[0])
    assert 3590 < expiry - time.time() <= 3600, "default lifetime is one hour"


def test_ports_listing_shows_the_port(daemon, app):
    sid, _, _ = app
    assert {"port": PORT, "address": "127.0.0.1"} in ports(daemon, sid)


def test_get_with_header_token(daemon, app):
    sid, u, prefix = app
    status, h, body = get(daemon, prefix + "hello?x=1", tok(u))
    assert status == 200 and body == b"ok /hello?x=1", (status, body)
    assert h.get("connection") == "close", "the path form ends each connection after one response"


def test_root_without_trailing_slash(daemon, app):
    sid, u, prefix = app
    status, _, body = get(daemon, prefix.rstrip("/") + "?y=2", tok(u))
    assert status == 200 and body == b"ok /?y=2", body


def test_the_service_sees_a_rewritten_request_without_the_token(daemon, app):
    sid, u, prefix = app
    status, _, body = get(daemon, prefix + "headers", dict(tok(u), Cookie="a=1; sbx_service_token=zzz; b=2"))
    assert status == 200, body
    seen = json.loads(body)
    assert seen["line"] == "GET /headers HTTP/1.1"
    names = {k.lower(): v for k, v in seen["headers"].items()}
    assert HEADER.lower() not in names
    assert names["cookie"] == "a=1; b=2", "sbxd's cookie is not passed on, the others are"
    assert names["x-forwarded-prefix"] == prefix.rstrip("/")
    assert names["x-forwarded-for"] == "127.0.0.1"


def test_query_token_becomes_a_cookie_and_is_stripped(daemon, app):
    sid, u, prefix = app
    status, h, _ = get(daemon, f"{prefix}page?a=1&sbx_token={u['token']}&b=2")
    assert status == 302
    assert h["location"] == f"{prefix}page?a=1&b=2"
    cookie = h["set-cookie"]
    assert cookie.startswith(f"sbx_service_token={u['token']};")
    for attr in ("HttpOnly", "SameSite=Lax", f"Path=/s/{sid}/{PORT};", "Max-Age="):
        assert attr in cookie, cookie
    status, _, body = get(daemon, h["location"], {"Cookie": cookie.split(";")[0]})
    assert status == 200 and body == b"ok /page?a=1&b=2", body
    assert not any("sbx_token" in r["line"] for r in app_log(daemon, sid, PORT)), "the token never reaches it"


def test_large_chunked_upload(daemon, app):
    sid, u, prefix = app
    h, n = hashlib.sha256(), 0

    def body():
        nonlocal n
        for i in range(256):  # 64 MiB in 256 KiB chunks
            b = os.urandom(1 << 18)
            h.update(b)
            n += len(b)
            yield b

    c = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=120)
    c.request("POST", prefix + "upload", body=body(), headers=tok(u), encode_chunked=True)
    r = c.getresponse()
    got = json.loads(r.read())
    c.close()
    assert r.status == 200 and got == {"len": n, "sha256": h.hexdigest()}, got


def test_large_streamed_download(daemon, app):
    sid, u, prefix = app
    size = 256 << 20
    c = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=120)
    c.request("GET", f"{prefix}big?n={size}", headers=tok(u))
    r = c.getresponse()
    assert r.status == 200 and r.getheader("Transfer-Encoding") == "chunked"
    got, n = hashlib.sha256(), 0
    while True:
        b = r.read(1 << 20)
        if not b:
            break
        got.update(b)
        n += len(b)
    c.close()
    want, i, left = hashlib.sha256(), 0, size
    while left:
        b = big_block(i)[:left]
        want.update(b)
        left -= len(b)
        i += 1
    assert n == size and got.hexdigest() == want.hexdigest()


def test_sse_streams_through(daemon, app):
    sid, u, prefix = app
    c = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=30)
    c.request("GET", prefix + "sse?n=5", headers=dict(tok(u), Accept="text/event-stream"))
    r = c.getresponse()
    assert r.status == 200 and r.getheader("Content-Type") == "text/event-stream"
    t0 = time.monotonic()
    first = r.readline()
    t_first = time.monotonic() - t0
    rest = r.read()
    total = time.monotonic() - t0
    c.close()
    text = (first + rest).decode()
    assert [line for line in text.splitlines() if line.startswith("data:")] == [f"data: {i}" for i in range(5)]
    assert t_first < total - 0.1, "events arrive as they are sent, not all at the end"


def test_websocket_echo(daemon, app):
    sid, u, prefix = app
    ws = WebSocket(types.SimpleNamespace(port=daemon.port, headers=lambda: tok(u)), prefix + "ws")
    try:
        ws.send("hello through the proxy")
        assert ws.recv() == (1, b"hello through the proxy")
        blob = os.urandom(200000)
        ws.send(blob, opcode=2)
        assert ws.recv() == (2, blob)
        ws.send(b"\x03\xe8", opcode=8)
        assert ws.recv() == (8, b"\x03\xe8"), "the close handshake passes through"
    finally:
        ws.sock.close()


def test_websocket_needs_the_token(daemon, app):
    sid, u, prefix = app
    with pytest.raises(ConnectionError, match="401"):
        WebSocket(types.SimpleNamespace(port=daemon.port, headers=lambda: {}), prefix + "ws")


def test_keep_alive_client_works_across_requests(daemon, app):
    sid, u, prefix = app
    c = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=30)
    for i in range(3):  # http.client reconnects after each Connection: close
        c.request("GET", f"{prefix}n{i}", headers=tok(u))
        r = c.getresponse()
        assert r.status == 200 and r.read() == f"ok /n{i}".encode()
    c.close()


def test_host_header_form_keeps_the_connection_alive(daemon, app):
    sid, u, _ = app
    host = urllib.parse.urlsplit(u["url"]).netloc
    c = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=30)
    socks = set()
    for i in range(3):
        c.request("GET", f"/k{i}", headers=dict(tok(u), Host=host.upper()))
        r = c.getresponse()
        assert r.status == 200 and r.read() == f"ok /k{i}".encode()
        socks.add(id(c.sock))
    c.close()
    assert len(socks) == 1, "one connection served every request"
    status, _, body = get(daemon, "/k", {"Host": host})
    assert status == 401, body
    status, _, body = get(daemon, "/v1/sandboxes", {"Host": f"{PORT}-{sid}.other.test"})
    assert status == 200, "other hosts are the API"


def test_ipv6_only_service(daemon, app):
    sid, _, _ = app
    start_app(daemon, sid, 8006, host="::1")
    assert {"port": 8006, "address": "::1"} in ports(daemon, sid)
    u = mint(daemon, sid, 8006)
    status, _, body = get(daemon, path_of(u["path_url"]) + "six", tok(u))
    assert status == 200 and body == b"ok /six", body


def test_closed_port_is_502(daemon, app):
    sid, _, _ = app
    u = mint(daemon, sid, 8999)
    status, h, body = get(daemon, path_of(u["path_url"]), tok(u))
    assert status == 502 and h["content-type"] == "application/json"
    assert json.loads(body)["error"]["code"] == "port_closed"


def test_bad_mint_requests(daemon, app):
    sid, _, _ = app
    for port in ("0", "65536", "80x", "-1"):
        r = daemon.request("POST", f"/v1/sandboxes/{sid}/ports/{port}/url", {})
        assert r.status == 400, (port, r)
    for ttl in (0, 7 * 24 * 3600 + 1, "1"):
        r = daemon.request("POST", f"/v1/sandboxes/{sid}/ports/80/url", {"expires_in_seconds": ttl})
        assert r.status == 400, (ttl, r)
    r = daemon.request("POST", "/v1/sandboxes/sbx_nope/ports/80/url", {})
    assert r.status == 404
    u = mint(daemon, sid, 80, expires_in_seconds=7 * 24 * 3600)
    assert int(u["token"].split(".")[0]) - time.time() > 7 * 24 * 3600 - 10


def test_proxied_requests_are_activity(daemon, app):
    sid, u, prefix = app
    before = daemon.request("GET", f"/v1/sandboxes/{sid}").json()["last_active_at"]
    time.sleep(0.01)
    assert get(daemon, prefix, tok(u))[0] == 200
    after = daemon.request("GET", f"/v1/sandboxes/{sid}").json()["last_active_at"]
    assert after > before


def test_paused_sandbox_is_resumed_and_stopped_one_is_409(daemon):
    sid = daemon.create()
    try:
        start_app(daemon, sid, 8001)
        u = mint(daemon, sid, 8001)
        prefix = path_of(u["path_url"])
        assert daemon.request("POST", f"/v1/sandboxes/{sid}/pause").status == 200
        status, _, body = get(daemon, prefix + "p", tok(u))
        assert status == 200 and body == b"ok /p", body
        assert daemon.request("GET", f"/v1/sandboxes/{sid}").json()["state"] == "running"
        assert daemon.request("POST", f"/v1/sandboxes/{sid}/stop").status == 200
        status, _, body = get(daemon, prefix + "p", tok(u))
        assert status == 409 and json.loads(body)["error"]["code"] == "not_running", body
        assert daemon.request("GET", f"/v1/sandboxes/{sid}/ports").status == 409
    finally:
        daemon.request("DELETE", f"/v1/sandboxes/{sid}")
    status, _, _ = get(daemon, prefix + "p", tok(u))
    assert status == 404, "a deleted sandbox's URL finds nothing"


def test_many_concurrent_connections(daemon, app):
    import concurrent.futures
    sid, u, prefix = app

    def one(i):
        return get(daemon, f"{prefix}c{i}", tok(u))[2]

    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        assert list(ex.map(one, range(64))) == [f"ok /c{i}".encode() for i in range(64)]


def test_cli_url(daemon, app):
    sid, _, _ = app
    sbx = os.path.join(BIN, "sbx")
    if not os.path.exists(sbx):
        pytest.skip("sbx CLI not built")
    out = subprocess.run([sbx, "url", sid, str(PORT)], capture_output=True, text=True, timeout=30,
                         env=dict(os.environ, SBX_URL=daemon.url))
    assert out.returncode == 0, out.stderr
    url = out.stdout.strip()
    assert url.startswith(f"http://{PORT}-{sid}.{DOMAIN}:{daemon.port}/?sbx_token="), url
    token = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["sbx_token"][0]
    status, h, _ = get(daemon, f"/?sbx_token={token}", {"Host": urllib.parse.urlsplit(url).netloc})
    assert status == 302 and "Path=/;" in h["set-cookie"]
