#!/usr/bin/python3
"""Service-URL proxy benchmark: throughput through sbxd into a sandbox (no network but loopback) and the
latency sbxd adds per request, against the same server run directly on the host's loopback.

Usage: bench/proxy.py [--gib N] [--requests N]   (as root; SBX_BUILD_DIR as for the tests)

Prints: download and upload GiB/s over one connection (direct vs proxied), and per-request round-trip
medians/p99 for keep-alive requests (host-header form, one connection spliced for its life) and for
one-request-per-connection (path form: sbxd answers Connection: close, so each request pays a TCP
connect and a shim connect op)."""
import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
from sbxtest import Daemon, free_port, wait_for  # noqa: E402

DOMAIN = "bench.test"


class Conn:
    def __init__(self, port, host_header, extra=""):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.host, self.extra, self.buf = host_header, extra, b""
        self.big = bytearray(4 << 20)

    def head(self):
        while b"\r\n\r\n" not in self.buf:
            b = self.s.recv(65536)
            if not b:
                raise ConnectionError("closed")
            self.buf += b
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        n = 0
        for h in head.split(b"\r\n")[1:]:
            k, _, v = h.partition(b":")
            if k.strip().lower() == b"content-length":
                n = int(v)
        return head, n

    def request(self, target, method="GET", body_len=0):
        req = f"{method} {target} HTTP/1.1\r\nHost: {self.host}\r\n{self.extra}"
        if method == "POST":
            req += f"Content-Length: {body_len}\r\n"
        self.s.sendall((req + "\r\n").encode())
        if body_len:
            mv = memoryview(self.big)
            left = body_len
            while left:
                k = min(left, len(mv))
                self.s.sendall(mv[:k])
                left -= k
        head, n = self.head()
        take = min(n, len(self.buf))
        self.buf = self.buf[take:]
        left = n - take
        mv = memoryview(self.big)
        while left:
            got = self.s.recv_into(mv, min(left, len(mv)))
            if not got:
                raise ConnectionError("closed mid-body")
            left -= got
        return head

    def close(self):
        self.s.close()


def throughput(port, host, extra, nbytes):
    c = Conn(port, host, extra)
    c.request("/ping")
    t0 = time.perf_counter()
    c.request(f"/bytes?n={nbytes}")
    down = nbytes / (time.perf_counter() - t0) / (1 << 30)
    t0 = time.perf_counter()
    c.request("/sink", "POST", nbytes)
    up = nbytes / (time.perf_counter() - t0) / (1 << 30)
    c.close()
    return down, up


def latency_keepalive(port, host, extra, n):
    c = Conn(port, host, extra)
    for _ in range(200):
        c.request("/ping")
    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        c.request("/ping")
        out.append((time.perf_counter_ns() - t0) / 1000)
    c.close()
    return out


def latency_per_connection(port, host, path, extra, n):
    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        c = Conn(port, host, extra)
        c.request(path)
        c.close()
        out.append((time.perf_counter_ns() - t0) / 1000)
    return out


def stats(xs):
    xs = sorted(xs)
    return statistics.median(xs), xs[int(len(xs) * 0.99) - 1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=float, default=4)
    ap.add_argument("--requests", type=int, default=5000)
    a = ap.parse_args()
    nbytes = int(a.gib * (1 << 30))
    server_src = open(os.path.join(HERE, "proxy_server.py"), "rb").read()

    direct_port = free_port()
    direct = subprocess.Popen([sys.executable, os.path.join(HERE, "proxy_server.py"), str(direct_port)])
    try:
        with Daemon(extra_args=["--service-domain", DOMAIN]) as d:
            sid = d.create()
            r = d.request("PUT", f"/v1/sandboxes/{sid}/files?path=/root/s.py", body=server_src)
            assert r.status == 200, r
            r = d.request("POST", f"/v1/sandboxes/{sid}/commands", {"command": "exec python3 /root/s.py 9000"})
            assert r.status == 201, r
            wait_for(lambda: any(p["port"] == 9000 for p in
                                 d.request("GET", f"/v1/sandboxes/{sid}/ports").json()["ports"]), timeout=20)
            u = d.request("POST", f"/v1/sandboxes/{sid}/ports/9000/url", {}).json()
            tok = f"X-Sbx-Service-Token: {u['token']}\r\n"
            host = urllib.parse.urlsplit(u["url"]).netloc
            prefix = urllib.parse.urlsplit(u["path_url"]).path
            wait_for(lambda: socket.create_connection(("127.0.0.1", direct_port)).close() or True)

            print(f"# proxy benchmark: {a.gib:g} GiB per transfer, {a.requests} requests per latency run")
            dd, du = throughput(direct_port, "x", "", nbytes)
            pd, pu = throughput(d.port, host, tok, nbytes)
            print(f"throughput download  direct {dd:6.2f} GiB/s   proxied {pd:6.2f} GiB/s")
            print(f"throughput upload    direct {du:6.2f} GiB/s   proxied {pu:6.2f} GiB/s")

            ld = stats(latency_keepalive(direct_port, "x", "", a.requests))
            lp = stats(latency_keepalive(d.port, host, tok, a.requests))
            print(f"keep-alive request   direct {ld[0]:7.1f} us (p99 {ld[1]:7.1f})   proxied {lp[0]:7.1f} us "
                  f"(p99 {lp[1]:7.1f})   added {lp[0] - ld[0]:6.1f} us")
            n = max(200, a.requests // 5)
            cd = stats(latency_per_connection(direct_port, "x", "/ping", "", n))
            cp = stats(latency_per_connection(d.port, "x", prefix + "ping", tok, n))
            print(f"new connection each  direct {cd[0]:7.1f} us (p99 {cd[1]:7.1f})   proxied {cp[0]:7.1f} us "
                  f"(p99 {cp[1]:7.1f})   added {cp[0] - cd[0]:6.1f} us  (path form)")
            # The same through `sbx tunnel` (WebSocket + yamux, one stream per connection).
            from sbxtest import BIN
            t = subprocess.Popen([os.path.join(BIN, "sbx"), "tunnel", sid, "9000", "0"], stdout=subprocess.PIPE,
                                 text=True, env=dict(os.environ, SBX_URL=d.url))
            try:
                tport = int(t.stdout.readline().strip().rsplit(":", 1)[1])
                td, tu = throughput(tport, "x", "", nbytes)
                print(f"tunnel (sbx tunnel)  download {td:6.2f} GiB/s   upload {tu:6.2f} GiB/s")
                lt = stats(latency_keepalive(tport, "x", "", a.requests))
                print(f"tunnel keep-alive    {lt[0]:7.1f} us (p99 {lt[1]:7.1f})   added {lt[0] - ld[0]:6.1f} us")
            finally:
                t.terminate()
                t.wait()
            d.request("DELETE", f"/v1/sandboxes/{sid}")
    finally:
        direct.kill()
        direct.wait()


if __name__ == "__main__":
    main()
