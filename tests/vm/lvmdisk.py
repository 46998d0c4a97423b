"""The debootstrapped Debian prepared for a root on LVM, as the Debian installer's guided LVM sets it up: lvm2
installed in it (so its initramfs activates the root's volume group), its fstab naming / as
/dev/mapper/debian--vg-root and the ESP by its FAT serial. Built on the host as a bare ext4 filesystem image
(this host has no device-mapper, so no volume group can be made here): the vm test writes it into a logical
volume inside the live ISO. lvm2 comes from Debian's mirror (apt-get in a chroot of the rootfs). Cached by this
file's hash and the rootfs tarball's name, like bootdisk's fixtures."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from bootdisk import CACHE, _locked, _prune, _unpacked, debian_rootfs, sh

SIZE_MIB = 1024
ROOT_UUID = "6c1f0b3e-1a2b-4c3d-8e4f-000000000c01"
ESP_SERIAL = "1B0C0001"  # the vm test makes the ESP with this serial
VG, LV = "debian-vg", "root"
ROOT_NODE = "/dev/mapper/debian--vg-root"


def lvm_root_fs() -> Path:
    """ext4 image of the system (UUID ROOT_UUID), to be written into VG/LV."""
    tar = debian_rootfs()
    key = hashlib.sha256(Path(__file__).read_bytes() + tar.name.encode()).hexdigest()[:16]
    out = CACHE / "fixtures" / f"debian-lvmroot-{SIZE_MIB}M-{key}.ext4"
    if out.exists():
        return out
    with _locked("fixtures"):
        if out.exists():
            return out
        out.parent.mkdir(parents=True, exist_ok=True)
        with _unpacked(tar) as root, tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            _add_lvm2(root)
            (root / "boot/efi").mkdir(exist_ok=True)
            (root / "etc/fstab").write_text(
                f"{ROOT_NODE} / ext4 errors=remount-ro 0 1\n"
                f"UUID={ESP_SERIAL[:4]}-{ESP_SERIAL[4:]} /boot/efi vfat umask=0077 0 1\n")
            img = Path(tmp) / "root.ext4"
            sh("mke2fs", "-q", "-F", "-t", "ext4", "-U", ROOT_UUID, "-L", "debroot", "-d", root, img, f"{SIZE_MIB}M")
            os.replace(img, out)
        _prune(out)
    return out


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
