"""The debootstrapped Debian prepared for a root on LVM, as the Debian installer's guided LVM sets it up: lvm2
installed in it (so its initramfs activates the root's volume group), its fstab naming / as
/dev/mapper/debian--vg-root and the ESP by its FAT serial. Built on the host as a bare ext4 filesystem image
(this host has no device-mapper, so no volume group can be made here): the vm test writes it into a logical
volume inside the live ISO. lvm2 comes from Debian's mirror (apt-get in a chroot of the rootfs). Cached by this
file's hash and the rootfs tarball's name, like bootdisk's fixtures."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import fixture_cache
from bootdisk import _unpacked, debian_rootfs, sh

SIZE_MIB = 1024
ROOT_UUID = "6c1f0b3e-1a2b-4c3d-8e4f-000000000c01"
ESP_SERIAL = "1B0C0001"  # the vm test makes the ESP with this serial
VG, LV = "debian-vg", "root"
ROOT_NODE = "/dev/mapper/debian--vg-root"


def lvm_root_fs() -> Path:
    """ext4 image of the system (UUID ROOT_UUID), to be written into VG/LV."""
    tar = debian_rootfs()
    return fixture_cache.cached(f"debian-lvmroot-{SIZE_MIB}M", fixture_cache.key(__file__, tar.name),
                                lambda img, tmp: _build(tar, img), suffix="ext4")


def _build(tar: Path, img: Path) -> None:
    with _unpacked(tar) as root:
        _add_lvm2(root)
        (root / "boot/efi").mkdir(exist_ok=True)
        (root / "etc/fstab").write_text(
            f"{ROOT_NODE} / ext4 errors=remount-ro 0 1\n"
            f"UUID={ESP_SERIAL[:4]}-{ESP_SERIAL[4:]} /boot/efi vfat umask=0077 0 1\n")
        sh("mke2fs", "-q", "-F", "-t", "ext4", "-U", ROOT_UUID, "-L", "debroot", "-d", root, img, f"{SIZE_MIB}M")


def _add_lvm2(root: Path) -> None:
    """apt-get install lvm2 in a chroot; its trigger rebuilds the initramfs with lvm2's hook. Checked."""
    shutil.copyfile("/etc/resolv.conf", root / "etc/resolv.conf")
    binds = []
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        for d in ("dev", "proc", "sys"):
            sh("mount", "--bind", f"/{d}", root / d)
            binds.append(root / d)
        sh("chroot", root, "apt-get", "-q", "update", env=env)
        sh("chroot", root, "apt-get", "-q", "-y", "--no-install-recommends", "install", "lvm2", env=env)
        sh("chroot", root, "update-initramfs", "-u", "-k", "all", env=env)
        listing = sh("chroot", root, "sh", "-c", "lsinitramfs /boot/initrd.img-*", env=env).stdout
        if "sbin/lvm" not in listing:
            raise RuntimeError("lvm2 is installed but the initramfs has no lvm")
        sh("chroot", root, "apt-get", "clean", env=env)
    finally:
        for b in reversed(binds):
            sh("umount", "-l", b, check=False)
    shutil.rmtree(root / "var/lib/apt/lists", ignore_errors=True)
    (root / "var/lib/apt/lists/partial").mkdir(parents=True)
    (root / "etc/resolv.conf").unlink()
