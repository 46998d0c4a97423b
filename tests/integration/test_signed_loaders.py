"""boot.shim's signature check and the live fallback of boot.signed on Debian's real binaries: shim-signed's
shim and MokManager and grub-efi-amd64-signed's GRUB carry an Authenticode signature; a GRUB made with
grub-mkimage (what grub-install builds without the signed package) does not. The live fallback copies the
real signed files onto an ESP (a plain directory here: this host has no vfat; the FAT path is
tests/vm/test_boot_secure.py) and checks them there. The packages come from Debian's mirror through apt-get
download, cached under /var/cache/lifeboat/debs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from lifeboat.boot import shim, signed
from lifeboat.boot.model import LinuxSystem, Recorder
from lifeboat.devices import Partition
from lifeboat.events import Outcome

pytestmark = pytest.mark.integration

DEBS = Path(os.environ.get("LIFEBOAT_CACHE", "/var/cache/lifeboat")) / "debs"
PACKAGES = ("shim-signed", "shim-helpers-amd64-signed", "grub-efi-amd64-signed")


def _deb(package: str) -> Path:
    have = sorted(DEBS.glob(f"{package}_*.deb"))
    if not have:
        DEBS.mkdir(parents=True, exist_ok=True)
        subprocess.run(["apt-get", "download", package], cwd=DEBS, check=True, capture_output=True)
        have = sorted(DEBS.glob(f"{package}_*.deb"))
    return have[-1]


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> Path:
    """A directory laid out like the live system's /usr/lib with Debian's signed binaries in it."""
    base = tmp_path_factory.mktemp("live")
    for package in PACKAGES:
        subprocess.run(["dpkg-deb", "-x", str(_deb(package)), str(base)], check=True)
    return base


def test_debians_signed_loaders_carry_a_signature_and_a_grub_mkimage_grub_does_not(live, tmp_path):
    for rel in (shim.SHIM_FILE, shim.MM_FILE, shim.GRUB_FILE):
        assert shim.authenticode_signed(str(live / rel)), rel
        assert shim.check_signed(str(live / rel), str(live / rel)) == ""
    unsigned = tmp_path / "grubx64.efi"
    subprocess.run(["grub-mkimage", "-O", "x86_64-efi", "-o", str(unsigned), "-p", "/EFI/debian", "part_gpt", "fat"],
                   check=True)
    assert shim.check_signed(str(unsigned)) == "carries no Authenticode signature (an unsigned loader)"
    assert "not the same file" in shim.check_signed(str(live / shim.MM_FILE), str(live / shim.SHIM_FILE))


def test_the_live_fallback_puts_debians_signed_shim_and_grub_on_the_esp(live, tmp_path):
    """An installed system that boots through shim but has no signed files of its own (its packages say shim,
    its /usr/lib lost them): the live system's signed copies are written and checked."""
    root, esp = tmp_path / "root", tmp_path / "root/boot/efi"
    esp.mkdir(parents=True)
    (esp / "EFI/debian").mkdir(parents=True)
    (esp / "EFI/debian/grubx64.efi").write_bytes(b"MZ" + bytes(9000))  # an unsigned leftover
    part = Partition("/dev/sdz2", 2, 1 << 20, 900 << 20, "ext4", "root", "root-uuid", "p-2")
    system = LinuxSystem(root=part, name="Debian", efi_id="debian", efi=True, shim="its packages shim-signed are installed")
    rec = Recorder(lambda e: None)
    signed.install(system, str(root), str(esp), rec, live_base=str(live))
    assert rec.outcomes[-1].outcome is Outcome.DONE, rec.outcomes[-1]
    assert "live system's signed copies" in rec.outcomes[-1].detail
    for name, rel in ((shim.SHIM, shim.SHIM_FILE), (shim.GRUB, shim.GRUB_FILE), (shim.MM, shim.MM_FILE)):
        assert (esp / "EFI/debian" / name).read_bytes() == (live / rel).read_bytes(), name
    assert "search.fs_uuid root-uuid root" in (esp / "EFI/debian/grub.cfg").read_text()
