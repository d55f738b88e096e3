"""Claim: root inside a sandbox is not host root (user namespace mapping to an unprivileged host range)."""
import os

from sbxtest import sandbox_state_dir, sh


def parse_map(text):
    rows = []
    for line in text.splitlines():
        inside, outside, count = map(int, line.split())
        rows.append((inside, outside, count))
    return rows


def read_maps(daemon, sid):
    res = sh(daemon, sid, "cat /proc/self/uid_map; echo ---; cat /proc/self/gid_map; echo ---; id -u")
    assert res["exit_code"] == 0, res
    uid_txt, gid_txt, me = res["stdout"].split("---\n")
    return parse_map(uid_txt), parse_map(gid_txt), int(me)


def test_root_maps_to_unprivileged_host_ids(daemon, sandbox):
    uid_map, gid_map, me = read_maps(daemon, sandbox)
    assert me == 0, "commands should run as root inside (positive control)"
    assert uid_map and gid_map
    for name, m in (("uid", uid_map), ("gid", gid_map)):
        for inside, outside, count in m:
            assert outside != 0, f"{name} {inside} inside maps to host {name} 0: {m}"
            assert not (outside <= 0 < outside + count), f"host {name} 0 inside the mapped range: {m}"
        # Sandbox root (0 inside) is mapped, to a non-zero host id.
        assert any(i == 0 and c >= 1 for i, _, c in m), m


def find_upper_file(daemon, sid, rel):
    """The copy of a sandbox file in its upper dir on the host."""
    state = sandbox_state_dir(daemon, sid)
    cand = os.path.join(state, "upper", rel.lstrip("/"))
    if os.path.lexists(cand):
        return cand
    for root, dirs, files in os.walk(state):
        if "rootfs" in os.path.relpath(root, state).split(os.sep)[:1]:
            dirs[:] = []
            continue
        if os.path.basename(rel) in files and root.endswith(os.path.dirname(rel).rstrip("/")):
            return os.path.join(root, os.path.basename(rel))
    return None


def test_files_created_inside_are_not_host_root_owned(daemon, sandbox, token):
    # /root is in the sandbox's upper layer (/tmp might be a tmpfs).
    res = sh(daemon, sandbox, f"echo hi > /root/{token}; mkdir /root/{token}d; stat -c %u:%g /root/{token}")
    assert res["exit_code"] == 0, res
    assert res["stdout"].strip() == "0:0", res  # root inside
    uid_map, gid_map, _ = read_maps(daemon, sandbox)
    host = find_upper_file(daemon, sandbox, f"/root/{token}")
    assert host, f"/root/{token} not found under {sandbox_state_dir(daemon, sandbox)}"
    st = os.lstat(host)
    assert st.st_uid != 0 and st.st_gid != 0, f"{host} is owned by host root"
    assert st.st_uid == uid_map[0][1] and st.st_gid == gid_map[0][1], (st.st_uid, st.st_gid, uid_map)
    hd = find_upper_file(daemon, sandbox, f"/root/{token}d")
    assert hd and os.lstat(hd).st_uid != 0


def test_api_uploads_are_root_inside_not_host_root(daemon, sandbox, token):
    r = daemon.request("PUT", f"/v1/sandboxes/{sandbox}/files?path=/root/{token}/up.txt", body=b"uploaded\n")
    assert r.status == 200, r
    res = sh(daemon, sandbox, f"stat -c '%u:%g %a' /root/{token}/up.txt /root/{token}; cat /root/{token}/up.txt")
    assert res["exit_code"] == 0, res
    lines = res["stdout"].splitlines()
    assert lines[0].split()[0] == "0:0" and lines[1].split()[0] == "0:0", res
    assert lines[2] == "uploaded"
    host = find_upper_file(daemon, sandbox, f"/root/{token}/up.txt")
    assert host and os.lstat(host).st_uid != 0, host


def test_sandbox_root_cannot_use_unmapped_ids(daemon, sandbox, token):
    """chown to an id outside the mapping fails: the sandbox cannot mint files owned by other host users."""
    uid_map, _, _ = read_maps(daemon, sandbox)
    unmapped = max(i + c for i, _, c in uid_map)
    assert unmapped < 4294967295
    res = sh(daemon, sandbox, f"touch /tmp/{token}; chown {unmapped} /tmp/{token}; echo big=$?; "
                              f"chown 1000 /tmp/{token}; echo small=$?")
    assert "small=0" in res["stdout"], res  # positive control: mapped ids work
    assert "big=0" not in res["stdout"], res
