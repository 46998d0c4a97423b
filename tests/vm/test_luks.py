"""LUKS in the live ISO: this host has no device-mapper, so cryptsetup opens containers only in a guest. One
boot: the guest makes a GPT disk whose one partition is a LUKS2 container (luksFormat with a test passphrase)
holding ext4 with files, `lifeboat capture`s it with --luks-passphrase-file (the container opened read-only,
its ext4 imaged by used blocks, its header backed up), is refused a restore with a wrong passphrase before
anything is written, then `lifeboat restore`s it onto a disk twice the size. The guest then shows, over the
serial console: the same LUKS UUID, the passphrase opening the restored container, the same ext4 UUID, the
filesystem grown, the files' hashes equal, fsck clean, no mapping left open; and the passphrase in no `ps`
line sampled while capture and restore ran, nor in the manifest or the logs (-v: every command logged).
The same boot then captures and restores the Debian installer's "guided encrypted LVM" layout (LVM inside
LUKS: luks_lvm.py) on two disks of its own.
"""

from __future__ import annotations

import json
import time

import pytest

from iso_helpers import BOOT_TIMEOUT, blank_disk, ext4_whole_disk, ready_pattern, shell, wait_for_all
from qemu import Machine, Drive

import luks_lvm

pytestmark = [pytest.mark.vm, pytest.mark.timeout(1800)]

MIB = 1 << 20
S, T = "/dev/disk/by-id/virtio-LBSOURCE", "/dev/disk/by-id/virtio-LBTARGET"
REPO = "/mnt/repo/images"
SECRET = "Lb-Secret-4711-xyzzy"  # the test passphrase: searched for in ps, the manifest and the logs
KEY, WRONG = "/root/luks.key", "/root/wrong.key"
FORMAT = ("cryptsetup luksFormat -q --type luks2 --pbkdf argon2id --pbkdf-memory 32768 --pbkdf-force-iterations 4"
          f" --label lbcrypt --key-file={KEY}")  # a cheap key derivation: TCG is slow
BUILD = (
    f"printf %s '{SECRET}' >{KEY} && printf %s 'not-the-passphrase' >{WRONG} && chmod 600 {KEY} {WRONG}"
    f" && sgdisk -n 1:2048:0 -t 1:8309 {S} >/dev/null && partx -u {S} && udevadm settle"
    f" && {FORMAT} {S}-part1 && cryptsetup open --key-file={KEY} {S}-part1 lbsrc"
    " && mkfs.ext4 -q -L lbinner /dev/mapper/lbsrc && mkdir -p /mnt/c && mount /dev/mapper/lbsrc /mnt/c"
    " && head -c 16M /dev/urandom >/mnt/c/a.bin && mkdir /mnt/c/etc && echo lifeboat-luks >/mnt/c/etc/hostname"
    " && sync"
)
SUMS = "(cd /mnt/c && sha256sum a.bin etc/hostname)"
FSIZE = "df -B1 --output=size /mnt/c | tail -1"
# `ps` sampled every 0.5 s while the command runs (ps itself reads every process's argv from /proc)
SAMPLED = ("rm -f /tmp/ps.log /tmp/done; (while [ ! -e /tmp/done ]; do ps -eo args >>/tmp/ps.log; sleep 0.5; done) & "
           "{command} >/tmp/{log} 2>&1; rc=$?; touch /tmp/done; wait; "
           "echo SAMPLES $(grep -c '^COMMAND' /tmp/ps.log) CRYPTSETUP $(grep -c 'cryptsetup' /tmp/ps.log)"
           f" SECRET-IN-PS $(grep -c -- '{SECRET}' /tmp/ps.log); "
           "grep -v '%' /tmp/{log} | grep -v '^+ \\|time per stage' | tail -30; (exit $rc)")


def _ok(vm: Machine, command: str, timeout: float = 300) -> str:
    rc, out = shell(vm, command, timeout)
    assert rc == 0, f"{command}\n-> rc {rc}:\n{out}"
    return out


def _sampled(vm: Machine, command: str, log: str) -> str:
    """Run `command` while sampling `ps`; asserts the passphrase was in no sampled line."""
    started = time.monotonic()
    out = _ok(vm, SAMPLED.format(command=command, log=log), timeout=900)
    print(f"{log.split('.')[0]} in the guest: {time.monotonic() - started:.0f} s\n{out}")
    counts = out.split("SAMPLES ", 1)[1].split()
    samples, cryptsetups, secret = int(counts[0]), int(counts[2]), int(counts[4])
    assert samples >= 3 and secret == 0, out  # sampled, and never there
    return out


def test_luks_capture_with_passphrase_then_restore_onto_a_larger_disk(live_iso, lifeboat_version, tmp_path):
    disks = [
        Drive(live_iso, "sata", media="cdrom", bootindex=0),
        Drive(blank_disk(tmp_path / "source.img", 320), "virtio", serial="LBSOURCE"),
        Drive(blank_disk(tmp_path / "target.img", 640), "virtio", serial="LBTARGET"),
        Drive(ext4_whole_disk(tmp_path / "repo.img", 256, label="LBREPO"), "virtio", serial="LBREPO"),
        *luks_lvm.drives(blank_disk, tmp_path),
    ]
    with Machine(disks, firmware="bios", workdir=tmp_path, memory=1536, name="luks") as vm:
        wait_for_all(vm, [ready_pattern(lifeboat_version, "ttyS0", "shell")], BOOT_TIMEOUT)
        time.sleep(2)
        scenario(vm, "lifeboat")
        _ok(vm, "mount LABEL=LBREPO /mnt/repo")  # the same boot: LVM inside LUKS (luks_lvm.py)
        luks_lvm.scenario(vm, "lifeboat", KEY, WRONG)
        _ok(vm, "umount /mnt/repo")


def scenario(vm: Machine, lifeboat: str) -> None:
    """Everything after the boot (disks by serial: LBSOURCE, LBTARGET, LBREPO); `lifeboat`: the command."""
    _ok(vm, BUILD)
    sums, size_before = _ok(vm, SUMS), int(_ok(vm, FSIZE))
    fs_uuid = _ok(vm, "blkid -p -o value -s UUID /dev/mapper/lbsrc").strip()
    _ok(vm, "umount /mnt/c && cryptsetup close lbsrc && mkdir -p /mnt/repo && mount LABEL=LBREPO /mnt/repo")
    luks_uuid = _ok(vm, f"cryptsetup luksUUID {S}-part1").strip()
    container = int(_ok(vm, f"blockdev --getsize64 {S}-part1"))

    rc, out = shell(vm, f"{lifeboat} capture {S} wrong --repo {REPO} --luks-passphrase-file {WRONG} 2>&1 | tail -3",
                    timeout=300)
    assert "wrong passphrase" in out and "partition 1" in out, out

    # the repository is not encrypted: the decrypted contents go there only when allowed
    rc, out = shell(vm, f"{lifeboat} capture {S} plain --repo {REPO} --luks-passphrase-file {KEY} </dev/null 2>&1 "
                        f"| grep -A3 'error:'; test -e {REPO}/images/plain || echo NOTHING-STORED", timeout=300)
    assert "would be stored decrypted" in out and "--allow-plaintext" in out and "NOTHING-STORED" in out, out
    out = _sampled(vm, f"{lifeboat} -v capture {S} luks --repo {REPO} --luks-passphrase-file {KEY} --allow-plaintext",
                   "capture.log")
    assert "LUKS2 container (aes-xts-plain64" in out and "opened read-only" in out, out
    assert "lifeboat-luks" not in _ok(vm, "dmsetup ls"), "the capture left its mapping open"
    stored = int(_ok(vm, f"du -sb {REPO}/chunks | cut -f1"))
    manifest = json.loads(_ok(vm, f"cat {REPO}/images/luks/manifest.json"))
    (part,) = manifest["partitions"]
    content = part["content"]
    assert content["kind"] == "luks" and content["uuid"] == luks_uuid and content["version"] == 2, content
    assert content["header"]["length"] >= 16 * MIB and "decrypts" in content["sensitive"], content
    inner = content["inner"]
    assert inner["kind"] == "filesystem" and inner["fstype"] == "ext4" and inner["uuid"] == fs_uuid, inner
    assert 16 * MIB < inner["stream"]["used_bytes"] < container // 4, inner  # by used blocks, not whole
    assert stored < container // 3, (stored, container)  # data + metadata + a 16 MiB header, of 318 MiB
    print(f"container {container} bytes, ext4 used {inner['stream']['used_bytes']}, repository chunks {stored}")
    _ok(vm, f"! grep -r -l -- '{SECRET}' {REPO} /tmp/capture.log")

    rc, out = shell(vm, f"{lifeboat} restore luks {T} --repo {REPO} --luks-passphrase-file {WRONG} --yes "
                        f"--no-bootloader 2>&1 | tail -3; cmp -n 4194304 {T} /dev/zero && echo TARGET-UNTOUCHED",
                    timeout=300)
    assert "wrong passphrase" in out and "partition 1" in out and "TARGET-UNTOUCHED" in out, out

    out = _sampled(vm, f"{lifeboat} -v restore luks {T} --repo {REPO} --luks-passphrase-file {KEY} --yes "
                       "--no-bootloader", "restore.log")
    assert "LUKS2 container (aes-xts-plain64" in out and "re-created from its header backup" in out, out
    assert "lifeboat-luks" not in _ok(vm, "dmsetup ls"), "the restore left its mapping open"
    _ok(vm, f"! grep -- '{SECRET}' /tmp/restore.log")

    assert _ok(vm, f"cryptsetup luksUUID {T}-part1").strip() == luks_uuid
    _ok(vm, f"cryptsetup open --key-file={KEY} {T}-part1 lbdst && e2fsck -fn /dev/mapper/lbdst")
    assert _ok(vm, "blkid -p -o value -s UUID /dev/mapper/lbdst").strip() == fs_uuid
    _ok(vm, "mount /dev/mapper/lbdst /mnt/c")
    assert _ok(vm, SUMS) == sums
    size_after = int(_ok(vm, FSIZE))
    assert size_after > 1.8 * size_before, (size_before, size_after)
    _ok(vm, "umount /mnt/c && cryptsetup close lbdst && umount /mnt/repo")
