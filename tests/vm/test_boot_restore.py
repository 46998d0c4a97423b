"""Restore → boot: fixture disks captured with `lifeboat capture`, restored with `lifeboat restore
--no-bootloader` onto a blank disk of the same size and of twice the size (on the host, on loop devices),
then booted alone under SeaBIOS and under OVMF with empty NVRAM; the marker or login prompt must appear.
The debootstrapped Debian is also restored onto a disk 3/4 its size (its root shrunk, issue #10).

The restore's own bootloader step needs a FAT mount and so a guest; here the boot regions and ESP come
back exactly as captured, which is what must make the disk boot (test_boot_repair covers bootfix, and the
debootstrapped Debian's restore → login prompt → break → bootfix → login prompt).
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import tempfile
from pathlib import Path

import pytest

import bootdisk
import bootvm
import qemu

SMALLER = 3 / 4  # of the Debian disk (1 GiB, root 958 MiB with 462 MiB used): the root must really shrink

pytestmark = qemu.vm_marks("capture/restore on loop devices needs root")


class Captures:
    """One repository per module; each source disk captured once (from the cached image, read-only)."""

    def __init__(self, repo: Path):
        self.repo = repo
        self.done: set[str] = set()

    def image(self, name: str, source: Path) -> str:
        if name not in self.done:
            bootvm.capture(source, name, self.repo)
            self.done.add(name)
        return name


@pytest.fixture(scope="module")
def captures(tmp_path_factory) -> Captures:
    return Captures(tmp_path_factory.mktemp("repo") / "images")


def _boot_all(target: Path, interface: str, expect, firmwares, workdir: Path, label: str, timeout: float):
    for firmware in firmwares:
        result = bootvm.boot(target, interface, firmware, expect, workdir, f"{label}-{firmware}", timeout=timeout)
        print(f"{label} on {interface} under {firmware}: {result.seconds:.1f}s to {expect.pattern[:30]!r}")
        if expect is bootvm.FIXTURE_RE:
            m = expect.search(result.output)
            assert m.group(2) == firmware


@pytest.mark.timeout(900)
@pytest.mark.parametrize("layout,scale,interface", [
    ("gpt", 1, "nvme"), ("gpt", 2, "virtio"), ("mbr", 2, "nvme"),
])
def test_restored_fixture_boots(layout, scale, interface, captures, tmp_path):
    source = bootdisk.fixture_disk(layout)
    name = captures.image(f"fixture-{layout}", source)
    target = bootvm.restore(name, captures.repo, tmp_path / f"target-x{scale}.img", source.stat().st_size * scale)
    _boot_all(target, interface, bootvm.FIXTURE_RE, ("bios", "uefi"), tmp_path, f"{layout}-x{scale}", 300)


@pytest.mark.timeout(2400)  # a cold cache runs debootstrap first
def test_restored_debian_boots_to_login(captures, tmp_path):
    """The real system, restored with --no-bootloader onto a disk twice its size, boots to its login prompt
    (OVMF, empty NVRAM, NVMe). Restore inside the live ISO with the bootloader step: test_boot_live.py."""
    source = bootdisk.debian_disk()
    name = captures.image("debian", source)
    target = bootvm.restore(name, captures.repo, tmp_path / "target-x2.img", source.stat().st_size * 2)
    _boot_all(target, "nvme", bootvm.LOGIN_RE, ("uefi",), tmp_path, "debian-x2", 600)


@pytest.mark.timeout(2400)  # a cold cache runs debootstrap first
def test_debian_restored_onto_a_smaller_disk_boots_to_login(captures, tmp_path):
    """Issue #10: the real system restored (on the host, --no-bootloader) onto a disk 3/4 the size of its
    source. The BIOS boot partition and the ESP keep their size and bytes; the ext4 root is restored and
    shrunk with resize2fs into its smaller partition, keeping its UUID and every file (content, owner, mode,
    symlink target); fsck is clean. Then it boots alone to its login prompt (OVMF, empty NVRAM, NVMe): GRUB
    finds the root by UUID, as the untouched boot regions expect."""
    source = bootdisk.debian_disk()
    name = captures.image("debian", source)
    size = int(source.stat().st_size * SMALLER) // (1 << 20) << 20
    target = tmp_path / "target-smaller.img"
    target.write_bytes(b"")
    os.truncate(target, size)
    with bootdisk.loop_device(target) as dev:
        proc = bootvm.lifeboat("restore", name, dev, "--repo", str(captures.repo), "--yes", "--no-bootloader")
    print(proc.stdout[-3000:])
    assert "shrinks" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    before, after = bootvm.partitions(source), bootvm.partitions(target)
    assert after[3][1] < before[3][1] * 0.8, (before, after)  # the root really shrank
    for number in (1, 2):
        assert after[number] == before[number]
        assert _part_digest(target, after[number]) == _part_digest(source, before[number]), f"partition {number}"
    with bootdisk.loop_device(source, readonly=True) as src_dev, bootdisk.loop_device(target) as dst_dev:
        bootdisk.sh("e2fsck", "-f", "-n", f"{dst_dev}p3")
        uuid = bootdisk.sh("blkid", "-p", "-s", "UUID", "-o", "value", f"{dst_dev}p3").stdout.strip()
        assert uuid == bootdisk.ROOT_UUID["debian"]
        want, got = _tree_of(f"{src_dev}p3"), _tree_of(f"{dst_dev}p3")
    assert len(want) > 10_000 and got == want, sorted(set(want.items()) ^ set(got.items()))[:20]
    _boot_all(target, "nvme", bootvm.LOGIN_RE, ("uefi",), tmp_path, "debian-smaller", 600)


@pytest.mark.timeout(2400)  # a cold cache runs debootstrap first
def test_debian_restored_onto_a_4kn_disk_boots_to_login(captures, tmp_path):
    """Issue #11: the real system (512-byte sectors) restored on the host, --no-bootloader, onto a disk with
    4096-byte sectors (a loop device with --sector-size 4096) 256 MiB larger: the GPT's sector numbers are
    converted, the ESP (a FAT recording 512-byte sectors) is made anew with 4096-byte sectors and its loaders
    copied, the ext4 root (4 KiB blocks) is written as is and grown. Then it boots alone to its login prompt from an NVMe disk presenting 4096-byte
    blocks (OVMF, empty NVRAM)."""
    source = bootdisk.debian_disk()
    name = captures.image("debian", source)
    target = tmp_path / "target-4kn.img"
    target.write_bytes(b"")
    os.truncate(target, source.stat().st_size + (256 << 20))  # a 4Kn disk a little larger: the root grows
    with bootvm.loop_device_4kn(target) as dev:
        proc = bootvm.lifeboat("restore", name, dev, "--repo", str(captures.repo), "--yes", "--no-bootloader")
        said = proc.stdout + proc.stderr
        assert "converted from 512-byte to 4096-byte sectors" in said and "made anew for 4096-byte sectors" in said, said
        bootdisk.sh("partx", "-u", dev, check=False)
        table = bootdisk.sh("sfdisk", "-d", dev).stdout
        assert "sector-size: 4096" in table, table
        starts = {int(n): int(s) for n, s in re.findall(r"p(\d+) : start=\s*(\d+)", table)}
        assert {n: s * 8 for n, s in starts.items()} == {n: e[0] for n, e in bootvm.partitions(source).items()}
        with open(f"{dev}p2", "rb") as f:
            assert int.from_bytes(f.read(512)[11:13], "little") == 4096  # the ESP's bytes per sector
        loader = _fat_file_digest(f"{dev}p2", "EFI/BOOT/BOOTX64.EFI", tmp_path / "restored.efi")
        bootdisk.sh("e2fsck", "-f", "-n", f"{dev}p3")
    with bootdisk.loop_device(source, readonly=True) as src_dev:
        assert loader == _fat_file_digest(f"{src_dev}p2", "EFI/BOOT/BOOTX64.EFI", tmp_path / "source.efi")
    result = bootvm.boot(target, "nvme", "uefi", bootvm.LOGIN_RE, tmp_path, "debian-4kn", timeout=600, sector_size=4096)
    print(f"debian on a 4Kn NVMe disk under uefi: {result.seconds:.1f}s to the login prompt")


def _fat_file_digest(node: str, path: str, scratch: Path) -> str:
    """A file of a FAT filesystem, read with mtools (this host has no vfat driver)."""
    bootdisk.sh("mcopy", "-n", "-i", node, f"::/{path}", scratch)
    return hashlib.sha256(scratch.read_bytes()).hexdigest()


def _part_digest(image: Path, extent: tuple[int, int]) -> str:
    start, sectors = extent
    digest = hashlib.sha256()
    with open(image, "rb") as f:
        f.seek(start * 512)
        left = sectors * 512
        while left:
            block = f.read(min(left, 1 << 20))
            digest.update(block)
            left -= len(block)
    return digest.hexdigest()


def _tree_of(node: str) -> dict[str, tuple]:
    """Every entry of an ext4 filesystem, mounted read-only: type, owner, mode and content hash or link."""
    out: dict[str, tuple] = {}
    with tempfile.TemporaryDirectory(prefix="lifeboat-test-mnt-") as tmp:
        mnt = Path(tmp)
        bootdisk.sh("mount", "-t", "ext4", "-o", "ro,noload", node, mnt)
        try:
            for dirpath, dirs, names in os.walk(mnt):
                for entry in dirs + names:
                    p = Path(dirpath, entry)
                    st = p.lstat()
                    if stat.S_ISREG(st.st_mode):
                        what = hashlib.sha256(p.read_bytes()).hexdigest()
                    elif stat.S_ISLNK(st.st_mode):
                        what = os.readlink(p)
                    else:
                        what = ""
                    out[str(p.relative_to(mnt))] = (st.st_mode, st.st_uid, st.st_gid, what)
        finally:
            bootdisk.sh("umount", mnt)
    return out
