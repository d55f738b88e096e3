"""Builds container image tarballs for sbx's snapshot tests, with the standard library only: layers are
tar streams (optionally gzip- or zstd-compressed), packed as `docker save` or as an OCI image layout."""
import gzip
import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import tarfile

BUSYBOX = "/bin/busybox"
HOST_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def sha256(b):
    return hashlib.sha256(b).hexdigest()


class Layer:
    """One layer: a list of tar members added in order. Returns its uncompressed tar bytes."""

    def __init__(self):
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)

    def _info(self, name, type_, mode, uid=0, gid=0):
        ti = tarfile.TarInfo(name)
        ti.type = type_
        ti.mode = mode
        ti.uid, ti.gid = uid, gid
        ti.mtime = 1700000000
        return ti

    def dir(self, name, mode=0o755, **kw):
        self.tar.addfile(self._info(name, tarfile.DIRTYPE, mode, **kw))
        return self

    def file(self, name, data=b"", mode=0o644, **kw):
        if isinstance(data, str):
            data = data.encode()
        ti = self._info(name, tarfile.REGTYPE, mode, **kw)
        ti.size = len(data)
        self.tar.addfile(ti, io.BytesIO(data))
        return self

    def symlink(self, name, target, **kw):
        ti = self._info(name, tarfile.SYMTYPE, 0o777, **kw)
        ti.linkname = target
        self.tar.addfile(ti)
        return self

    def hardlink(self, name, target, **kw):
        ti = self._info(name, tarfile.LNKTYPE, 0o644, **kw)
        ti.linkname = target
        self.tar.addfile(ti)
        return self

    def device(self, name, major=1, minor=3, kind=tarfile.CHRTYPE):
        ti = self._info(name, kind, 0o666)
        ti.devmajor, ti.devminor = major, minor
        self.tar.addfile(ti)
        return self

    def whiteout(self, path):
        d, _, base = path.rpartition("/")
        return self.file((d + "/" if d else "") + ".wh." + base, b"")

    def opaque(self, dirpath):
        return self.file(dirpath.rstrip("/") + "/.wh..wh..opq", b"")

    def bytes(self):
        self.tar.close()
        return self.buf.getvalue()


def busybox_layer():
    """A bottom layer: busybox-static with its applets linked in /bin, and the usual top directories."""
    layer = Layer()
    for d in ("bin", "etc", "root", "tmp", "var", "usr", "usr/bin"):
        layer.dir(d, mode=0o1777 if d == "tmp" else (0o700 if d == "root" else 0o755))
    with open(BUSYBOX, "rb") as f:
        layer.file("bin/busybox", f.read(), mode=0o755)
    for applet in ("sh", "ls", "cat", "echo", "id", "pwd", "env", "test", "stat", "head", "wc", "sleep",
                   "mkdir", "rm", "touch", "hostname", "true", "false", "readlink"):
        layer.hardlink(f"bin/{applet}", "bin/busybox")
    layer.file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
    layer.file("etc/group", "root:x:0:\nnobody:x:65534:\n")
    return layer


def compress(data, how):
    if how is None:
        return data, "application/vnd.oci.image.layer.v1.tar"
    if how == "gzip":
        return gzip.compress(data, mtime=0), "application/vnd.oci.image.layer.v1.tar+gzip"
    if how == "zstd":
        if not shutil.which("zstd"):
            raise RuntimeError("zstd not installed")
        out = subprocess.run(["zstd", "-q", "-c"], input=data, stdout=subprocess.PIPE, check=True).stdout
        return out, "application/vnd.oci.image.layer.v1.tar+zstd"
    raise ValueError(how)


def image_config(diff_ids, env=None, workdir=None, user=None, cmd=None, entrypoint=None, arch=HOST_ARCH):
    cfg = {}
    if env is not None:
        cfg["Env"] = env
    if workdir is not None:
        cfg["WorkingDir"] = workdir
    if user is not None:
        cfg["User"] = user
    if cmd is not None:
        cfg["Cmd"] = cmd
    if entrypoint is not None:
        cfg["Entrypoint"] = entrypoint
    c = {"architecture": arch, "os": "linux", "config": cfg,
         "rootfs": {"type": "layers", "diff_ids": ["sha256:" + d for d in diff_ids]}}
    return json.dumps(c).encode()


def _add(tar, name, data):
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mode = 0o644
    tar.addfile(ti, io.BytesIO(data))


def docker_save(path, layers, config=None, **cfg_kw):
    """layers: uncompressed tar bytes, bottom first. Writes a `docker save` (docker < 25) tarball."""
    diff_ids = [sha256(lb) for lb in layers]
    config = config if config is not None else image_config(diff_ids, **cfg_kw)
    cfg_name = sha256(config) + ".json"
    with tarfile.open(path, "w") as tar:
        names = []
        for i, lb in enumerate(layers):
            d = sha256(lb + bytes([i]))
            _add(tar, f"{d}/layer.tar", lb)
            _add(tar, f"{d}/VERSION", b"1.0")
            names.append(f"{d}/layer.tar")
        _add(tar, cfg_name, config)
        _add(tar, "manifest.json", json.dumps(
            [{"Config": cfg_name, "RepoTags": ["test:latest"], "Layers": names}]).encode())
    return diff_ids


def oci_layout(path, layers, compression="gzip", config=None, corrupt_blob=None, manifest_arch=None,
               **cfg_kw):
    """Writes an OCI image layout tarball; layers are compressed with `compression` (None, gzip, zstd;
    or a list, one per layer)."""
    diff_ids = [sha256(lb) for lb in layers]
    config = config if config is not None else image_config(diff_ids, **cfg_kw)
    blobs = {}
    descs = []
    for i, lb in enumerate(layers):
        how = compression[i] if isinstance(compression, list) else compression
        data, mt = compress(lb, how)
        dg = sha256(data)
        if corrupt_blob == i:
            data = data[:-1] + bytes([data[-1] ^ 0xFF])
        blobs[dg] = data
        descs.append({"mediaType": mt, "digest": "sha256:" + dg, "size": len(data)})
    cdg = sha256(config)
    blobs[cdg] = config
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + cdg,
                   "size": len(config)},
        "layers": descs}).encode()
    mdg = sha256(manifest)
    blobs[mdg] = manifest
    desc = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + mdg,
            "size": len(manifest)}
    if manifest_arch:
        desc["platform"] = {"os": "linux", "architecture": manifest_arch}
    index = json.dumps({"schemaVersion": 2, "manifests": [desc]}).encode()
    with tarfile.open(path, "w") as tar:
        _add(tar, "oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
        _add(tar, "index.json", index)
        for dg, data in blobs.items():
            _add(tar, f"blobs/sha256/{dg}", data)
    return diff_ids
