"""Network targets for the egress tests, built on this machine: nothing leaves it.

Target: a network namespace joined to the host by a veth pair (host end N.1/24 in a documentation range,
the namespace's eth0 N.2/24 and N.3/24, more /32s on request), running a TCP server on each address that
answers every connection with "hello from ADDR\\n". Sandboxes reach it through sbxd's egress path like any
outside host (the host routes 10.98.K.0/24 to the veth).

Resolver: a tiny DNS server on the host's loopback, given to sbxd as --dns-upstream, answering A queries
from a table and NXDOMAIN otherwise; it records every name it was asked for."""
import fcntl
import random
import socket
import struct
import subprocess
import threading
import time

SERVER = r"""
import socket, sys, threading
def serve(addr, port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port)); s.listen(64)
    while True:
        c, _ = s.accept()
        try:
            c.sendall(("hello from %s\n" % addr).encode())
        finally:
            c.close()
port = int(sys.argv[1])
for a in sys.argv[2:]:
    threading.Thread(target=serve, args=(a, port), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""


def ip(*args, check=True):
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


class Target:
    PORT = 8080

    def __init__(self, extra_addrs=()):
        tag = "%06x" % random.getrandbits(24)
        self.ns = f"sbxt-{tag}"
        self.host_if = f"vt{tag}"  # never "sbx*": that prefix is sbxd's
        # Documentation ranges (TEST-NET-2/3): public addresses as far as sbxd's policy is concerned
        # (private ones need an allow entry even under default allow), and used by nothing real.
        # Test suites run in parallel (the SDKs'): each Target holds a lock on its range for its life (the
        # kernel drops it if the process dies).
        self.lock = None
        for n in random.sample(["198.51.100", "203.0.113", "192.0.2"], 3):
            f = open(f"/tmp/sbx-nettarget-{n}.lock", "w")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                f.close()
                continue
            if ip("route", "show", f"{n}.0/24").stdout.strip():
                f.close()  # routed by something else (a target left behind by a killed run?)
                continue
            self.lock, self.net = f, n
            break
        assert self.lock, "every documentation range is taken (test targets left behind?)"
        self.gateway = f"{self.net}.1"
        self.addrs = [f"{self.net}.2", f"{self.net}.3"]
        self.extra = list(extra_addrs)  # /32s routed to the namespace too (e.g. 169.254.169.254)
        self.proc = None

    def __enter__(self):
        ip("netns", "add", self.ns)
        try:
            ip("link", "add", self.host_if, "type", "veth", "peer", "name", "eth0", "netns", self.ns)
            ip("addr", "add", f"{self.gateway}/24", "dev", self.host_if)
            ip("link", "set", self.host_if, "up")
            for a in self.addrs:
                ip("-n", self.ns, "addr", "add", f"{a}/24", "dev", "eth0")
            for a in self.extra:
                ip("-n", self.ns, "addr", "add", f"{a}/32", "dev", "eth0")
                ip("route", "add", f"{a}/32", "via", self.addrs[0], "dev", self.host_if)
            ip("-n", self.ns, "link", "set", "eth0", "up")
            ip("-n", self.ns, "link", "set", "lo", "up")
            ip("-n", self.ns, "route", "add", "default", "via", self.gateway)
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.ns, "python3", "-c", SERVER, str(self.PORT), *self.addrs, *self.extra],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            assert self.proc.stdout.readline().strip() == "ready"
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        if self.proc:
            self.proc.kill()
            self.proc.wait()
        for a in self.extra:
            ip("route", "del", f"{a}/32", check=False)
        ip("link", "del", self.host_if, check=False)
        ip("netns", "del", self.ns, check=False)
        if self.lock:
            self.lock.close()
            self.lock = None


def _name(packet, off):
    labels = []
    while True:
        n = packet[off]
        off += 1
        if n == 0:
            return ".".join(labels).lower(), off
        labels.append(packet[off:off + n].decode())
        off += n


class Resolver:
    """answers: {name: ipv4} (names lower case, no trailing dot)."""

    def __init__(self, answers, ttl=60):
        self.answers = dict(answers)
        self.ttl = ttl
        self.asked = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._loop, daemon=True)

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.sock.close()

    def _loop(self):
        while True:
            try:
                q, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            try:
                name, off = _name(q, 12)
                qtype = struct.unpack("!H", q[off:off + 2])[0]
            except (IndexError, UnicodeDecodeError, struct.error):
                continue
            self.asked.append(name)
            question = q[12:off + 4]
            addr = self.answers.get(name)
            if addr is None:
                hdr = q[:2] + struct.pack("!HHHHH", 0x8183, 1, 0, 0, 0)
                self.sock.sendto(hdr + question, peer)
                continue
            answers = b""
            if qtype == 1:
                answers = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, self.ttl, 4) + socket.inet_aton(addr)
            hdr = q[:2] + struct.pack("!HHHHH", 0x8180, 1, 1 if answers else 0, 0, 0)
            self.sock.sendto(hdr + question + answers, peer)


# Runs inside a sandbox (python3 from the host snapshot): prints one JSON line per target.
PROBE = r"""
import json, socket, sys
out = {}
for t in sys.argv[1:]:
    host, port = t.rsplit(":", 1)
    try:
        addr = socket.gethostbyname(host)
    except OSError as e:
        out[t] = "resolve: " + type(e).__name__
        continue
    s = socket.socket()
    s.settimeout(3)
    try:
        s.connect((addr, int(port)))
        out[t] = s.recv(100).decode().strip()
    except OSError as e:
        out[t] = "connect: " + (type(e).__name__ if not isinstance(e, socket.timeout) else "timeout")
    finally:
        s.close()
print(json.dumps(out))
"""


def probe(daemon, sid, *targets):
    """{target: "hello from ADDR" | "resolve: ..." | "connect: ..."} for each "host:port", tried from
    inside sandbox sid."""
    import json

    r = daemon.request("POST", f"/v1/sandboxes/{sid}/commands",
                       {"command": ["python3", "-c", PROBE, *targets], "wait": True, "timeout": 60}, timeout=90)
    assert r.status == 200, r
    res = r.json()
    assert res["exit_code"] == 0, res
    return json.loads(res["stdout"])


def nft_ruleset():
    return subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True, check=True).stdout


def wait_gone(pred, timeout=5):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.05)
    return pred()



def egress_args(resolver):
    """sbxd arguments for a daemon whose egress sandboxes resolve through `resolver` (None: nothing
    resolves) and live in a subnet of their own (so its nftables table and interfaces are its own too)."""
    subnet = f"10.{random.randint(232, 254)}.{random.randint(0, 255)}.0/24"
    return ["--dns-upstream", resolver.address if resolver else "none", "--egress-subnet", subnet]


def table_name(daemon):
    """The nftables table of a daemon started with egress_args."""
    subnet = daemon.extra_args[daemon.extra_args.index("--egress-subnet") + 1]
    a, b, c, _ = (int(x) for x in subnet.split("/")[0].split("."))
    return "sbx%02x%02x%02x" % (a, b, c)


def table_exists(daemon):
    return subprocess.run(["nft", "list", "table", "inet", table_name(daemon)],
                          capture_output=True).returncode == 0


def links():
    return subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
