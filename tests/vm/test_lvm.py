"""LVM in the live ISO: this host has no device-mapper, so lvm2 runs only in a guest. One boot: the guest
builds a GPT disk whose PV holds a volume group with an ext4, an xfs and a btrfs data volume and a swap
volume, fills them, `lifeboat capture`s it, is refused a restore while the group's name is taken on the
source disk, then (the source's PV label wiped, as if that disk had gone) `lifeboat restore`s it onto a disk
twice the size. The guest then shows, over the serial console: the PV, VG and LV UUIDs, names and tags as
captured, the data volumes and their filesystems grown, the swap volume kept with its UUID, the files'
hashes equal, fsck clean, and no volume left active after either job.

In the same boot the image then goes onto smaller disks than its layout: onto one too small for its data it
is refused before anything is written, naming the volumes' minimums and the shortfall; onto one about 87 %
of the source's size (that larger target's PV wiped in turn) the PV and the data volumes shrink: ext4 and
btrfs shrunk in place, xfs made anew and its files copied; the PV, VG, LV and filesystem UUIDs and labels,
the files' hashes and fsck stay as captured. Last, `--partitions lbvg/root` restores that one volume onto
the smaller disk's own group (shrunk again), its other volumes and the group's metadata kept.

The same boot restores the Clonezilla image of an LVM disk made by the real Clonezilla (czlvm_restore.py),
and shows, copies whole and restores an MD RAID1 member made with mdadm (md_member.py).
"""

from __future__ import annotations

import json
import time

import pytest

from iso_helpers import BOOT_TIMEOUT, blank_disk, ready_pattern, shell, wait_for_all
from qemu import Drive, Machine

import czlvm_restore
import md_member

pytestmark = [pytest.mark.vm, pytest.mark.timeout(1800)]

MIB = 1 << 20
S, T = "/dev/disk/by-id/virtio-LBSOURCE", "/dev/disk/by-id/virtio-LBTARGET"
SMALL, TINY = "/dev/disk/by-id/virtio-LBSMALL", "/dev/disk/by-id/virtio-LBTINY"
SOURCE_MIB, SMALL_MIB, TINY_MIB = 832, 720, 560  # the volumes' minimums need about 670 MiB
REPO = "/mnt/repo/images"
BUILD = (
    f"sgdisk -n 1:2048:+16M -t 1:ef00 -n 2:0:0 -t 2:8e00 {S} >/dev/null && partx -u {S} && udevadm settle"
    f" && pvcreate -q {S}-part2 && vgcreate -q --addtag site-a lbvg {S}-part2"
    " && lvcreate -q -y -n root -L 96M --addtag role-root lbvg && lvcreate -q -y -n data -L 304M lbvg"
    " && lvcreate -q -y -n swap -L 32M lbvg && lvcreate -q -y -n vol -L 320M lbvg"
    " && lvextend -q -L +16M lbvg/root"  # root in two segments
    " && mkfs.ext4 -q -L lbroot /dev/lbvg/root && mkfs.xfs -q -L lbdata /dev/lbvg/data"
    " && mkfs.btrfs -q -L lbvol /dev/lbvg/vol && mkswap -L lbswap /dev/lbvg/swap >/dev/null"
)
FILL = (
    "mkdir -p /mnt/r /mnt/d /mnt/v && mount /dev/lbvg/root /mnt/r && mount /dev/lbvg/data /mnt/d"
    " && mount /dev/lbvg/vol /mnt/v"
    " && head -c 20M /dev/urandom >/mnt/r/a.bin && mkdir /mnt/r/etc && echo lifeboat-lvm >/mnt/r/etc/hostname"
    " && head -c 30M /dev/urandom >/mnt/d/b.bin && echo hello >/mnt/d/hello.txt"
    " && head -c 12M /dev/urandom >/mnt/v/c.bin && mkdir /mnt/v/sub && echo deep >/mnt/v/sub/deep.txt && sync"
)
MOUNT = "mount /dev/lbvg/root /mnt/r && mount /dev/lbvg/data /mnt/d && mount /dev/lbvg/vol /mnt/v"
SUMS = ("(cd /mnt/r && sha256sum a.bin etc/hostname; cd /mnt/d && sha256sum b.bin hello.txt;"
        " cd /mnt/v && sha256sum c.bin sub/deep.txt)")
FS_IDS = "for v in root data vol swap; do echo $v; blkid -p -o export /dev/lbvg/$v | grep -E '^(UUID|LABEL)='; done"
FSCK = "e2fsck -fn /dev/lbvg/root && xfs_repair -n /dev/lbvg/data && btrfs check --readonly /dev/lbvg/vol"
FSIZE = "df -B1 --output=size /mnt/r /mnt/d | tail -2 | tr '\\n' ' '"
REPORT = "--reportformat json --units b --nosuffix -o vg_name,vg_uuid,vg_tags,lv_name,lv_uuid,lv_tags,lv_size,lv_active"


def _ok(vm: Machine, command: str, timeout: float = 300) -> str:
    rc, out = shell(vm, command, timeout)
    assert rc == 0, f"{command}\n-> rc {rc}:\n{out}"
    return out


def _volumes(vm: Machine, pv: str) -> dict[str, dict]:
    """lvs of the group on `pv` (the VG's and the PV's fields in each LV's row), by LV name."""
    out = _ok(vm, f"lvs --devices {pv} {REPORT}")
    rows = json.loads(out[out.index("{"):])["report"][0]["lv"]
    pv_uuid = _ok(vm, f"pvs --devices {pv} --noheadings -o pv_uuid").strip()
    return {row["lv_name"]: {**row, "pv_uuid": pv_uuid} for row in rows}


def _nothing_active(vm: Machine, pv: str, when: str) -> None:
    out = _ok(vm, f"dmsetup ls; lvs --devices {pv} --noheadings -o lv_name,lv_active")
    assert "No devices found" in out and " active" not in out, f"volumes left active after {when}:\n{out}"


def test_lvm_capture_then_restore_onto_a_larger_and_a_smaller_disk(live_iso, lifeboat_version, tmp_path):
    disks = [
        Drive(live_iso, "sata", media="cdrom", bootindex=0),
        Drive(blank_disk(tmp_path / "source.img", SOURCE_MIB), "virtio", serial="LBSOURCE"),
        Drive(blank_disk(tmp_path / "target.img", 2 * SOURCE_MIB), "virtio", serial="LBTARGET"),
        Drive(czlvm_restore.repo_disk(tmp_path / "repo.img", 512, "LBREPO", live_iso, tmp_path), "virtio",
              serial="LBREPO"),
        Drive(blank_disk(tmp_path / "small.img", SMALL_MIB), "virtio", serial="LBSMALL"),
        Drive(blank_disk(tmp_path / "tiny.img", TINY_MIB), "virtio", serial="LBTINY"),
        czlvm_restore.target_drive(tmp_path),
        *md_member.drives(blank_disk, tmp_path),
    ]
    expect = czlvm_restore.expectations(live_iso)
    with Machine(disks, firmware="bios", workdir=tmp_path, memory=1536, name="lvm") as vm:
        wait_for_all(vm, [ready_pattern(lifeboat_version, "ttyS0", "shell")], BOOT_TIMEOUT)
        time.sleep(2)
        before, sums, ids = _scenario(vm)
        _smaller(vm, before, sums, ids)
        _ok(vm, "mount LABEL=LBREPO /mnt/repo")
        czlvm_restore.restore_in_live(vm, _ok, expect)
        md_member.scenario(vm)
        _ok(vm, "umount /mnt/repo")


def _scenario(vm: Machine) -> tuple[dict[str, dict], str, str]:
    """Everything after the boot (the disks attached by serial: LBSOURCE, LBTARGET, LBREPO) up to the
    restore onto the larger disk; returns the source's volumes, file hashes and filesystem ids."""
    if True:
        _ok(vm, BUILD)
        _ok(vm, FILL)
        sums, sizes_before, ids = _ok(vm, SUMS), _ok(vm, FSIZE).split(), _ok(vm, FS_IDS)
        _ok(vm, "umount /mnt/r /mnt/d /mnt/v && vgchange -an lbvg && mkdir -p /mnt/repo && mount LABEL=LBREPO /mnt/repo")
        before = _volumes(vm, f"{S}-part2")
        swap_uuid = _ok(vm, f"blkid -p -o value -s UUID {S}-part2 >/dev/null; vgchange -ay lbvg >/dev/null; "
                            "blkid -p -o value -s UUID /dev/lbvg/swap; vgchange -an lbvg >/dev/null").strip()

        started = time.monotonic()
        out = _ok(vm, f"lifeboat capture {S} lvm --repo {REPO} >/tmp/capture.log 2>&1; rc=$?; "
                      "grep -v '%' /tmp/capture.log | tail -25; (exit $rc)", timeout=900)
        print(f"capture in the guest: {time.monotonic() - started:.0f} s\n{out}")
        assert "LVM volume group lbvg" in out and "lbvg/data: xfs" in out, out
        _nothing_active(vm, f"{S}-part2", "the capture")
        # the activation capture uses: read-only in the kernel, undone on leaving
        out = _ok(vm, "python3 -c 'from lifeboat.volumes import lvm; from lifeboat.run import run; "
                      f"cm = lvm.activated(\"lbvg\", [\"{S}-part2\"], read_only=True); cm.__enter__(); "
                      "print(\"RO\", *(run([\"blockdev\", \"--getro\", lvm.node(\"lbvg\", n)]).stdout.strip() "
                      "for n in (\"root\", \"data\", \"swap\"))); cm.__exit__(None, None, None)'")
        assert "RO 1 1 1" in out, out
        _nothing_active(vm, f"{S}-part2", "a read-only activation")
        listing = json.loads((lambda o: o[o.index("["):])(_ok(vm, f"lifeboat images --repo {REPO} --json")))
        (group,) = listing[0]["volume_groups"]
        stored = {lv["name"]: lv for lv in group["lvs"]}
        assert group["uuid"] == before["root"]["vg_uuid"] and group["partitions"] == [2], group
        assert stored["swap"]["fstype"] == "swap" and stored["swap"]["used_bytes"] == 0, stored
        assert 20 * MIB < stored["root"]["used_bytes"] < 112 * MIB // 2, stored  # by used blocks, not whole
        assert 30 * MIB < stored["data"]["used_bytes"] < 304 * MIB // 2, stored

        rc, out = shell(vm, f"lifeboat restore lvm {T} --repo {REPO} --yes --no-bootloader 2>&1 | tail -5; "
                            f"cmp -n 4194304 {T} /dev/zero && echo TARGET-UNTOUCHED", timeout=300)
        assert "already exists on" in out and "lbvg" in out and "TARGET-UNTOUCHED" in out, out

        _ok(vm, f"wipefs -q -a {S}-part2")  # the source disk's group goes, as if the disk had been taken out
        started = time.monotonic()
        out = _ok(vm, f"lifeboat restore lvm {T} --repo {REPO} --yes --no-bootloader >/tmp/restore.log 2>&1; "
                      "rc=$?; grep -v '%' /tmp/restore.log | grep -v 'time per stage' | tail -45; (exit $rc)",
                  timeout=900)
        print(f"restore in the guest: {time.monotonic() - started:.0f} s\n{out}")
        assert "LVM volume group lbvg (812.0 MiB, grows to" in out, out
        _nothing_active(vm, f"{T}-part2", "the restore")

        after = _volumes(vm, f"{T}-part2")
        assert set(after) == set(before) == {"root", "data", "swap", "vol"}
        for name, lv in before.items():
            for field in ("vg_name", "vg_uuid", "vg_tags", "pv_uuid", "lv_uuid", "lv_tags"):
                assert after[name][field] == lv[field], (name, field, lv, after[name])
        assert int(after["swap"]["lv_size"]) == int(before["swap"]["lv_size"])
        for name in ("root", "data", "vol"):
            assert int(after[name]["lv_size"]) > 2 * int(before[name]["lv_size"]), (before[name], after[name])

        _ok(vm, f"vgchange -ay lbvg && {FSCK}")
        assert _ok(vm, "blkid -p -o value -s UUID /dev/lbvg/swap").strip() == swap_uuid
        _ok(vm, MOUNT)
        assert _ok(vm, SUMS) == sums
        sizes_after = _ok(vm, FSIZE).split()
        assert all(int(a) > 1.8 * int(b) for a, b in zip(sizes_after, sizes_before)), (sizes_before, sizes_after)
        _ok(vm, "umount /mnt/r /mnt/d /mnt/v && vgchange -an lbvg")
    return before, sums, ids


def _smaller(vm: Machine, before: dict[str, dict], sums: str, ids: str) -> None:
    """The same image onto disks smaller than its layout (issue 10): refused where the data cannot fit,
    shrunk where it can, every identifier and file kept."""
    rc, out = shell(vm, f"lifeboat restore lvm {TINY} --repo {REPO} --yes --no-bootloader 2>&1 | tail -5; "
                        f"cmp -n 4194304 {TINY} /dev/zero && echo TARGET-UNTOUCHED", timeout=300)
    print(f"onto {TINY_MIB} MiB:\n{out}")
    assert "short" in out and "LVM volume group lbvg" in out and "data xfs at least 300.0 MiB" in out, out
    assert "nothing was written" in out and "TARGET-UNTOUCHED" in out, out

    _ok(vm, f"wipefs -q -a {T}-part2")  # the larger target's group goes too, as if that disk had gone
    started = time.monotonic()
    out = _ok(vm, f"lifeboat restore lvm {SMALL} --repo {REPO} --yes --no-bootloader >/tmp/small.log 2>&1; "
                  "rc=$?; grep -v '%' /tmp/small.log | grep -v 'time per stage' | tail -60; (exit $rc)", timeout=900)
    print(f"restore onto {SMALL_MIB} MiB in the guest: {time.monotonic() - started:.0f} s\n{out}")
    assert "LVM volume group lbvg (812.0 MiB, shrinks to" in out, out
    assert "then shrunk in place" in out and "filesystem made anew with its UUID" in out, out
    _nothing_active(vm, f"{SMALL}-part2", "the restore onto a smaller disk")

    after = _volumes(vm, f"{SMALL}-part2")
    assert set(after) == set(before)
    for name, lv in before.items():
        for field in ("vg_name", "vg_uuid", "vg_tags", "pv_uuid", "lv_uuid", "lv_tags"):
            assert after[name][field] == lv[field], (name, field, lv, after[name])
    assert int(after["swap"]["lv_size"]) == int(before["swap"]["lv_size"])
    for name in ("root", "data", "vol"):
        assert int(after[name]["lv_size"]) < int(before[name]["lv_size"]), (name, before[name], after[name])
    _ok(vm, f"vgchange -ay lbvg && {FSCK}")
    assert _ok(vm, FS_IDS) == ids
    _ok(vm, MOUNT)
    assert _ok(vm, SUMS) == sums
    _ok(vm, "echo changed >/mnt/r/etc/hostname && echo stray >/mnt/r/stray && echo kept >/mnt/d/kept.txt"
            " && umount /mnt/r /mnt/d /mnt/v")
    _one_volume(vm, after, sums)


def _one_volume(vm: Machine, volumes: dict[str, dict], sums: str) -> None:
    """Issue 11: `--partitions lbvg/root` puts the image's root volume back onto the disk's own (smaller)
    root volume, shrunk again; the group's metadata and its other volumes stay byte for byte."""
    others = "sha256sum /dev/lbvg/data /dev/lbvg/vol /dev/lbvg/swap"
    kept = _ok(vm, others)
    _ok(vm, "vgchange -an lbvg")
    out = _ok(vm, f"lifeboat restore lvm {SMALL} --partitions lbvg/root --repo {REPO} --yes >/tmp/lv.log 2>&1; "
                  "rc=$?; grep -v '%' /tmp/lv.log | grep -v 'time per stage' | tail -30; (exit $rc)", timeout=600)
    print(f"one volume:\n{out}")
    assert "Only logical volume(s) lbvg/root of" in out and "then shrunk in place" in out, out
    _nothing_active(vm, f"{SMALL}-part2", "restoring one volume")
    assert _volumes(vm, f"{SMALL}-part2") == volumes
    _ok(vm, "vgchange -ay lbvg && e2fsck -fn /dev/lbvg/root")
    assert _ok(vm, others) == kept
    _ok(vm, "mount /dev/lbvg/root /mnt/r")
    out = _ok(vm, "(cd /mnt/r && sha256sum a.bin etc/hostname); test -e /mnt/r/stray && echo STRAY || echo NO-STRAY")
    assert out.splitlines()[:2] == sums.splitlines()[:2] and out.splitlines()[2] == "NO-STRAY", (out, sums)
    _ok(vm, "umount /mnt/r && vgchange -an lbvg && umount /mnt/repo")
