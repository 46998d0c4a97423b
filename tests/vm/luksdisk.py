"""The debootstrapped Debian prepared for the Debian installer's guided encrypted LVM (issue 9): GPT, ESP at
/boot/efi, an unencrypted ext4 /boot, and a LUKS2 container holding the PV of `debian-vg` with `root` and
`swap_1`. lvm2 and cryptsetup-initramfs are installed in it (apt-get in a chroot, from Debian's mirror), its
/etc/crypttab opens the container as nvme0n1p3_crypt by its LUKS UUID, its fstab names / as
/dev/mapper/debian--vg-root, and GRUB_CMDLINE_LINUX has console=ttyS0 (bootdisk's rootfs), so the initramfs asks
for the passphrase on the serial console.

This host has no device-mapper, so no container or volume group can be made here: the fixture is the two
filesystems as one file, /boot's ext4 (BOOT_MIB) followed by the root's ext4 (ROOT_MIB); the vm test writes them
into the partition and the logical volume it makes inside the live ISO. The initramfs is built here, where the
root is not on dm-crypt, so the crypttab line carries the `initramfs` option (cryptsetup's hook then puts it in
the initramfs without seeing it open; the installer's own initramfs has the same line because the installer
builds it with the container open). RESUME=none: the host's swap is not this system's. Cached by this file's
hash and the rootfs tarball's name (fixture_cache)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import fixture_cache
from bootdisk import _unpacked, debian_rootfs, sh

BOOT_MIB, ROOT_MIB = 128, 640
ROOT_UUID = "6c1f0b3e-1a2b-4c3d-8e4f-000000000c11"
BOOT_UUID = "6c1f0b3e-1a2b-4c3d-8e4f-000000000c12"
LUKS_UUID = "6c1f0b3e-1a2b-4c3d-8e4f-000000000c13"
ESP_SERIAL = "1B0C0011"  # the vm test makes the ESP with this serial
CRYPT_NAME = "nvme0n1p3_crypt"  # what the installer calls the container of /dev/nvme0n1p3
VG, LV = "debian-vg", "root"
ROOT_NODE = "/dev/mapper/debian--vg-root"
PACKAGES = ("lvm2", "cryptsetup-initramfs")


def luks_lvm_filesystems() -> Path:
    """/boot's ext4 image (BOOT_MIB) then the root's (ROOT_MIB), in one file."""
    tar = debian_rootfs()
    return fixture_cache.cached(f"debian-lukslvm-{BOOT_MIB}+{ROOT_MIB}M", fixture_cache.key(__file__, tar.name),
                                lambda img, tmp: _build(tar, img, tmp))


def _build(tar: Path, img: Path, tmp: Path) -> None:
    with _unpacked(tar) as root:
        (root / "etc/crypttab").write_text(f"{CRYPT_NAME} UUID={LUKS_UUID} none luks,discard,initramfs\n")
        (root / "etc/fstab").write_text(
            f"{ROOT_NODE} / ext4 errors=remount-ro 0 1\n"
            f"UUID={BOOT_UUID} /boot ext4 defaults 0 2\n"
            f"UUID={ESP_SERIAL[:4]}-{ESP_SERIAL[4:]} /boot/efi vfat umask=0077 0 1\n"
            "/dev/mapper/debian--vg-swap_1 none swap sw 0 0\n")
        (root / "etc/initramfs-tools/conf.d").mkdir(parents=True, exist_ok=True)
        (root / "etc/initramfs-tools/conf.d/resume").write_text("RESUME=none\n")
        _install(root)
        boot = tmp / "boot"
        shutil.move(root / "boot", boot)
        (root / "boot/efi").mkdir(parents=True)
        sh("mke2fs", "-q", "-F", "-t", "ext4", "-U", BOOT_UUID, "-L", "debboot", "-d", boot, img, f"{BOOT_MIB}M")
        rootimg = tmp / "root.ext4"
        sh("mke2fs", "-q", "-F", "-t", "ext4", "-U", ROOT_UUID, "-L", "debroot", "-d", root, rootimg, f"{ROOT_MIB}M")
    with open(img, "ab") as out, open(rootimg, "rb") as src:
        shutil.copyfileobj(src, out, 4 << 20)
    rootimg.unlink()
    if img.stat().st_size != (BOOT_MIB + ROOT_MIB) << 20:
        raise RuntimeError(f"{img}: {img.stat().st_size} bytes, not {BOOT_MIB} + {ROOT_MIB} MiB")


def _install(root: Path) -> None:
    """apt-get install lvm2 and cryptsetup-initramfs in a chroot and rebuild the initramfs. Checked: the
    initramfs holds lvm, cryptsetup and the crypttab entry."""
    shutil.copyfile("/etc/resolv.conf", root / "etc/resolv.conf")
    binds = []
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        for d in ("dev", "proc", "sys"):
            sh("mount", "--bind", f"/{d}", root / d)
            binds.append(root / d)
        sh("chroot", root, "apt-get", "-q", "update", env=env)
        sh("chroot", root, "apt-get", "-q", "-y", "--no-install-recommends", "install", *PACKAGES, env=env)
        sh("chroot", root, "update-initramfs", "-u", "-k", "all", env=env)
        listing = sh("chroot", root, "sh", "-c", "lsinitramfs /boot/initrd.img-*", env=env).stdout
        missing = [f for f in ("sbin/lvm", "sbin/cryptsetup", "cryptroot/crypttab") if f not in listing]
        if missing:
            raise RuntimeError(f"the initramfs lacks {', '.join(missing)}")
        sh("chroot", root, "apt-get", "clean", env=env)
    finally:
        for b in reversed(binds):
            sh("umount", "-l", b, check=False)
    shutil.rmtree(root / "var/lib/apt/lists", ignore_errors=True)
    (root / "var/lib/apt/lists/partial").mkdir(parents=True)
    (root / "etc/resolv.conf").unlink()
