"""Claim: a sandbox's network is loopback only; host services (on 127.0.0.1, on the host's own addresses,
abstract unix sockets) are unreachable; its own loopback works."""
import json
import socket
import subprocess
import threading

import pytest

from sbxtest import kv, sh


class Listener:
    """A TCP listener on the host that counts accepted connections."""

    def __init__(self, addr, port=0):
        fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((addr, port))
        self.sock.listen(16)
        self.addr, self.port = addr, self.sock.getsockname()[1]
        self.accepted = 0
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            c.close()

    def close(self):
        self.sock.close()


def host_addresses():
    """The host's non-loopback addresses (IPv4 and global IPv6)."""
    try:
        out = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return []
    addrs = []
    for link in json.loads(out):
        if link.get("ifname") == "lo":
            continue
        for a in link.get("addr_info", []):
            if a.get("scope") == "global":
                addrs.append(a["local"])
    return addrs


@pytest.fixture
def host_listeners():
    ls = []
    lo = Listener("127.0.0.1")
    ls.append(lo)
    for addr in ["::1"] + host_addresses():
        try:
            ls.append(Listener(addr, lo.port))
        except OSError:
            try:
                ls.append(Listener(addr))
            except OSError:
                pass
    yield ls
    for l in ls:
        l.close()


def test_host_tcp_services_unreachable(daemon, sandbox, th, host_listeners):
    # The listeners really accept connections from the host (positive control for the listeners).
    for l in host_listeners:
        with socket.create_connection((l.addr, l.port), timeout=5):
            pass
    for l in host_listeners:
        assert _wait_accepted(l, 1), f"host listener {l.addr} accepted nothing"
    targets = [(l.addr, l.port) for l in host_listeners] + [("127.0.0.1", daemon.port)]
    for addr, port in targets:
        res = th(sandbox, "connect", addr, port, 2)
        d = kv(res["stdout"])
        assert res["exit_code"] == 1 and d["status"] == "error", f"sandbox reached host {addr}:{port}: {res}"
    for l in host_listeners:
        assert l.accepted == 1, f"host listener {l.addr}:{l.port} got a connection from the sandbox"


def _wait_accepted(l, n):
    import time
    deadline = time.monotonic() + 5
    while l.accepted < n and time.monotonic() < deadline:
        time.sleep(0.01)
    return l.accepted >= n


def test_sandbox_loopback_works(daemon, sandbox, th, host_listeners):
    """Positive control for the test above: the same address and port inside reach the sandbox's own
    listener, so a failure to reach the host is isolation, not a broken network stack."""
    port = host_listeners[0].port
    helper = th.path(sandbox)
    script = f"""
python3 -c 'import socket; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", {port})); s.listen(); s.settimeout(5); print("listening", flush=True); c, _ = s.accept(); c.close()' > /tmp/srv.log 2>&1 &
for i in $(seq 100); do grep -q listening /tmp/srv.log && break; sleep 0.05; done
{helper} connect 127.0.0.1 {port} 2
wait
"""
    res = sh(daemon, sandbox, script, timeout=30)
    assert kv(res["stdout"])["status"] == "ok", res
    assert host_listeners[0].accepted == 0, "the sandbox's connect reached the host"


def test_only_loopback_interface(daemon, sandbox):
    res = sh(daemon, sandbox, "tail -n +3 /proc/net/dev | cut -d: -f1; echo ---; ls /sys/class/net 2>/dev/null; true")
    devs, sysnet = res["stdout"].split("---")
    devs = {d.strip() for d in devs.split()}
    assert devs == {"lo"}, f"interfaces inside: {devs}"
    assert set(sysnet.split()) <= {"lo"}, f"/sys/class/net inside: {sysnet.split()}"
    res = sh(daemon, sandbox, "cat /proc/net/route | tail -n +2 | wc -l")
    assert res["stdout"].strip() == "0", f"IPv4 routes inside: {res}"


def test_outside_addresses_unreachable(daemon, sandbox, th):
    for addr, port in (("1.1.1.1", 53), ("8.8.8.8", 443), ("169.254.169.254", 80), ("192.0.2.1", 80)):
        res = th(sandbox, "connect", addr, port, 2)
        assert res["exit_code"] == 1, f"sandbox reached {addr}:{port}: {res}"


def test_host_abstract_unix_socket_unreachable(daemon, sandbox, token):
    """Abstract unix sockets belong to the network namespace: the host's must be unreachable."""
    host = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    host.bind(f"\0{token}")
    host.listen(4)
    try:
        probe = (f"import socket\nname='\\0{token}'\n"
                 "c=socket.socket(socket.AF_UNIX)\n"
                 "try:\n c.connect(name); print('host-reached')\nexcept OSError as e: print('refused', e.errno)\n"
                 "s=socket.socket(socket.AF_UNIX); s.bind(name); s.listen()\n"
                 "c=socket.socket(socket.AF_UNIX); c.connect(name); print('own-ok')\n")
        res = daemon.run(sandbox, ["python3", "-c", probe])
        assert "own-ok" in res["stdout"], res  # positive control
        assert "host-reached" not in res["stdout"], f"host abstract socket reachable: {res}"
    finally:
        host.close()
