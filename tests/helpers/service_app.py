"""A small HTTP/1.1 + WebSocket server that the service-URL tests run inside a sandbox (standard library
only). Usage: python3 service_app.py PORT [HOST]. Every request it receives is appended as one JSON line
to /tmp/svc-PORT.log (request line and headers), so tests can prove what reached it and what did not.

GET  /big?n=N      N bytes (chunked), block i = sha256(str(i)) * 2048, streamed
GET  /sse?n=N      N server-sent events, 50 ms apart
GET  /headers      the request line and headers as JSON
GET  /ws           WebSocket echo (text and binary; answers close)
POST|PUT /upload   reads the body (Content-Length or chunked) and answers {"len": N, "sha256": hex}
anything else      200 "ok <path>"
"""
import base64
import hashlib
import http.server
import json
import socket
import socketserver
import struct
import sys
import time
import urllib.parse

PORT = int(sys.argv[1])
HOST = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1"
LOG = f"/tmp/svc-{PORT}.log"


def block(i):
    return hashlib.sha256(str(i).encode()).digest() * 2048


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def record(self):
        with open(LOG, "a") as f:
            f.write(json.dumps({"line": self.requestline, "headers": dict(self.headers.items())}) + "\n")

    def send_chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def do_GET(self):
        self.record()
        u = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(u.query))
        if u.path == "/big":
            n = int(q.get("n", "0"))
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            i = sent = 0
            while sent < n:
                b = block(i)[: n - sent]
                self.send_chunk(b)
                sent += len(b)
                i += 1
            self.wfile.write(b"0\r\n\r\n")
        elif u.path == "/sse":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(int(q.get("n", "5"))):
                self.send_chunk(f"event: tick\ndata: {i}\n\n".encode())
                self.wfile.flush()
                time.sleep(0.05)
            self.wfile.write(b"0\r\n\r\n")
        elif u.path == "/headers":
            body = json.dumps({"line": self.requestline, "headers": dict(self.headers.items())}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif u.path == "/ws":
            self.websocket()
        else:
            body = f"ok {self.path}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def do_POST(self):
        self.record()
        h = hashlib.sha256()
        total = 0
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                left = size
                while left:
                    b = self.rfile.read(min(left, 1 << 16))
                    h.update(b)
                    left -= len(b)
                    total += len(b)
                self.rfile.readline()
        else:
            left = int(self.headers.get("Content-Length", "0"))
            while left:
                b = self.rfile.read(min(left, 1 << 16))
                if not b:
                    break
                h.update(b)
                left -= len(b)
                total += len(b)
        body = json.dumps({"len": total, "sha256": h.hexdigest()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_PUT = do_POST

    def websocket(self):
        key = self.headers["Sec-WebSocket-Key"]
        acc = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", acc.decode())
        self.end_headers()
        self.wfile.flush()
        r = self.rfile
        while True:
            hdr = r.read(2)
            if len(hdr) < 2:
                return
            op, n = hdr[0] & 0x0F, hdr[1] & 0x7F
            if n == 126:
                n = struct.unpack(">H", r.read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", r.read(8))[0]
            mask = r.read(4) if hdr[1] & 0x80 else b"\0\0\0\0"
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(r.read(n)))
            if n < 126:
                out = bytes([0x80 | op, n])
            elif n < 65536:
                out = bytes([0x80 | op, 126]) + struct.pack(">H", n)
            else:
                out = bytes([0x80 | op, 127]) + struct.pack(">Q", n)
            self.wfile.write(out + data)
            self.wfile.flush()
            if op == 8:
                self.close_connection = True
                return


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    address_family = socket.AF_INET6 if ":" in HOST else socket.AF_INET


Server((HOST, PORT), Handler).serve_forever()
