"""Registry pull (POST /v1/snapshots with a JSON body, `sbx snapshot pull`) against a real registry on
loopback: Debian's docker-registry, started by the fixture with its own config and storage in a temporary
dir, holding images these tests build and push themselves over the registry's HTTP API. Also a small
bearer-token front (the Distribution token flow) in front of it."""
import base64
import hashlib
import http.server
import json
import os
import shutil
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import imagebuild as ib  # noqa: E402
from sbxtest import BIN, Daemon, free_port, wait_for  # noqa: E402

REGISTRY = "/usr/bin/docker-registry"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


class Registry:
    """docker-registry on 127.0.0.1:<free port>; with htpasswd, basic auth (user `alice`, password
    `s3cret`)."""

    def __init__(self, htpasswd=False):
        self.dir = tempfile.mkdtemp(prefix="sbx-registry-")
        self.port = free_port()
        self.auth = None
        auth = ""
        if htpasswd:
            hp = os.path.join(self.dir, "htpasswd")
            subprocess.run(["htpasswd", "-Bbc", hp, "alice", "s3cret"], check=True, capture_output=True)
            auth = f"auth:\n  htpasswd:\n    realm: sbx-test\n    path: {hp}\n"
            self.auth = ("alice", "s3cret")
        cfg = os.path.join(self.dir, "config.yml")
        with open(cfg, "w") as f:
            f.write(f"version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n"
                    f"storage:\n  filesystem:\n    rootdirectory: {self.dir}/data\n  delete:\n    enabled: true\n"
                    f"http:\n  addr: 127.0.0.1:{self.port}\n  secret: sbx-test-secret\n{auth}")
        self.log = open(os.path.join(self.dir, "registry.log"), "wb")
        self.proc = subprocess.Popen([REGISTRY, "serve", cfg], stdout=self.log, stderr=subprocess.STDOUT)

        def up():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return True
            except OSError:
                assert self.proc.poll() is None, open(self.log.name).read()
                return False

        wait_for(up, timeout=20, what="docker-registry")

    @property
    def host(self):
        return f"127.0.0.1:{self.port}"

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _req(self, method, path, data=None, headers=None):
        url = path if path.startswith("http") else f"http://{self.host}{path}"
        h = dict(headers or {})
        if self.auth:
            h["Authorization"] = "Basic " + base64.b64encode(":".join(self.auth).encode()).decode()
        req = urllib.request.Request(url, data=data, method=method, headers=h)
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()

    def push_blob(self, repo, data):
        dg = "sha256:" + hashlib.sha256(data).hexdigest()
        _, h, _ = self._req("POST", f"/v2/{repo}/blobs/uploads/")
        loc = h["Location"]
        if not loc.startswith("http"):
            loc = f"http://{self.host}{loc}"
        loc += ("&" if "?" in loc else "?") + "digest=" + urllib.parse.quote(dg)
        st, _, _ = self._req("PUT", loc, data, {"Content-Type": "application/octet-stream"})
        assert st == 201
        return dg

    def push_manifest(self, repo, ref, body, media_type):
        st, h, _ = self._req("PUT", f"/v2/{repo}/manifests/{ref}", body, {"Content-Type": media_type})
        assert st == 201
        return h.get("Docker-Content-Digest")

    def push_image(self, repo, tag, layers, arch=ib.HOST_ARCH, **cfg_kw):
        """layers: uncompressed tars, bottom first, pushed gzip-compressed. Returns (manifest digest,
        manifest bytes, layer blob digests)."""
        diff_ids = [ib.sha256(lb) for lb in layers]
        config = ib.image_config(diff_ids, arch=arch, **cfg_kw)
        descs = []
        for lb in layers:
            data, mt = ib.compress(lb, "gzip")
            descs.append({"mediaType": mt, "digest": self.push_blob(repo, data), "size": len(data)})
        cdg = self.push_blob(repo, config)
        manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                               "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                          "digest": cdg, "size": len(config)},
                               "layers": descs}).encode()
        dg = self.push_manifest(repo, tag, manifest, OCI_MANIFEST)
        assert dg == "sha256:" + hashlib.sha256(manifest).hexdigest()
        return dg, manifest, [d["digest"] for d in descs], cdg

    def blob_path(self, digest):
        hx = digest.split(":")[1]
        return os.path.join(self.dir, "data", "docker", "registry", "v2", "blobs", "sha256", hx[:2], hx, "data")


@pytest.fixture(scope="module")
def registry():
    # install-deps.sh installs it: a missing registry is a broken setup, not a reason to skip.
    assert os.path.exists(REGISTRY), f"{REGISTRY} is missing: run scripts/install-deps.sh (docker-registry)"
    reg = Registry()
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def base_layer():
    return ib.busybox_layer().bytes()


def pull(daemon, body, expect="ready"):
    r = daemon.request("POST", "/v1/snapshots", body)
    assert r.status == 202, r
    sn = r.json()
    assert sn["status"] == "building" and sn["source"] == "registry"
    assert "progress" in sn

    def done():
        j = daemon.request("GET", f"/v1/snapshots/{sn['id']}").json()
        return j if j["status"] != "building" else None

    sn = wait_for(done, timeout=120, what=f"pull of {body['image']}")
    assert sn["status"] == expect, sn
    return sn


def test_pull_by_tag_and_run(daemon, registry, base_layer):
    app = ib.Layer().dir("app").file("app/hello", "hello from the registry\n").bytes()
    registry.push_image("sbx/app", "v1", [base_layer, app], env=["PATH=/bin", "WHO=pulled"], workdir="/app")
    sn = pull(daemon, {"name": "pulled-v1", "image": f"{registry.host}/sbx/app:v1", "insecure": True})
    assert len(sn["layers"]) == 2 and sn["config"]["WorkingDir"] == "/app"
    assert sn["layers"] == ["sha256:" + ib.sha256(base_layer), "sha256:" + ib.sha256(app)]
    sid = daemon.create(snapshot="pulled-v1")
    try:
        out = daemon.run(sid, ["sh", "-c", "pwd; cat hello; echo $WHO"])
        assert out["stdout"] == "/app\nhello from the registry\npulled\n", out
    finally:
        daemon.delete(sid)
    # Nothing is left in the uploads dir or as a staging dir.
    assert os.listdir(os.path.join(daemon.data_dir, "uploads")) == []
    assert not [n for n in os.listdir(os.path.join(daemon.data_dir, "layers")) if n.startswith(".")]


def test_pull_by_digest_and_cli(daemon, registry, base_layer):
    layer = ib.Layer().file("etc/motd", "by digest\n").bytes()
    dg, _, _, _ = registry.push_image("sbx/dig", "t", [base_layer, layer])
    env = dict(os.environ, SBX_URL=daemon.url)
    out = subprocess.run([os.path.join(BIN, "sbx"), "snapshot", "pull", f"{registry.host}/sbx/dig@{dg}",
                          "--name", "pulled-dig", "--insecure"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out
    assert "pulled-dig ready" in out.stdout, out
    sid = daemon.create(snapshot="pulled-dig")
    try:
        assert daemon.run(sid, ["cat", "/etc/motd"])["stdout"] == "by digest\n"
    finally:
        daemon.delete(sid)
    # A digest the registry does not have: failed with the registry's reason; the CLI exits non-zero.
    bad = "sha256:" + "0" * 64
    out = subprocess.run([os.path.join(BIN, "sbx"), "snapshot", "pull", f"{registry.host}/sbx/dig@{bad}",
                          "--name", "pulled-nodig", "--insecure"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode != 0 and "not found" in out.stderr and "404" in out.stderr, out


def test_pull_multi_arch_index(daemon, registry, base_layer):
    mine, mine_body, _, _ = registry.push_image("sbx/multi", "mine", [base_layer])
    other_arch = "s390x" if ib.HOST_ARCH != "s390x" else "amd64"
    other, other_body, _, _ = registry.push_image("sbx/multi", "other",
                                                  [ib.Layer().file("x", "other arch").bytes()], arch=other_arch)
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": other, "size": len(other_body),
         "platform": {"os": "linux", "architecture": other_arch}},
        {"mediaType": OCI_MANIFEST, "digest": mine, "size": len(mine_body),
         "platform": {"os": "linux", "architecture": ib.HOST_ARCH}}]}).encode()
    registry.push_manifest("sbx/multi", "latest", index, OCI_INDEX)
    sn = pull(daemon, {"name": "pulled-multi", "image": f"{registry.host}/sbx/multi", "insecure": True})
    assert sn["layers"] == ["sha256:" + ib.sha256(base_layer)]
    only_other = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": other, "size": len(other_body),
         "platform": {"os": "linux", "architecture": other_arch}}]}).encode()
    registry.push_manifest("sbx/multi", "foreign", only_other, OCI_INDEX)
    sn = pull(daemon, {"name": "pulled-foreign", "image": f"{registry.host}/sbx/multi:foreign",
                       "insecure": True}, expect="failed")
    assert f"no manifest for linux/{ib.HOST_ARCH}" in sn["reason"], sn
    # The other arch's manifest named directly: its config says so, and sbx-unpack refuses it.
    sn = pull(daemon, {"name": "pulled-other", "image": f"{registry.host}/sbx/multi:other", "insecure": True},
              expect="failed")
    assert "architecture" in sn["reason"], sn


def test_pull_failures(daemon, registry, base_layer):
    sn = pull(daemon, {"name": "pulled-missing", "image": f"{registry.host}/sbx/app:nope", "insecure": True},
              expect="failed")
    assert "manifest `nope` not found" in sn["reason"] and "MANIFEST_UNKNOWN" in sn["reason"], sn
    sn = pull(daemon, {"name": "pulled-norepo", "image": f"{registry.host}/sbx/none:v1", "insecure": True},
              expect="failed")
    assert "404" in sn["reason"], sn
    # A registry that serves a layer whose bytes do not match its digest (tampered on disk).
    lb = ib.Layer().file("data/t", "x" * 5000).bytes()
    _, _, blobs, cdg = registry.push_image("sbx/tamper", "v1", [base_layer, lb])
    path = registry.blob_path(blobs[1])
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(path, "wb").write(bytes(data))
    sn = pull(daemon, {"name": "pulled-tampered", "image": f"{registry.host}/sbx/tamper:v1", "insecure": True},
              expect="failed")
    assert "digest mismatch" in sn["reason"] and blobs[1] in sn["reason"], sn
    # A tampered config.
    _, _, _, cdg = registry.push_image("sbx/tamper2", "v1", [base_layer], env=["A=1"])
    path = registry.blob_path(cdg)
    cfg = open(path, "rb").read().replace(b"A=1", b"A=2")
    open(path, "wb").write(cfg)
    sn = pull(daemon, {"name": "pulled-badcfg", "image": f"{registry.host}/sbx/tamper2:v1", "insecure": True},
              expect="failed")
    assert "digest mismatch for the image config" in sn["reason"], sn
    # A manifest that announces a layer smaller than it is: the transfer is cut at the announced size.
    data, mt = ib.compress(ib.Layer().file("big", "y" * 20000).bytes(), "gzip")
    dg = registry.push_blob("sbx/lie", data)
    config = ib.image_config([ib.sha256(ib.Layer().file("big", "y" * 20000).bytes())])
    cdg = registry.push_blob("sbx/lie", config)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdg,
                                      "size": len(config)},
                           "layers": [{"mediaType": mt, "digest": dg, "size": len(data) - 10}]}).encode()
    try:
        registry.push_manifest("sbx/lie", "v1", manifest, OCI_MANIFEST)
    except urllib.error.HTTPError as e:
        pytest.fail(f"the registry refused the manifest: {e.read()!r}")
    sn = pull(daemon, {"name": "pulled-lie", "image": f"{registry.host}/sbx/lie:v1", "insecure": True},
              expect="failed")
    assert "larger than announced" in sn["reason"], sn
    # HTTPS against a plain-HTTP registry: a clear transport error.
    sn = pull(daemon, {"name": "pulled-tls", "image": f"{registry.host}/sbx/app:v1"}, expect="failed")
    assert "GET https://" in sn["reason"], sn
    # Nothing half-written is left behind.
    assert os.listdir(os.path.join(daemon.data_dir, "uploads")) == []
    assert not [n for n in os.listdir(os.path.join(daemon.data_dir, "layers")) if n.startswith(".")]
    # Bad requests: typed errors, no snapshot.
    for body, code in [({"name": "x", "image": "no-registry"}, 400),
                       ({"name": "x", "image": f"{registry.host}/UPPER:v1"}, 400),
                       ({"name": "x", "image": f"{registry.host}/a@sha256:12"}, 400),
                       ({"image": f"{registry.host}/a:v1"}, 400),
                       ({"name": "pulled-missing", "image": f"{registry.host}/a:v1"}, 409),
                       ({"name": "x", "image": f"{registry.host}/a:v1", "auth": {"password": "p"}}, 400),
                       ({"name": "x", "image": 5}, 400)]:
        r = daemon.request("POST", "/v1/snapshots", body)
        assert r.status == code, (body, r)
        assert r.json()["error"]["code"]
    names = [s["name"] for s in daemon.request("GET", "/v1/snapshots").json()["snapshots"]]
    assert "x" not in names


def test_pull_skips_stored_layers(daemon, registry, base_layer):
    """A layer the store has (by diff_id) is neither downloaded nor stored twice."""
    one = ib.Layer().file("one", "1" * 100000).bytes()
    two = ib.Layer().file("two", "2" * 1000).bytes()
    registry.push_image("sbx/share", "a", [base_layer, one])
    registry.push_image("sbx/share", "b", [base_layer, two])
    a = pull(daemon, {"name": "share-a", "image": f"{registry.host}/sbx/share:a", "insecure": True})
    before = set(os.listdir(os.path.join(daemon.data_dir, "layers")))
    b = pull(daemon, {"name": "share-b", "image": f"{registry.host}/sbx/share:b", "insecure": True})
    after = set(os.listdir(os.path.join(daemon.data_dir, "layers")))
    assert after - before == {ib.sha256(two)}
    assert a["layers"][0] == b["layers"][0]
    refs = {l["digest"]: l for l in daemon.request("GET", "/v1/layers").json()["layers"]}
    assert refs[b["layers"][0]]["refs"] >= 2
    assert b["size_bytes"] >= refs[b["layers"][0]]["size_bytes"]  # the skipped layer counted in the size
    # The log says how much was downloaded: not the busybox layer again.
    log = daemon.read_log()
    line = [l for l in log.splitlines() if "(`share-b`): pulled" in l][-1]
    downloaded = int(line.split("(")[-1].split(" bytes")[0])
    assert downloaded < len(base_layer) // 4, line
    sid = daemon.create(snapshot="share-b")
    try:
        assert daemon.run(sid, ["sh", "-c", "wc -c < /two"])["stdout"].strip() == "1000"
    finally:
        daemon.delete(sid)


def test_deleting_the_snapshot_whose_layers_a_pull_reuses(daemon, registry, base_layer):
    """A pull that found a layer stored when it started still has it when it ends, even if the only
    snapshot using it is deleted meanwhile (the layer waits for the garbage collection, which waits for
    every build)."""
    own = ib.Layer().file("own", "mine").bytes()
    registry.push_image("sbx/reuse", "v1", [base_layer, own])
    for i in range(3):
        a = pull(daemon, {"name": f"reuse-a{i}", "image": f"{registry.host}/sbx/reuse:v1", "insecure": True})
        r = daemon.request("POST", "/v1/snapshots",
                           {"name": f"reuse-b{i}", "image": f"{registry.host}/sbx/reuse:v1", "insecure": True})
        assert r.status == 202, r
        b = r.json()
        assert daemon.request("DELETE", f"/v1/snapshots/{a['id']}").status == 204

        def done():
            j = daemon.request("GET", f"/v1/snapshots/{b['id']}").json()
            return j if j["status"] != "building" else None

        b = wait_for(done, timeout=120, what="the second pull")
        assert b["status"] == "ready", b
        sid = daemon.create(snapshot=b["id"])
        try:
            assert daemon.run(sid, ["cat", "/own"])["stdout"] == "mine"
        finally:
            daemon.delete(sid)
        assert daemon.request("DELETE", f"/v1/snapshots/{b['id']}").status == 204


def test_pull_basic_auth(daemon, base_layer):
    reg = Registry(htpasswd=True)
    try:
        reg.push_image("sbx/private", "v1", [base_layer])
        ref = f"{reg.host}/sbx/private:v1"
        sn = pull(daemon, {"name": "private-noauth", "image": ref, "insecure": True}, expect="failed")
        assert "requires credentials" in sn["reason"] or "401" in sn["reason"], sn
        sn = pull(daemon, {"name": "private-wrong", "image": ref, "insecure": True,
                           "auth": {"username": "alice", "password": "wrong"}}, expect="failed")
        assert "refused" in sn["reason"], sn
        env = dict(os.environ, SBX_URL=daemon.url)
        out = subprocess.run([os.path.join(BIN, "sbx"), "snapshot", "pull", ref, "--name", "private-ok",
                              "--insecure", "--username", "alice", "--password-stdin"], input="s3cret\n",
                             env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out
        assert "s3cret" not in daemon.read_log()
    finally:
        reg.stop()


class TokenFront:
    """The Distribution token flow in front of a registry: /v2/ answers 401 with a Bearer challenge
    naming /token, which hands a token for alice:s3cret; requests with that token are proxied."""

    def __init__(self, upstream):
        front = self
        self.token = "tok-" + os.urandom(8).hex()
        self.port = free_port()
        self.token_requests = []

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                if self.path.startswith("/token"):
                    front.token_requests.append(self.path)
                    ok = self.headers.get("Authorization") == "Basic " + base64.b64encode(b"alice:s3cret").decode()
                    q = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
                    if not ok or q.get("service") != ["sbx-test"] or not q.get("scope"):
                        self.send_response(401)
                        self.end_headers()
                        return
                    body = json.dumps({"token": front.token}).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if self.headers.get("Authorization") != f"Bearer {front.token}":
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", f'Bearer realm="http://127.0.0.1:{front.port}/token",'
                                     f'service="sbx-test",scope="repository:sbx/tok:pull"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                req = urllib.request.Request(f"http://{upstream}{self.path}",
                                             headers={"Accept": self.headers.get("Accept", "*/*")})
                try:
                    with urllib.request.urlopen(req, timeout=30) as r:
                        body, status, ct = r.read(), r.status, r.headers.get("Content-Type", "")
                except urllib.error.HTTPError as e:
                    body, status, ct = e.read(), e.code, e.headers.get("Content-Type", "")
                self.send_response(status)
                self.send_header("Content-Type", ct)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", self.port), H)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def test_pull_bearer_token_flow(daemon, registry, base_layer):
    registry.push_image("sbx/tok", "v1", [base_layer, ib.Layer().file("tok", "bearer\n").bytes()])
    front = TokenFront(registry.host)
    try:
        ref = f"127.0.0.1:{front.port}/sbx/tok:v1"
        sn = pull(daemon, {"name": "tok-bad", "image": ref, "insecure": True,
                           "auth": {"username": "alice", "password": "nope"}}, expect="failed")
        assert "token service refused" in sn["reason"], sn
        sn = pull(daemon, {"name": "tok-ok", "image": ref, "insecure": True,
                           "auth": {"username": "alice", "password": "s3cret"}})
        assert "scope=repository%3Asbx%2Ftok%3Apull" in front.token_requests[-1]
        sid = daemon.create(snapshot="tok-ok")
        try:
            assert daemon.run(sid, ["cat", "/tok"])["stdout"] == "bearer\n"
        finally:
            daemon.delete(sid)
        # A token given as is.
        sn = pull(daemon, {"name": "tok-given", "image": ref, "insecure": True, "auth": {"token": front.token}})
        assert sn["status"] == "ready"
    finally:
        front.stop()


def test_pull_is_admin_only(daemon, registry):
    r = daemon.request("POST", "/v1/keys", {"name": "pull-tenant"})
    assert r.status == 201, r
    key = r.json()["key"]
    r = daemon.request("POST", "/v1/snapshots", {"name": "t-pull", "image": f"{registry.host}/sbx/app:v1",
                                                 "insecure": True},
                       headers={"Authorization": f"Bearer {key}"}, auth=False)
    assert r.status == 403, r


class HangingRegistry:
    """A registry that hangs, on a raw socket: in mode `silent` it accepts and reads requests but never
    answers; in mode `stall-blob` it serves a manifest and its config, then answers the layer blob's GET
    with its headers (the full Content-Length) and the first 512 bytes, and sends nothing more."""

    PARTIAL = 512

    def __init__(self, mode, base_layer):
        self.mode = mode
        self.stop_ev = threading.Event()
        self.blob_started = threading.Event()
        self.requests = []
        self.conns = []
        self.layer, _ = ib.compress(base_layer, "gzip")
        self.config = ib.image_config([ib.sha256(base_layer)])
        self.layer_dg = "sha256:" + ib.sha256(self.layer)
        self.config_dg = "sha256:" + ib.sha256(self.config)
        self.manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": self.config_dg,
                       "size": len(self.config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": self.layer_dg,
                        "size": len(self.layer)}]}).encode()
        assert len(self.layer) > 4 * self.PARTIAL
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def host(self):
        return f"127.0.0.1:{self.port}"

    def _accept(self):
        while not self.stop_ev.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _answer(conn, body, content_type="application/octet-stream", send=None):
        head = (f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                f"Docker-Distribution-API-Version: registry/2.0\r\n\r\n").encode()
        conn.sendall(head + body[:send if send is not None else len(body)])

    def _serve(self, conn):
        buf = b""
        try:
            while not self.stop_ev.is_set():
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                path = head.split(b"\r\n")[0].split(b" ")[1].decode()
                self.requests.append(path)
                if self.mode == "silent":
                    self.stop_ev.wait()
                    return
                if "/manifests/" in path:
                    self._answer(conn, self.manifest, OCI_MANIFEST)
                elif path.endswith(self.config_dg):
                    self._answer(conn, self.config)
                elif path.endswith(self.layer_dg):
                    self._answer(conn, self.layer, send=self.PARTIAL)
                    self.blob_started.set()
                    self.stop_ev.wait()
                    return
                else:
                    conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        except OSError:
            return

    def stop(self):
        self.stop_ev.set()
        self.sock.close()
        for c in self.conns:
            c.close()


def test_pull_from_a_hanging_registry(base_layer):
    """--pull-stall-seconds: a registry that accepts and never answers, and one that stalls in the middle
    of a layer blob, both end the pull `failed` with a clear reason within a few seconds, nothing kept."""
    with Daemon(extra_args=["--pull-stall-seconds", "2", "--warm", "0"]) as d:
        for mode in ("silent", "stall-blob"):
            reg = HangingRegistry(mode, base_layer)
            try:
                t0 = time.monotonic()
                r = d.request("POST", "/v1/snapshots", {"name": f"hang-{mode}",
                                                        "image": f"{reg.host}/sbx/hang:v1", "insecure": True})
                assert r.status == 202, r
                sid = r.json()["id"]
                if mode == "stall-blob":
                    # Mid-body: the first bytes of the layer are counted while the rest never comes.
                    head = len(reg.manifest) + len(reg.config) + reg.PARTIAL
                    wait_for(lambda: d.request("GET", f"/v1/snapshots/{sid}").json().get("progress", {})
                             .get("bytes_done", 0) >= head, timeout=5, what="the blob's first bytes")

                def done():
                    j = d.request("GET", f"/v1/snapshots/{sid}").json()
                    return j if j["status"] != "building" else None

                sn = wait_for(done, timeout=20, what=f"the pull from a {mode} registry to end")
                took = time.monotonic() - t0
                assert sn["status"] == "failed", sn
                assert "the registry stalled" in sn["reason"] and "for 2 s" in sn["reason"], sn
                assert f"pull of `{reg.host}/sbx/hang` failed" in sn["reason"], sn
                # It waited for the stall (2 s), not much longer: well below the 60 s default.
                assert 1.5 <= took < 10, (took, sn)
                if mode == "silent":
                    assert reg.requests == ["/v2/sbx/hang/manifests/v1"], reg.requests
                    assert "manifests/v1" in sn["reason"], sn
                else:
                    assert reg.blob_started.is_set(), reg.requests
                    assert reg.layer_dg in sn["reason"], sn
            finally:
                reg.stop()
            # Nothing half-written: no upload (the tarball being written), no staging dir, no layer.
            assert os.listdir(os.path.join(d.data_dir, "uploads")) == []
            assert not [n for n in os.listdir(os.path.join(d.data_dir, "layers")) if n.startswith(".")]
            assert ib.sha256(base_layer) not in os.listdir(os.path.join(d.data_dir, "layers"))
            names = {s["name"]: s for s in d.request("GET", "/v1/snapshots").json()["snapshots"]}
            assert names[f"hang-{mode}"]["status"] == "failed"
            # The failed snapshot is deleted like any other, freeing its name.
            assert d.request("DELETE", f"/v1/snapshots/{sid}").status == 204
        assert d.stop() == 0, d.read_log()


def test_pull_stall_seconds_is_checked():
    for bad in ("0", "3601", "x", ""):
        out = subprocess.run([os.path.join(BIN, "sbxd"), "--pull-stall-seconds", bad], capture_output=True,
                             text=True, timeout=10)
        assert out.returncode == 2 and "--pull-stall-seconds must be 1..3600" in out.stderr, (bad, out)
