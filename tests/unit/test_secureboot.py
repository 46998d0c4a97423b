"""lifeboat.secureboot reads the firmware's SecureBoot and SetupMode variables as efivarfs shows them."""

from __future__ import annotations

from pathlib import Path

from lifeboat.secureboot import GLOBAL_GUID, SecureBoot, describe, state

ATTRIBUTES = b"\x06\x00\x00\x00"  # boot service + runtime access, as efivarfs prints them


def efi_tree(tmp_path: Path, **variables: int) -> Path:
    efivars = tmp_path / "efi" / "efivars"
    efivars.mkdir(parents=True)
    (efivars / f"BootCurrent-{GLOBAL_GUID}").write_bytes(ATTRIBUTES + b"\x01\x00")
    for name, value in variables.items():
        (efivars / f"{name}-{GLOBAL_GUID}").write_bytes(ATTRIBUTES + bytes([value]))
    return tmp_path / "efi"


def test_no_efi_directory_is_a_bios_boot(tmp_path):
    assert state(tmp_path / "efi") is SecureBoot.BIOS


def test_secure_boot_enforced(tmp_path):
    assert state(efi_tree(tmp_path, SecureBoot=1, SetupMode=0)) is SecureBoot.ON


def test_secure_boot_disabled(tmp_path):
    assert state(efi_tree(tmp_path, SecureBoot=0, SetupMode=0)) is SecureBoot.OFF


def test_setup_mode_is_never_enforced(tmp_path):
    assert state(efi_tree(tmp_path, SecureBoot=1, SetupMode=1)) is SecureBoot.OFF


def test_firmware_without_the_variable_is_off(tmp_path):
    assert state(efi_tree(tmp_path)) is SecureBoot.OFF


def test_efivarfs_not_mounted_is_unknown(tmp_path):
    (tmp_path / "efi" / "efivars").mkdir(parents=True)
    assert state(tmp_path / "efi") is SecureBoot.UNKNOWN


def test_truncated_variable_is_unknown(tmp_path):
    efi = efi_tree(tmp_path)
    (efi / "efivars" / f"BootCurrent-{GLOBAL_GUID}").unlink()
    (efi / "efivars" / f"SecureBoot-{GLOBAL_GUID}").write_bytes(ATTRIBUTES)
    assert state(efi) is SecureBoot.UNKNOWN


def test_every_state_has_a_phrase():
    assert describe(SecureBoot.ON) == "Secure Boot on"
    assert all(describe(value) for value in SecureBoot)
