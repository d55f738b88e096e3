"""The sbx CLI end to end against a real sbxd."""
import os
import subprocess

from sbxtest import BIN


def sbx(daemon, *args, input=None, check=False):
    env = dict(os.environ, SBX_URL=daemon.url)
    env.pop("SBX_API_KEY", None)
    p = subprocess.run([os.path.join(BIN, "sbx"), *args], env=env, input=input, capture_output=True, timeout=120)
    if check:
        assert p.returncode == 0, (args, p.returncode, p.stderr)
    return p


def test_create_exec_ls_rm(daemon):
    sid = sbx(daemon, "create", "--memory", "256M", "--cpus", "1", "--name", "cli-box", check=True)
    sid = sid.stdout.decode().strip()
    assert sid.startswith("sbx_")
    ls = sbx(daemon, "ls", check=True).stdout.decode()
    assert sid in ls and "cli-box" in ls
    p = sbx(daemon, "exec", sid, "--env", "X=42", "--cwd", "/tmp", "--", "sh", "-c", "echo $X; pwd; echo e >&2; exit 5")
    assert p.returncode == 5
    assert p.stdout == b"42\n/tmp\n"
    assert p.stderr == b"e\n"
    p = sbx(daemon, "exec", sid, "--", "/no/such")
    assert p.returncode == 127
    sbx(daemon, "rm", sid, check=True)
    assert sid not in sbx(daemon, "ls", check=True).stdout.decode()
    p = sbx(daemon, "rm", sid)
    assert p.returncode != 0 and b"not_found" in p.stderr


def test_run_removes_sandbox(daemon):
    before = daemon.request("GET", "/v1/sandboxes").json()["sandboxes"]
    p = sbx(daemon, "run", "--", "sh", "-c", "hostname >/dev/null; echo ran; exit 7")
    assert p.returncode == 7 and p.stdout == b"ran\n"
    assert daemon.request("GET", "/v1/sandboxes").json()["sandboxes"] == before


def test_exec_stdin(daemon):
    sid = sbx(daemon, "create", check=True).stdout.decode().strip()
    try:
        p = sbx(daemon, "exec", "-i", sid, "--", "sha256sum", input=b"abc" * 100000)
        import hashlib
        assert p.returncode == 0
        assert p.stdout.decode().split()[0] == hashlib.sha256(b"abc" * 100000).hexdigest()
    finally:
        sbx(daemon, "rm", sid)


def test_cp_both_ways(daemon, tmp_path):
    sid = sbx(daemon, "create", check=True).stdout.decode().strip()
    try:
        src = tmp_path / "in.bin"
        data = os.urandom(1 << 20)
        src.write_bytes(data)
        sbx(daemon, "cp", str(src), f"{sid}:/root/in.bin", check=True)
        dst = tmp_path / "out.bin"
        sbx(daemon, "cp", f"{sid}:/root/in.bin", str(dst), check=True)
        assert dst.read_bytes() == data
        p = sbx(daemon, "cp", f"{sid}:/root/missing", str(tmp_path / "x"))
        assert p.returncode != 0 and b"not_found" in p.stderr
    finally:
        sbx(daemon, "rm", sid)


def test_unreachable_daemon_is_clear_error(tmp_path):
    env = dict(os.environ, SBX_URL="http://127.0.0.1:1")
    p = subprocess.run([os.path.join(BIN, "sbx"), "ls"], env=env, capture_output=True, timeout=30)
    assert p.returncode != 0 and p.stderr
