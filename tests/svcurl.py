"""Helpers for the service-URL tests (tests/e2e/test_service_urls.py, tests/security/test_service_url_tokens.py):
run tests/helpers/service_app.py inside a sandbox, mint URLs, and talk HTTP through sbxd's proxy."""
import http.client
import json
import os
import socket
import urllib.parse

from sbxtest import SOURCE_DIR, wait_for

APP = os.path.join(SOURCE_DIR, "tests", "helpers", "service_app.py")
HEADER = "X-Sbx-Service-Token"


def start_app(daemon, sid, port, host="127.0.0.1"):
    """Starts the test app on host:port inside sid and waits until the ports listing shows it."""
    with open(APP, "rb") as f:
        r = daemon.request("PUT", f"/v1/sandboxes/{sid}/files?path=/root/service_app.py", body=f.read())
    assert r.status == 200, r
    r = daemon.request("POST", f"/v1/sandboxes/{sid}/commands",
                       {"command": f"exec python3 /root/service_app.py {port} {host}"})
    assert r.status == 201, r
    wait_for(lambda: port in {p["port"] for p in ports(daemon, sid)}, timeout=20, what=f"port {port} to listen")
    return r.json()["id"]


def ports(daemon, sid):
    r = daemon.request("GET", f"/v1/sandboxes/{sid}/ports")
    assert r.status == 200, r
    return r.json()["ports"]


def mint(daemon, sid, port, **body):
    r = daemon.request("POST", f"/v1/sandboxes/{sid}/ports/{port}/url", body)
    assert r.status == 200, r
    return r.json()


def path_of(url):
    """The path of a minted URL ("/s/ID/PORT/")."""
    return urllib.parse.urlsplit(url).path


def get(daemon, path, headers=None, method="GET", body=None, timeout=60):
    """One request on a fresh connection to sbxd: (status, headers dict lower-cased, body bytes)."""
    c = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def app_log(daemon, sid, port):
    """The request lines the app inside has seen (its log file, read through the files API)."""
    r = daemon.request("GET", f"/v1/sandboxes/{sid}/files?path=/tmp/svc-{port}.log")
    if r.status == 404:
        return []
    assert r.status == 200, r
    return [json.loads(line) for line in r.body.decode().splitlines() if line]


def raw(daemon, data, timeout=30):
    """Sends raw bytes to sbxd and reads until it closes."""
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while True:
            b = s.recv(65536)
            if not b:
                return out
            out += b
