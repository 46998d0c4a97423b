"""Issue #12's boot proof, sharing test_boot_live.py's live-ISO boot: the GPT fixture (GRUB for BIOS in its
BIOS boot partition, GRUB's EFI loader in its ESP) imaged by the real Clonezilla (ocs-sr savedisk, see
tests/integration/clonezilla_fixtures.py) is restored by Lifeboat from the Clonezilla image directory onto a
blank disk twice its size WITH its bootloader step (`lifeboat restore` without --no-bootloader: the step
mounts the ESP, which only the live system can do here: this host kernel has no vfat). The fixture has no
GRUB of its own in its root, so the step installs the live system's GRUB for BIOS and UEFI, the fallback
loader and an NVRAM entry. After power off the disk boots alone under SeaBIOS and under OVMF with empty
NVRAM to the fixture's marker.
"""

from __future__ import annotations

import re
import shutil
import sys
import time
from pathlib import Path

import bootdisk
import bootvm
import qemu

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from clonezilla_fixtures import image_of  # noqa: E402

NAME = "bootable-gpt"
SERIAL = "LBCZTARGET"
STEPS = ("GRUB for BIOS (i386-pc)", "GRUB for UEFI (x86_64-efi)", "removable fallback \\EFI\\BOOT\\BOOTX64.EFI",
         "NVRAM entry")


def put_image(repo_mnt: Path) -> None:
    """The Clonezilla image of the GPT fixture (made once, cached) into REPO/cz/ on the repository disk."""
    root = image_of(bootdisk.fixture_disk("gpt"), NAME)
    shutil.copytree(root / NAME, repo_mnt / "cz" / NAME)


def target_drive(tmp_path: Path) -> qemu.Drive:
    target = tmp_path / "cz-target.img"
    target.write_bytes(b"")
    with open(target, "r+b") as f:
        f.truncate(bootdisk.fixture_disk("gpt").stat().st_size * 2)
    return qemu.Drive(target, "virtio", serial=SERIAL)


def restore_in_live(vm, shell, repo_mnt: str) -> None:
    """In the live system: restore the Clonezilla image with the bootloader step; every step done."""
    started = time.monotonic()
    rc, out = shell(vm, f"t=$(readlink -f /dev/disk/by-id/virtio-{SERIAL}) && echo target=$t && "
                        f"lifeboat restore {NAME} $t --repo {repo_mnt}/cz --yes >/tmp/cz.log 2>&1; rc=$?; "
                        "grep -v '%' /tmp/cz.log | tail -40; (exit $rc)", timeout=900)
    print(f"Clonezilla image restored with the bootloader step: {time.monotonic() - started:.0f}s\n{out}")
    assert rc == 0, out
    assert "Clonezilla" in out, out  # the plan names the image's origin
    for step in STEPS:
        assert re.search(re.escape(step) + r": done", out), f"Clonezilla restore: {step} not done:\n{out}"
    assert "live system's grub-install" in out, out


def boots_alone(drive: qemu.Drive, tmp_path: Path) -> None:
    for firmware in ("bios", "uefi"):
        result = bootvm.boot(Path(drive.path), "virtio", firmware, bootvm.FIXTURE_RE, tmp_path, f"cz-{firmware}",
                             timeout=300)
        print(f"Clonezilla image restored by Lifeboat (bootloader step) under {firmware}: "
              f"{result.seconds:.1f}s to the marker")
        m = bootvm.FIXTURE_RE.search(result.output)
        assert (m.group(1), m.group(2)) == ("gpt", firmware)
