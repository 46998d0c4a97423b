"""An MD RAID1 member in the live ISO (issue #11): mdadm runs only in a guest here (this host has no md
driver in use and no device-mapper). Run inside test_lvm's live boot, on two small disks of its own: a RAID1
of two GPT partitions (metadata 1.2) holding ext4 with a file; the array stopped; `lifeboat disks` shows the
member with its array; `lifeboat capture` of one member's disk copies the member whole (superblock included,
said in the plan) and `lifeboat restore` puts it onto a blank disk byte for byte; the restored member alone
assembles (degraded) as the same array, and its file reads back."""

from __future__ import annotations

from iso_helpers import shell
from qemu import Drive, Machine

A, B, C = "/dev/disk/by-id/virtio-LBMDA", "/dev/disk/by-id/virtio-LBMDB", "/dev/disk/by-id/virtio-LBMDC"
REPO = "/mnt/repo/images"
SIZE_MIB = 48


def drives(blank_disk, tmp_path) -> list[Drive]:
    """The two members' disks and the blank target, attached by serial."""
    return [Drive(blank_disk(tmp_path / f"md-{x}.img", SIZE_MIB), "virtio", serial=f"LBMD{x.upper()}")
            for x in ("a", "b", "c")]


def _ok(vm: Machine, command: str, timeout: float = 300) -> str:
    rc, out = shell(vm, command, timeout)
    assert rc == 0, f"{command}\n-> rc {rc}:\n{out}"
    return out


def scenario(vm: Machine) -> None:
    """The repository (LABEL=LBREPO) is mounted on /mnt/repo by the caller."""
    for disk in (A, B):
        _ok(vm, f"sgdisk -n 1:2048:0 -t 1:fd00 {disk} >/dev/null && partx -u {disk}")
    _ok(vm, "udevadm settle && mdadm --create /dev/md/lbmd --run --level=1 --metadata=1.2 --raid-devices=2 "
            f"--homehost=lifeboat --bitmap=none {A}-part1 {B}-part1 2>&1 && mkfs.ext4 -q -L lbmd /dev/md/lbmd "
            "&& mkdir -p /mnt/md && mount /dev/md/lbmd /mnt/md && head -c 8M /dev/urandom >/mnt/md/x.bin && "
            "sync && umount /mnt/md && mdadm --wait /dev/md/lbmd; true")
    want = _ok(vm, "mount /dev/md/lbmd /mnt/md && sha256sum </mnt/md/x.bin && umount /mnt/md").split()[0]
    uuid = _ok(vm, f"mdadm --examine --export {A}-part1 | sed -n 's/^MD_UUID=//p'").strip()
    _ok(vm, "mdadm --stop /dev/md/lbmd")
    listed = _ok(vm, "lifeboat disks")
    assert "MD RAID member (metadata 1.2, raid1) of array lifeboat:lbmd" in listed, listed

    out = _ok(vm, f"lifeboat capture {A} md --repo {REPO} 2>&1 | grep -v '%' | tail -12", timeout=300)
    assert "MD RAID member (metadata 1.2, raid1) of array lifeboat:lbmd" in out, out
    out = _ok(vm, f"lifeboat restore md {C} --repo {REPO} --yes --no-bootloader 2>&1 | grep -v '%' | tail -20")
    assert "MD RAID member (metadata 1.2, raid1) of array lifeboat:lbmd: copied whole, superblock included" in out, out
    _ok(vm, f"partx -u {C}; udevadm settle")
    same = _ok(vm, f"cmp {A}-part1 {C}-part1 && echo SAME-BYTES")
    assert "SAME-BYTES" in same, f"{out}\n{same}"
    _ok(vm, f"mdadm --assemble --run /dev/md/lbcopy {C}-part1 2>&1")  # alone: degraded, but the same array
    detail = _ok(vm, "mdadm --detail --export /dev/md/lbcopy")
    assert f"MD_UUID={uuid}" in detail and "MD_LEVEL=raid1" in detail, detail
    got = _ok(vm, "mount -o ro /dev/md/lbcopy /mnt/md && sha256sum </mnt/md/x.bin; umount /mnt/md; "
                  "mdadm --stop /dev/md/lbcopy").split()[0]
    assert got == want
