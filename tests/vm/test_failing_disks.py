"""A dying disk, a pulled stick and a pulled plug, in the live ISO (issue 13), in one boot:

1. `lifeboat disks --json` shows the NVMe disk's SMART health as QEMU's NVMe controller reports it.
2. A source disk whose reads fail at chosen sectors (QEMU's blkdebug driver: every read that touches an
   injected sector fails with EIO, as a disk with unreadable sectors does) is captured with `--rescue`:
   the image records exactly the injected sectors as unreadable and names exactly the two files they hit.
3. The USB stick holding the repository is pulled (QMP `device_del`) while a capture writes to it: the
   capture ends within seconds with an error naming the lost disk, no traceback.
4. A restore of a bootable disk onto the NVMe disk is under way (held at its 3rd chunk by the crash-point
   hook so that the power cut lands mid-restore) when the guest's power is cut (QEMU killed). On the host
   the target carries the incomplete-restore marker naming the image, `lifeboat disks` lists it so, and
   the disk does not boot.

The host kernel here has no USB or NVMe devices to pull and no way to fail reads at a sector of a real
device node inside a guest: QEMU provides all three. TCG only; QEMU killed by PID.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

import bootdisk
import bootvm
import qemu
from iso_helpers import (BOOT_TIMEOUT, LIVE_APPEND, blank_disk, ext4_whole_disk, gpt_disk_holding, guest_disks, partition_file,
                         ready_pattern, run, shell)

pytestmark = [*qemu.vm_marks("needs root (loop devices, loop mounts)"), pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
APPEND = f"{LIVE_APPEND} console=ttyS0,115200 console=tty0"
BLOCK = 4096
PART_START = 1 << 20  # gpt_disk_holding puts the one partition at 1 MiB
DAMAGED = {"docs/x.bin": (5, 1), "photos/y.bin": (2, 7)}  # file -> (its block, the sector inside that block)
REPO_LABEL, STICK_LABEL = "LBDMGREPO", "LBDMGSTICK"


def _damaged_source(workdir: Path) -> tuple[Path, list[tuple[int, int]], Path]:
    """A GPT disk with one ext4 partition holding DAMAGED's files and others; the blkdebug config that
    fails reads of one sector inside each damaged file; the unreadable ranges (bytes from the partition's
    start) the rescue must record."""
    content = workdir / "content"
    for name in (*DAMAGED, "docs/fine.txt", "photos/z.bin"):
        (content / name).parent.mkdir(parents=True, exist_ok=True)
        (content / name).write_bytes(os.urandom(BLOCK * 16))
    disk = workdir / "damaged.img"
    part = partition_file(disk, 48)
    run(["mkfs.ext4", "-q", "-F", "-b", str(BLOCK), "-L", "lbdamaged", "-d", str(content), str(part)])
    lost, rules = [], []
    for name, (block, sector) in DAMAGED.items():
        out = run(["debugfs", "-R", f"bmap /{name} {block}", str(part)]).stdout
        offset = int(out.split()[-1]) * BLOCK + sector * 512
        lost.append((offset, 512))
        rules.append(f'[inject-error]\nevent = "read_aio"\nerrno = "5"\nsector = "{(PART_START + offset) // 512}"\n')
    gpt_disk_holding(disk, part, 48)
    conf = workdir / "blkdebug.conf"
    conf.write_text("\n".join(rules))
    return disk, sorted(lost), conf


class Qmp:
    """The few QMP commands this test sends (device_del), over QEMU's unix socket."""

    def __init__(self, path: Path):
        self.sock = socket.socket(socket.AF_UNIX)
        deadline = time.monotonic() + 30
        while True:
            try:
                self.sock.connect(str(path))
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self.file = self.sock.makefile("rw")
        json.loads(self.file.readline())  # the greeting
        self.command("qmp_capabilities")

    def command(self, name: str, **arguments) -> dict:
        self.file.write(json.dumps({"execute": name, "arguments": arguments}) + "\n")
        self.file.flush()
        while True:
            reply = json.loads(self.file.readline())
            if "return" in reply or "error" in reply:
                assert "error" not in reply, reply
                return reply

    def close(self) -> None:
        self.sock.close()


def _wait_stopped(vm, pid: str) -> None:
    for _ in range(120):
        rc, state = shell(vm, f"sed -n 's/^State:\\s*\\(.\\).*/\\1/p' /proc/{pid}/status")
        if state.strip() == "T":
            return
        assert rc == 0 and state.strip(), f"the job {pid} is gone before its stop point"
        time.sleep(2)
    raise AssertionError(f"the job {pid} never reached its stop point")


def _repo_with_fixture(workdir: Path, fixture: Path) -> Path:
    repo = ext4_whole_disk(workdir / "repo.img", 256, label=REPO_LABEL)
    with tempfile.TemporaryDirectory() as mnt:
        bootdisk.sh("mount", "-o", "loop", repo, mnt)
        try:
            bootvm.capture(fixture, "fixture", Path(mnt))
        finally:
            bootdisk.sh("umount", mnt)
    return repo


def _load_manifest(repo_image: Path, name: str):
    from lifeboat.repo.manifest import load_manifest
    from lifeboat.repo.store import Repository

    with tempfile.TemporaryDirectory() as mnt:
        bootdisk.sh("mount", "-o", "loop", repo_image, mnt)  # rw: the journal of a guest whose plug was pulled replays
        try:
            return load_manifest(Repository.open(Path(mnt)), name)
        finally:
            bootdisk.sh("umount", mnt)


def test_failing_source_pulled_stick_and_power_cut_in_the_live_iso(live_iso, live_kernel, lifeboat_version,
                                                                    tmp_path):
    fixture = bootdisk.fixture_disk("mbr")
    source, lost, conf = _damaged_source(tmp_path)
    repo = _repo_with_fixture(tmp_path, fixture)
    stick = ext4_whole_disk(tmp_path / "stick.img", 96, label=STICK_LABEL)
    target = blank_disk(tmp_path / "target.img", 2 * fixture.stat().st_size >> 20)
    qmp_path = tmp_path / "qmp.sock"
    kernel, initrd = live_kernel
    drives = [
        qemu.Drive(live_iso, "sata", media="cdrom"),
        qemu.Drive(repo, "virtio", serial="LB-REPO"),
        qemu.Drive(fixture, "virtio", serial="LB-FIXTURE", snapshot=True),
        qemu.Drive(target, "nvme", serial="LB-NVME"),
    ]
    extra = [
        "-drive", f"file=blkdebug:{conf}:{source},if=none,id=damaged,format=raw,readonly=on",
        "-device", "virtio-blk-pci,drive=damaged,serial=LB-DAMAGED",
        "-device", "qemu-xhci,id=xhci",
        "-drive", f"file={stick},if=none,id=stick,format=raw,cache=unsafe",
        "-device", "usb-storage,drive=stick,bus=xhci.0,id=stickdev,serial=LB-STICK",
        "-qmp", f"unix:{qmp_path},server=on,wait=off",
    ]
    with qemu.Machine(drives, firmware="bios", workdir=tmp_path, memory=1536, kernel=kernel, initrd=initrd,
                      append=APPEND, extra_args=extra, name="failing") as vm:
        vm.wait_for(ready_pattern(lifeboat_version, "ttyS0", "shell"), BOOT_TIMEOUT)
        time.sleep(2)  # let the shell print its prompt before we type

        # 1. SMART health of QEMU's NVMe disk
        listed = {d.get("serial"): d for d in guest_disks(vm)}
        nvme = listed["LB-NVME"]["path"]
        health = listed["LB-NVME"]["health"]
        assert health["status"] == "passed" and health["media_errors"] == 0, health
        assert health["percentage_used"] is not None and health["critical_warning"] == 0, health

        # 2. rescue capture of the disk with unreadable sectors
        rc, out = shell(vm, f"mkdir -p /mnt/repo /mnt/stick && mount LABEL={REPO_LABEL} /mnt/repo && "
                            f"mount LABEL={STICK_LABEL} /mnt/stick && readlink -f /dev/disk/by-label/{STICK_LABEL}")
        assert rc == 0, out
        stick_node = out.strip().splitlines()[-1]
        rc, out = shell(vm, "lifeboat capture /dev/disk/by-id/virtio-LB-DAMAGED damaged --repo /mnt/repo "
                            "--rescue 2>&1 | tail -n 30", timeout=600)
        assert rc == 0 and "INCOMPLETE" in out and "/docs/x.bin" in out and "/photos/y.bin" in out, out
        assert re.search(r"\| \d+ read errors", out), out  # the progress line counted them

        # 3. the repository's USB stick pulled mid-capture
        rc, pid = shell(vm, "LIFEBOAT_TEST_STOP_AT=capture-chunk:2 lifeboat capture "
                            "/dev/disk/by-id/virtio-LB-FIXTURE pulled --repo /mnt/stick/repo "
                            ">/tmp/pulled.log 2>&1 & echo $!")
        pid = pid.strip().splitlines()[-1]
        _wait_stopped(vm, pid)
        qmp = Qmp(qmp_path)
        try:
            qmp.command("device_del", id="stickdev")
        finally:
            qmp.close()
        time.sleep(2)
        started = time.monotonic()
        rc, out = shell(vm, f"kill -CONT {pid}; wait {pid}; echo job-exit=$?; cat /tmp/pulled.log", timeout=300)
        seconds = time.monotonic() - started
        assert "job-exit=1" in out and "Traceback" not in out, out
        assert stick_node in out, f"the error does not name {stick_node}:\n{out}"
        print(f"\ncapture noticed the pulled USB stick in {seconds:.1f} s (guest under TCG): {out.strip()[-300:]}")

        # 4. the power cut mid-restore
        rc, pid = shell(vm, f"LIFEBOAT_TEST_STOP_AT=restore-chunk:3 lifeboat restore fixture {nvme} "
                            "--repo /mnt/repo --yes >/tmp/restore.log 2>&1 & echo $!")
        pid = pid.strip().splitlines()[-1]
        _wait_stopped(vm, pid)
        os.kill(vm.proc.pid, signal.SIGKILL)  # the plug
        vm.proc.wait(timeout=30)

    manifest = _load_manifest(repo, "damaged")
    stream = manifest.partitions[0].stream
    assert [(r.offset, r.length) for r in stream.unreadable] == lost  # to the sector
    assert sorted(stream.unreadable_files) == sorted(f"/{name}" for name in DAMAGED)

    from lifeboat.engine.restore_marker import read_marker

    marker = read_marker(str(target))
    assert marker is not None and marker.image == "fixture", marker
    with bootdisk.loop_device(target, readonly=True) as dev:
        disks = json.loads(subprocess.run([str(ROOT / ".venv" / "bin" / "lifeboat"), "disks", "--loop", "--json"],
                                          check=True, capture_output=True, text=True).stdout)
        listed = next(d for d in disks if d["path"] == dev)
        assert "incomplete restore of image 'fixture'" in listed["incomplete_restore"], listed
    bootvm.does_not_boot(target, "nvme", "bios", tmp_path, "power-cut", window=40)
