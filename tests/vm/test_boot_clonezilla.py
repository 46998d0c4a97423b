"""A bootable disk imaged by the real Clonezilla (ocs-sr savedisk, see
tests/integration/clonezilla_fixtures.py), restored by Lifeboat from the Clonezilla directory onto a
blank disk twice its size (on the host, `lifeboat restore --no-bootloader`: the bootloader step needs a
FAT mount and so a guest, as in test_boot_restore.py), boots alone under SeaBIOS and OVMF with empty
NVRAM: GRUB's core in the BIOS boot partition (a partclone.dd image), its EFI loader in the ESP and the
MBR boot code all came back from the Clonezilla image."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import bootdisk
import bootvm
import qemu

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from clonezilla_fixtures import image_of  # noqa: E402

pytestmark = qemu.vm_marks("ocs-sr and the restore use loop devices: root")


@pytest.mark.timeout(900)
def test_clonezilla_image_of_a_bootable_gpt_disk_boots_after_restore(tmp_path):
    source = bootdisk.fixture_disk("gpt")
    root = image_of(source, "bootable-gpt")
    target = bootvm.restore("bootable-gpt", root, tmp_path / "target-x2.img", source.stat().st_size * 2)
    for firmware in ("bios", "uefi"):
        result = bootvm.boot(target, "virtio", firmware, bootvm.FIXTURE_RE, tmp_path, f"cz-{firmware}", timeout=300)
        print(f"Clonezilla image restored by Lifeboat under {firmware}: {result.seconds:.1f}s to the marker")
        assert bootvm.FIXTURE_RE.search(result.output).group(2) == firmware
