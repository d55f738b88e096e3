"""The service bench/proxy.py measures: a minimal keep-alive HTTP/1.1 server on raw sockets (so the
server itself costs little per request). Usage: python3 proxy_server.py PORT.
GET /ping -> "ok"; GET /bytes?n=N -> N bytes; POST /sink (Content-Length N) -> reads and drops N bytes."""
import socket
import sys
import threading

BLOCK = memoryview(b"x" * (4 << 20))


def serve(c):
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""
    try:
        while True:
            while b"\r\n\r\n" not in buf:
                b = c.recv(65536)
                if not b:
                    return
                buf += b
            head, _, buf = buf.partition(b"\r\n\r\n")
            line = head.split(b"\r\n", 1)[0].split()
            target = line[1].decode()
            if line[0] == b"POST":
                n = 0
                for h in head.split(b"\r\n")[1:]:
                    k, _, v = h.partition(b":")
                    if k.strip().lower() == b"content-length":
                        n = int(v)
                left = n - len(buf)
                buf = buf[n:] if left <= 0 else b""
                sink = bytearray(1 << 20)
                while left > 0:
                    got = c.recv_into(sink, min(left, len(sink)))
                    if not got:
                        return
                    left -= got
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            elif target.startswith("/bytes"):
                n = int(target.split("n=")[1])
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n)
                while n > 0:
                    k = min(n, len(BLOCK))
                    c.sendall(BLOCK[:k])
                    n -= k
            else:
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    finally:
        c.close()


s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(128)
while True:
    conn, _ = s.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
