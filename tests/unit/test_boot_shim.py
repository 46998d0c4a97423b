"""Secure Boot in the bootloader step: finding a system that boots through shim, installing shim + signed GRUB
(the installed system's grub-install first, the live system's signed copies as fallback), checking the result,
never leaving an unsigned GRUB behind, and the plan's line. The ESP is a plain directory here and the chroot's
grub-install a fake that copies files as Debian's does (a real one needs root and a FAT mount: the real path
is tests/vm/test_boot_secure.py). The loaders are small synthetic PE files, signed or not (no real signature:
only its presence in the certificate table is what boot.shim checks)."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from lifeboat import secureboot
from lifeboat.boot import fix, shim, signed
from lifeboat.boot.model import LinuxSystem, Recorder
from lifeboat.boot.plan_chain import PlannedChain, listing
from lifeboat.devices import Partition
from lifeboat.errors import CommandFailed
from lifeboat.events import Outcome

ROOT = Partition("/dev/nvme0n1p3", 3, 400 << 20, 900 << 20, "ext4", "debroot", "root-uuid", "p-3")
BOOT = Partition("/dev/nvme0n1p2", 2, 70 << 20, 256 << 20, "ext4", "debboot", "boot-uuid", "p-2")
ESP = Partition("/dev/nvme0n1p1", 1, 1 << 20, 64 << 20, "vfat", "ESP", "5B0E-0001", "p-1",
                type="C12A7328-F81F-11D2-BA4B-00A0C93EC93B")


def pe(tag: bytes, signed_: bool = True, size: int = 8192) -> bytes:
    """A PE32+ file whose certificate table holds a PKCS#7 WIN_CERTIFICATE (signed) or nothing."""
    data = bytearray(size)
    data[:2] = b"MZ"
    struct.pack_into("<I", data, 0x3C, 0x80)
    data[0x80:0x84] = b"PE\0\0"
    opt = 0x80 + 24
    struct.pack_into("<H", data, opt, 0x20B)
    if signed_:
        cert_at, cert_len = size - 1024, 1024
        struct.pack_into("<II", data, opt + 112 + 4 * 8, cert_at, cert_len)
        struct.pack_into("<IHH", data, cert_at, cert_len, 0x0200, 0x0002)
    data[0x200:0x200 + len(tag)] = tag
    return bytes(data)


def put(base: Path, rel: str, content: bytes | str) -> Path:
    path = base / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def packages(base: Path, tag: bytes = b"") -> Path:
    """Signed shim, MokManager and GRUB where Debian's packages put them, under `base`."""
    put(base, shim.SHIM_FILE, pe(b"shim" + tag))
    put(base, shim.MM_FILE, pe(b"mm" + tag))
    put(base, shim.GRUB_FILE, pe(b"grub" + tag))
    return base


@pytest.fixture
def installed(tmp_path):
    """An installed Debian (root dir with its ESP at boot/efi) booting through shim, and a live system."""
    root = packages(tmp_path / "root")
    put(root, "usr/sbin/grub-install", "#!/bin/sh\n")
    put(root, "bin/sh", "")
    put(root, "var/lib/dpkg/status", "Package: shim-signed\nStatus: install ok installed\n\n"
                                     "Package: grub-efi-amd64-signed\nStatus: install ok installed\n")
    esp = root / "boot/efi"
    put(esp, "EFI/debian/shimx64.efi", pe(b"shim-old"))
    put(esp, "EFI/debian/grubx64.efi", pe(b"grub-old"))
    live = packages(tmp_path / "live", b"-live")
    system = LinuxSystem(root=ROOT, name="Debian GNU/Linux 12", efi_id="debian", boot=BOOT, esp=ESP, efi=True,
                         shim=shim.shim_evidence(str(root), str(esp), "debian"))
    return root, esp, live, system


def debian_grub_install(root: Path, grub: bytes | None = None):
    """A fake `chroot ROOT grub-install --uefi-secure-boot`: copies the packages' files as Debian's does
    (or writes `grub` as grubx64.efi: a grub-install that built an unsigned image)."""
    def run(argv, **kw):
        assert argv[:3] == ["chroot", str(root), "grub-install"] and "--uefi-secure-boot" in argv, argv
        out = root / "boot/efi/EFI/debian"
        out.mkdir(parents=True, exist_ok=True)
        (out / "shimx64.efi").write_bytes((root / shim.SHIM_FILE).read_bytes())
        (out / "mmx64.efi").write_bytes((root / shim.MM_FILE).read_bytes())
        (out / "grubx64.efi").write_bytes(grub if grub is not None else (root / shim.GRUB_FILE).read_bytes())
        (out / "grub.cfg").write_text("search.fs_uuid boot-uuid root\n")
    return run


def last(rec: Recorder):
    return rec.outcomes[-1]


# ---- detection ----------------------------------------------------------------------------------------
def test_dpkg_status_lists_only_installed_packages():
    status = ("Package: shim-signed\nStatus: install ok installed\nVersion: 1\n\n"
              "Package: grub-efi-amd64-signed\nStatus: deinstall ok config-files\n\n"
              "Package: grub2-common\nStatus: install ok installed\n")
    assert shim.installed_packages(status) == {"shim-signed", "grub2-common"}


def test_shim_is_found_on_the_esp_or_in_the_packages(tmp_path):
    esp = tmp_path / "esp"
    put(esp, "EFI/Debian/SHIMX64.EFI", pe(b"s"))
    put(esp, "EFI/Debian/grubx64.efi", pe(b"g"))
    assert "shimx64.efi next to grubx64.efi" in shim.shim_evidence(str(tmp_path / "root"), str(esp), "debian")
    put(tmp_path, "root/var/lib/dpkg/status", "Package: grub-efi-amd64-signed\nStatus: install ok installed\n")
    assert shim.shim_evidence(str(tmp_path / "root"), None, "debian") == "its packages grub-efi-amd64-signed are installed"


def test_a_system_without_shim_has_no_evidence(tmp_path):
    esp = tmp_path / "esp"
    put(esp, "EFI/debian/grubx64.efi", pe(b"g", signed_=False))
    put(tmp_path, "root/var/lib/dpkg/status", "Package: grub-efi-amd64-bin\nStatus: install ok installed\n")
    assert shim.shim_evidence(str(tmp_path / "root"), str(esp), "debian") == ""


def test_authenticode_signature_is_read_from_the_certificate_table(tmp_path):
    assert shim.authenticode_signed(str(put(tmp_path, "s.efi", pe(b"x"))))
    assert not shim.authenticode_signed(str(put(tmp_path, "u.efi", pe(b"x", signed_=False))))
    assert not shim.authenticode_signed(str(put(tmp_path, "t.txt", b"MZ" + bytes(100))))
    assert not shim.authenticode_signed(str(tmp_path / "missing.efi"))
    assert shim.check_signed(str(tmp_path / "u.efi")) == "carries no Authenticode signature (an unsigned loader)"
    assert "not the same file" in shim.check_signed(str(tmp_path / "s.efi"), str(put(tmp_path, "o.efi", pe(b"o"))))


def test_esp_listing_tells_the_chain():
    text = "::/EFI/debian/shimx64.efi\n::/EFI/debian/grubx64.efi\n::/EFI/BOOT/BOOTX64.EFI\n"
    assert shim.esp_chain(listing(text)) is shim.Chain.SHIM
    assert shim.esp_chain(listing("::/EFI/debian/grubx64.efi\n::/EFI/BOOT/grubx64.efi\n")) is shim.Chain.UNSIGNED
    assert shim.esp_chain(listing("::/EFI/BOOT/shimx64.efi\n::/EFI/BOOT/grubx64.efi\n")) is None
    assert shim.esp_chain(listing("::/EFI/Microsoft/Boot/bootmgfw.efi\n")) is None


def test_the_plan_says_which_chain_and_warns_on_a_secure_boot_machine():
    assert PlannedChain(shim.Chain.SHIM, secureboot.SecureBoot.ON).describe() == \
        "Bootloader step installs: shim + signed GRUB (Secure Boot)."
    line = PlannedChain(shim.Chain.UNSIGNED, secureboot.SecureBoot.ON).describe()
    assert line.startswith("Bootloader step installs: GRUB (unsigned: will not boot with Secure Boot on).")
    assert "will not start here" in line and "fallback loader is still written" in line
    assert "will not start" not in PlannedChain(shim.Chain.UNSIGNED, secureboot.SecureBoot.OFF).describe()
    assert PlannedChain(None, secureboot.SecureBoot.ON).describe() == ""


# ---- installing shim + signed GRUB -------------------------------------------------------------------------
def test_the_installed_systems_grub_install_puts_its_signed_files_on_the_esp(installed, monkeypatch):
    root, esp, live, system = installed
    monkeypatch.setattr(signed, "run", debian_grub_install(root))
    rec = Recorder(lambda e: None)
    signed.install(system, str(root), str(esp), rec, live_base=str(live))
    assert last(rec).outcome is Outcome.DONE, last(rec)
    assert "installed system's grub-install --uefi-secure-boot (chroot)" in last(rec).detail
    assert (esp / "EFI/debian/grubx64.efi").read_bytes() == (root / shim.GRUB_FILE).read_bytes()


def test_an_unsigned_grub_from_the_chroot_is_replaced_by_the_live_systems_signed_copies(installed, monkeypatch):
    root, esp, live, system = installed
    monkeypatch.setattr(signed, "run", debian_grub_install(root, grub=pe(b"unsigned", signed_=False)))
    rec = Recorder(lambda e: None)
    signed.install(system, str(root), str(esp), rec, live_base=str(live))
    assert last(rec).outcome is Outcome.DONE, last(rec)
    assert "live system's signed copies" in last(rec).detail and "no Authenticode signature" in last(rec).detail
    assert (esp / "EFI/debian/grubx64.efi").read_bytes() == (live / shim.GRUB_FILE).read_bytes()
    assert (esp / "EFI/debian/shimx64.efi").read_bytes() == (live / shim.SHIM_FILE).read_bytes()
    # the separate /boot: the signed GRUB's grub.cfg finds it by UUID and reads /grub/grub.cfg there
    assert (esp / "EFI/debian/grub.cfg").read_text() == signed.stub_config(system)
    assert "search.fs_uuid boot-uuid root" in signed.stub_config(system) and "'/grub'" in signed.stub_config(system)


def test_no_signed_grub_anywhere_is_a_failed_step_and_the_esp_is_put_back(installed, monkeypatch):
    root, esp, _live, system = installed
    before = {p: p.read_bytes() for p in (esp / "EFI/debian").iterdir()}
    monkeypatch.setattr(signed, "run", debian_grub_install(root, grub=pe(b"unsigned", signed_=False)))
    rec = Recorder(lambda e: None)
    signed.install(system, str(root), str(esp), rec, live_base=str(root / "nonexistent"))
    assert last(rec).outcome is Outcome.FAILED
    assert "put back" in last(rec).detail and "unsigned GRUB would not boot with Secure Boot on" in last(rec).detail
    assert {p: p.read_bytes() for p in (esp / "EFI/debian").iterdir()} == before  # no unsigned GRUB left


def test_a_failing_chroot_grub_install_falls_back_to_the_live_copies(installed, monkeypatch):
    root, esp, live, system = installed

    def fails(argv, **kw):
        raise CommandFailed(argv, 1, "grub-install: error: cannot find EFI directory")
    monkeypatch.setattr(signed, "run", fails)
    rec = Recorder(lambda e: None)
    signed.install(system, str(root), str(esp), rec, live_base=str(live))
    assert last(rec).outcome is Outcome.DONE and "cannot find EFI directory" in last(rec).detail


def test_no_signed_files_at_all_is_refused_before_anything_is_written(installed, monkeypatch):
    root, esp, _live, system = installed
    for rel in (shim.SHIM_FILE, shim.GRUB_FILE):
        (root / rel).unlink()
    monkeypatch.setattr(signed, "run", lambda argv, **kw: pytest.fail(f"ran {argv}"))
    rec = Recorder(lambda e: None)
    signed.install(system, str(root), str(esp), rec, live_base=str(root / "nonexistent"))
    assert last(rec).outcome is Outcome.FAILED and "not installing an unsigned GRUB" in last(rec).detail
    assert (esp / "EFI/debian/grubx64.efi").read_bytes() == pe(b"grub-old")


def test_an_esp_too_full_for_shim_and_grub_is_named_with_the_space_needed(installed, monkeypatch):
    root, esp, live, system = installed
    monkeypatch.setattr(shim, "free_bytes", lambda path: 10_000)
    monkeypatch.setattr(signed, "run", lambda argv, **kw: pytest.fail(f"ran {argv}"))
    rec = Recorder(lambda e: None)
    signed.install(system, str(root), str(esp), rec, live_base=str(live))
    detail = last(rec).detail
    assert last(rec).outcome is Outcome.FAILED
    assert detail.startswith("the ESP /dev/nvme0n1p1 is too full for shim + signed GRUB: 0.0 MiB free"), detail
    assert "free at least" in detail


# ---- the fallback and the NVRAM entry of a shim system ------------------------------------------------------
def test_the_removable_fallback_of_a_shim_system_is_shim_with_grub_and_mokmanager_beside_it(installed, monkeypatch):
    root, esp, live, system = installed
    monkeypatch.setattr(signed, "run", debian_grub_install(root))
    rec = Recorder(lambda e: None)
    signed.install(system, str(root), str(esp), rec, live_base=str(live))
    fix._removable_fallback(system, str(root), str(esp), rec, windows_present=False)
    assert last(rec).outcome is Outcome.DONE, last(rec)
    assert (esp / "EFI/BOOT/BOOTX64.EFI").read_bytes() == (root / shim.SHIM_FILE).read_bytes()
    assert (esp / "EFI/BOOT/grubx64.efi").read_bytes() == (root / shim.GRUB_FILE).read_bytes()
    assert (esp / "EFI/BOOT/mmx64.efi").exists() and (esp / "EFI/BOOT/grub.cfg").exists()


def test_a_shim_system_whose_shim_is_gone_gets_no_unsigned_fallback_and_no_entry(installed):
    root, esp, _live, system = installed
    (esp / "EFI/debian/shimx64.efi").unlink()
    rec = Recorder(lambda e: None)
    fix._removable_fallback(system, str(root), str(esp), rec, windows_present=False)
    assert last(rec).outcome is Outcome.FAILED and "no signed shim" in last(rec).detail
    assert not (esp / "EFI/BOOT").exists()
    fix._nvram_linux(None, system, str(esp), rec)
    assert last(rec).step == "NVRAM entry" and last(rec).outcome is Outcome.FAILED


def test_an_unsigned_grub_on_a_secure_boot_machine_says_it_will_not_boot(tmp_path, monkeypatch):
    esp = tmp_path / "esp"
    put(esp, "EFI/debian/grubx64.efi", pe(b"g", signed_=False))
    system = LinuxSystem(root=ROOT, name="Debian", efi_id="debian", esp=ESP, efi=True)
    monkeypatch.setattr(secureboot, "state", lambda: secureboot.SecureBoot.ON)
    rec = Recorder(lambda e: None)
    fix._removable_fallback(system, str(tmp_path), str(esp), rec, windows_present=False)
    assert last(rec).outcome is Outcome.DONE  # the fallback is still written
    assert os.path.exists(esp / "EFI/BOOT/BOOTX64.EFI")
    assert shim.Chain.UNSIGNED in last(rec).detail and "Secure Boot on" in last(rec).detail
    monkeypatch.setattr(secureboot, "state", lambda: secureboot.SecureBoot.OFF)
    assert fix.unsigned_warning() == ""


def test_a_release_that_ships_a_dual_signed_shim_is_checked_against_that_file(installed, monkeypatch):
    root, esp, live, system = installed
    dual = root / "usr/lib/shim/shimx64.efi.dualsigned"
    (root / shim.SHIM_FILE).rename(dual)
    assert shim.signed_set(str(root), "x").shim == str(dual)
    fake = debian_grub_install(root)

    def grub_install(argv, **kw):
        (root / shim.SHIM_FILE).write_bytes(dual.read_bytes())  # what the fake copies from
        fake(argv, **kw)
        (root / shim.SHIM_FILE).unlink()
    monkeypatch.setattr(signed, "run", grub_install)
    rec = Recorder(lambda e: None)
    signed.install(system, str(root), str(esp), rec, live_base=str(live))
    assert last(rec).outcome is Outcome.DONE and "(chroot)" in last(rec).detail, last(rec)
