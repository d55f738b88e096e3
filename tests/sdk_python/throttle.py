"""A TCP proxy on 127.0.0.1 that passes what the upstream answers at a limited rate, so a registry pull
on loopback lasts long enough (a second or two) for the SDKs' progress reports to see it advance. Used
by test_snapshot_sources.py and by tests/sdk_typescript/registry_helper.py."""
import socket
import threading
import time


class Throttle:
    """Listens on 127.0.0.1:<free port> (``.port``, ``.host``); each connection goes to
    127.0.0.1:``upstream_port``. Requests pass as they are; answers at most ``rate`` bytes a second
    per connection. ``close()`` stops listening and cuts what is open."""

    CHUNK = 16384

    def __init__(self, upstream_port, rate):
        self.upstream_port = upstream_port
        self.rate = rate
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.lock = threading.Lock()
        self.socks = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def host(self):
        return f"127.0.0.1:{self.port}"

    def _accept(self):
        while True:
            try:
                a, _ = self.lsock.accept()
            except OSError:
                return
            try:
                b = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                a.close()
                continue
            with self.lock:
                if self.closed:
                    a.close()
                    b.close()
                    return
                self.socks += [a, b]
            threading.Thread(target=self._pipe, args=(a, b, None), daemon=True).start()
            threading.Thread(target=self._pipe, args=(b, a, self.rate), daemon=True).start()

    def _pipe(self, src, dst, rate):
        try:
            while True:
                data = src.recv(self.CHUNK)
                if not data:
                    break
                if rate:
                    time.sleep(len(data) / rate)  # each chunk takes its share of a second: no idle credit
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        with self.lock:
            self.closed = True
            socks, self.socks = self.socks, []
        self.lsock.close()
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
