"""smb:// and nfs:// repositories in the live system, and an unattended job with an ssh:// repository, in one
boot of the live ISO under QEMU (this host's kernel has no cifs or nfs client: the mounts can only be made in a
guest).

The servers run here, each on its own port of 127.0.0.1 with its own configuration and state, stopped by pid
(tests/integration/netservers.py): Samba's smbd (at most SMB 3.0, as an older NAS: the client must fall back
from 3.1.1 and say which version it got), nfs-ganesha (userspace NFS 4.0/4.1: 4.2 refused, 4.1 shown) and
OpenSSH's sshd. One run: 209 s under load, the shell after 120 s, SMB round trip 35 s, NFS 32 s, the two
unattended ssh:// jobs 16 s. The guest reaches
them at 10.0.2.2 (QEMU user networking). In the guest:
- a small GPT disk with an ext4 partition is captured to smb://tech@10.0.2.2:PORT/share/lab (the password
  in a credentials file, never on a command line) and to nfs://10.0.2.2:PORT/export/lab, and each image is
  restored onto a blank disk: partition table identifiers (disk and partition GUIDs), the filesystem UUID and
  every file's hash must match the source;
- the progress lines show the network rate, the commands show the negotiated protocol version;
- the password never appears in the process list (sampled all along), the journal, dmesg, files under
  /run (but the live medium), /tmp, /var/log, /root, nor on the serial console;
- `lifeboat unattended` runs a job file (on a disk labelled LBJOBS) that captures to ssh://, with
  lifeboat-known_hosts and lifeboat-credentials (an identity_file) beside it: the host verifies the image; the
  same job beside no known_hosts is refused, naming the server key's fingerprint.
"""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import qemu
from iso_helpers import BOOT_TIMEOUT, LIVE_APPEND, blank_disk, ext4_disk_with_files, ready_pattern, run, shell

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from netservers import ganesha, samba, sshd  # noqa: E402  (tests/integration is no package)

pytestmark = [pytest.mark.timeout(1800),
              *qemu.vm_marks("needs root (the servers run as root; the repositories are read back)", needs_ovmf=False)]

ROOT = Path(__file__).resolve().parents[2]
DISK_MIB = 48
GUEST = "10.0.2.2"  # the host's 127.0.0.1, seen from QEMU's user network
RESULT_RE = re.compile(r"LIFEBOAT-RESULT: \S+ [^\n]*")


def _source_files() -> dict[str, bytes]:
    files = {f"data/file{i}.bin": secrets.token_bytes(192 * 1024) for i in range(6)}
    files["hello.txt"] = b"captured over the network by Lifeboat\n"
    return files


def _table(dump: str) -> list[str]:
    """The identifiers of an `sfdisk --dump`: label, label-id, and each partition's start, size, type, GUID
    and name (without the device names, which differ between the image file and the guest's disk)."""
    keep = []
    for line in dump.splitlines():
        if line.startswith(("label:", "label-id:")):
            keep.append(line.strip())
        elif "start=" in line:
            keep.append(line.split(":", 1)[1].strip())
    return keep


def _jobs_disk(path: Path, ssh, password: str) -> Path:
    """An ext4 disk labelled LBJOBS: the SMB credentials, and two job directories for the ssh:// capture, one
    with lifeboat-known_hosts beside the job file and one without. Modes 0600 are kept by mkfs -d."""
    content = path.parent / "jobs"
    port, root = ssh.port, ssh.extra["root"]
    key = ssh.extra["home"] / ".ssh" / "id_ed25519"
    (content / "smb.cred").parent.mkdir(parents=True)
    (content / "smb.cred").write_text(f"username=tech\npassword={password}\n")
    for name, image, known in (("ssh", "ssh-unattended", True), ("stranger", "refused", False)):
        d = content / name
        d.mkdir()
        (d / "lifeboat-job.conf").write_text(
            f"lifeboat.job=capture\nlifeboat.image={image}\nlifeboat.source=SERIAL=LB-SOURCE\n"
            f"lifeboat.repo=ssh://root@{GUEST}:{port}{root}/lab\n")
        (d / "lifeboat-credentials").write_text("identity_file = id_ed25519\n")
        shutil.copy(key, d / "id_ed25519")
        if known:
            (d / "lifeboat-known_hosts").write_text(f"[{GUEST}]:{port} {ssh.extra['host_key']}\n")
        (content / f"{name}.cmdline").write_text(f"lifeboat.job=file lifeboat.repo=LABEL=LBJOBS lifeboat.repodir={name}\n")
    for f in content.rglob("*"):
        if f.is_file() and f.name in ("smb.cred", "lifeboat-credentials", "id_ed25519"):
            f.chmod(0o600)
    blank_disk(path, 16)
    run(["mkfs.ext4", "-q", "-F", "-L", "LBJOBS", "-d", str(content), str(path)])
    return path


def _round_trip(vm, scheme: str, url: str, creds: str, target: str) -> tuple[str, str]:
    """Capture LB-SOURCE into `url` and restore it onto `target` in the guest; returns both commands' output."""
    image = f"{scheme}-img"
    rc, captured = shell(vm, f"lifeboat -v capture /dev/disk/by-id/virtio-LB-SOURCE {image} --repo {url} {creds} 2>&1",
                         timeout=900)
    assert rc == 0, f"capture to {url} failed:\n{captured}"
    rc, restored = shell(vm, f"lifeboat restore {image} /dev/disk/by-id/virtio-{target} --repo {url} {creds} "
                             "--yes --no-bootloader 2>&1", timeout=900)
    if rc != 0:
        _, mounts = shell(vm, "findmnt -t cifs,smb3,nfs,nfs4; cat /proc/fs/nfsfs/volumes 2>/dev/null")
        raise AssertionError(f"restore from {url} failed:\n{restored}\nnetwork mounts left:\n{mounts}")
    return captured, restored


def _restored_disk(vm, target: str) -> tuple[list[str], str, dict[str, str]]:
    """(table identifiers, ext4 UUID, {file: sha256}) of the restored disk, read in the guest."""
    rc, dump = shell(vm, f"sfdisk --dump /dev/disk/by-id/virtio-{target}")
    assert rc == 0, dump
    rc, out = shell(vm, f"D=$(readlink -f /dev/disk/by-id/virtio-{target}); partx -u $D; udevadm settle; "
                        f"blkid -o value -s UUID ${{D}}1; mkdir -p /mnt/t && mount -o ro ${{D}}1 /mnt/t && "
                        "(cd /mnt/t && find . -type f ! -path './lost+found/*' -exec sha256sum {} +); umount /mnt/t")
    assert rc == 0, out
    lines = out.strip().splitlines()
    hashes = {}
    for line in lines[1:]:
        digest, name = line.split(maxsplit=1)
        hashes[name.removeprefix("./")] = digest
    return _table(dump), lines[0].strip(), hashes


def _host_hashes(files: dict[str, bytes]) -> dict[str, str]:
    import hashlib

    return {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}


def _secrets_seen(vm) -> str:
    """Where the guest shows the SMB password: the process samples, journal, dmesg, files (the pattern is
    read from the credentials file, so the password is never typed on the console)."""
    rc, out = shell(vm, "kill $(cat /run/ps-sampler.pid); sed -n 's/^password=//p' /mnt/jobs/smb.cred > /mnt/jobs/pw.pat; "
                        "echo samples=$(grep -c . /run/ps.log); "
                        "{ cat /run/ps.log; journalctl -b --no-pager; dmesg; } | grep -c -F -f /mnt/jobs/pw.pat; "
                        "grep -rlsF -D skip --exclude-dir=live -f /mnt/jobs/pw.pat /run /tmp /var/log /root; true", timeout=300)
    return out


def test_smb_and_nfs_round_trips_and_an_unattended_ssh_capture_in_the_live_system(live_iso, live_kernel,
                                                                                   lifeboat_version, tmp_path):
    password = "Lb-" + secrets.token_hex(10)
    files = _source_files()
    source = ext4_disk_with_files(tmp_path / "source.img", DISK_MIB, files)
    source_table = _table(run(["sfdisk", "--dump", str(source)]).stdout)
    source_uuid = run(["blkid", "-p", "-O", str(1 << 20), "-o", "value", "-s", "UUID", str(source)]).stdout.strip()
    servers = []
    try:
        smb = samba(tmp_path / "smb", tmp_path / "smbshare", password, max_protocol="SMB3_00")
        servers.append(smb.start())
        nfs = ganesha(tmp_path / "nfs", tmp_path / "nfsexport")
        servers.append(nfs.start())
        ssh = sshd(tmp_path / "ssh")
        servers.append(ssh.start())
        for share in (tmp_path / "smbshare", tmp_path / "nfsexport"):
            (share / "lab").mkdir()
        jobs = _jobs_disk(tmp_path / "jobs.img", ssh, password)
        drives = [
            qemu.Drive(live_iso, "sata", media="cdrom"),
            qemu.Drive(source, "virtio", serial="LB-SOURCE", snapshot=True),
            qemu.Drive(blank_disk(tmp_path / "smb-target.img", DISK_MIB), "virtio", serial="LB-T-SMB"),
            qemu.Drive(blank_disk(tmp_path / "nfs-target.img", DISK_MIB), "virtio", serial="LB-T-NFS"),
            qemu.Drive(jobs, "virtio", serial="LB-JOBS"),
        ]
        kernel, initrd = live_kernel
        # ttyS0 last but one: tty1 runs the TUI, ttyS0 a root shell
        append = f"{LIVE_APPEND} console=ttyS0,115200 console=tty0"
        with qemu.Machine(drives, firmware="bios", workdir=tmp_path, memory=1536, kernel=kernel, initrd=initrd,
                          append=append, network=True, name="netrepos") as vm:
            vm.wait_for(ready_pattern(lifeboat_version, "ttyS0", "shell"), BOOT_TIMEOUT)
            print(f"\nnetwork repositories: the live system's shell after {vm.elapsed():.0f} s")
            rc, out = shell(vm, "mkdir -p /mnt/jobs && mount /dev/disk/by-label/LBJOBS /mnt/jobs && "
                                "{ (while :; do ps -eo args; sleep 0.2; done) >/run/ps.log 2>&1 & echo $! >/run/ps-sampler.pid; }")
            assert rc == 0, out
            # the interface gets its address by DHCP after the shell is up (ifupdown's hotplug): under load that
            # took longer than the first mount once (cifs: -101, network unreachable), so wait for the route
            rc, out = shell(vm, "for i in $(seq 120); do ip route | grep -q '^default' && break; sleep 1; done;"
                                " ip route | grep '^default'", timeout=180)
            assert rc == 0, f"the live system got no default route:\n{out}"

            smb_url = f"smb://tech@{GUEST}:{smb.port}/share/lab"
            smb_capture, smb_restore = _round_trip(vm, "smb", smb_url, "--credentials /mnt/jobs/smb.cred", "LB-T-SMB")
            print(f"smb round trip done after {vm.elapsed():.0f} s")
            nfs_url = f"nfs://{GUEST}:{nfs.port}/export/lab"
            nfs_capture, nfs_restore = _round_trip(vm, "nfs", nfs_url, "", "LB-T-NFS")
            print(f"nfs round trip done after {vm.elapsed():.0f} s")
            seen = _secrets_seen(vm)

            rc, unattended_ok = shell(vm, "lifeboat unattended --cmdline /mnt/jobs/ssh.cmdline 2>&1", timeout=900)
            rc2, unattended_refused = shell(vm, "lifeboat unattended --cmdline /mnt/jobs/stranger.cmdline 2>&1",
                                            timeout=300)
            print(f"unattended ssh jobs done after {vm.elapsed():.0f} s")
            restored = {t: _restored_disk(vm, t) for t in ("LB-T-SMB", "LB-T-NFS")}
            serial = vm.output
    finally:
        for server in reversed(servers):
            server.stop()

    # the negotiated version is shown: the server stops at SMB 3.0, so 3.1.1 was refused and 3.0 taken
    for out in (smb_capture, smb_restore):
        assert f"repository {smb_url} (SMB protocol 3.0) mounted at" in out, out
    for out in (nfs_capture, nfs_restore):
        # the server offers 4.1 at most (netservers.ganesha): 4.2 refused, 4.1 taken and shown
        assert f"repository {nfs_url} (NFS protocol 4.1) mounted at" in out, out
    # mount.cifs had the password from a credentials file
    assert "credentials=/run/lifeboat-cred-" in smb_capture, smb_capture
    # the progress lines show the network's rate beside the disk's, and what went over the network in the end
    for capture, restore in ((smb_capture, smb_restore), (nfs_capture, nfs_restore)):
        # (a disk of three chunks: all may be fetched before the restore's first event, so one line of either)
        assert re.search(r"\| network in [\d.]+ \S+/s out [\d.]+ \S+/s", capture + restore), capture + restore
        assert re.search(r"network: [\d.]+ \S+ received, [\d.]+ (KiB|MiB) sent", capture), capture
        assert re.search(r"network: [\d.]+ (KiB|MiB) received", restore), restore
    # the images are in the shares' directories on the host
    assert (tmp_path / "smbshare" / "lab" / "images" / "smb-img" / "manifest.json").is_file()
    assert (tmp_path / "nfsexport" / "lab" / "images" / "nfs-img" / "manifest.json").is_file()
    for target, (table, uuid, hashes) in restored.items():
        assert table == source_table, f"{target}: {table} != {source_table}"
        assert uuid == source_uuid, f"{target}: filesystem UUID {uuid} != {source_uuid}"
        assert hashes == _host_hashes(files), f"{target}: file hashes differ"

    # the password appears nowhere: process list samples, journal, dmesg, files, serial console
    m = re.search(r"samples=(\d+)\s+(\d+)\s*(.*)", seen, re.S)
    assert m and int(m.group(1)) > 100, f"the process list was not sampled:\n{seen}"
    assert m.group(2) == "0" and not m.group(3).strip(), f"the password was seen in the guest:\n{seen}"
    assert password not in serial

    # unattended: the ssh:// capture with the known host key worked, the one without was refused naming the key
    ok = RESULT_RE.search(unattended_ok)
    assert rc == 0 and ok and ok.group(0).startswith("LIFEBOAT-RESULT: OK job=capture image=ssh-unattended"), \
        unattended_ok
    fingerprint = run(["ssh-keygen", "-l", "-f", str(tmp_path / "ssh" / "host_key.pub")]).stdout.split()[1]
    refused = RESULT_RE.search(unattended_refused)
    assert rc2 != 0 and refused and refused.group(0).startswith("LIFEBOAT-RESULT: FAILED job=capture image=refused"), \
        unattended_refused
    assert "not known" in refused.group(0) and fingerprint in refused.group(0), (fingerprint, refused.group(0))
    proc = subprocess.run([str(ROOT / ".venv" / "bin" / "lifeboat"), "verify", "ssh-unattended",
                           "--repo", str(ssh.extra["root"] / "lab")],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"the host could not verify the unattended ssh:// capture:\n{proc.stdout}\n{proc.stderr}"
