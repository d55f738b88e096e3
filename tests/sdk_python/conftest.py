"""Fixtures for the Python SDK's tests: a real `sbxd --ephemeral` (tests/sbxtest.py's Daemon) with an
admin key, SDK clients pointed at it, and a TCP proxy the tests can cut to drop connections mid-stream."""
import os
import socket
import sys
import threading

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SOURCE, "sdk", "python"))  # the SDK from the source tree
sys.path.insert(0, os.path.join(SOURCE, "tests"))  # sbxtest

from sbxtest import Daemon  # noqa: E402

import sbx  # noqa: E402

ADMIN_KEY = "sdk-test-admin-key"


def pytest_configure(config):
    if os.geteuid() != 0:
        pytest.exit("sbx's SDK tests need root (a real sbxd: namespaces, cgroups, mounts)", returncode=1)


@pytest.fixture(scope="session")
def daemon():
    with Daemon(api_key=ADMIN_KEY, extra_args=["--warm", "4"]) as d:
        yield d
        assert d.stop() == 0, f"sbxd did not exit cleanly: {d.read_log()}"


@pytest.fixture
def client(daemon):
    with sbx.SandboxClient(daemon.url, api_key=ADMIN_KEY, retry_timeout=10) as c:
        yield c


@pytest.fixture
def sb(client):
    s = client.create_sandbox()
    yield s
    s.delete(missing_ok=True)


class Proxy:
    """A TCP proxy to a port, in threads; drop() cuts every connection open through it (both sides),
    as a network failure would, while new connections keep working."""

    def __init__(self, port):
        self.port_to = port
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.lock = threading.Lock()
        self.socks = []
        self.accepted = 0
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                a, _ = self.lsock.accept()
            except OSError:
                return
            try:
                b = socket.create_connection(("127.0.0.1", self.port_to))
            except OSError:
                a.close()
                continue
            with self.lock:
                self.socks += [a, b]
                self.accepted += 1
            for x, y in ((a, b), (b, a)):
                threading.Thread(target=self._pipe, args=(x, y), daemon=True).start()

    @staticmethod
    def _pipe(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def drop(self):
        """Cuts every open connection; returns how many there were."""
        with self.lock:
            socks, self.socks = self.socks, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        return len(socks) // 2

    def close(self):
        self.lsock.close()
        self.drop()


@pytest.fixture
def proxy(daemon):
    p = Proxy(daemon.port)
    yield p
    p.close()
