"""Whether this machine booted with UEFI Secure Boot on, as the firmware tells the running kernel.

The firmware's global variable `SecureBoot` (EFI global variable GUID 8be4df61-…) is 1 when Secure Boot
is enforced for this boot; `SetupMode` is 1 when no platform key is enrolled (Secure Boot cannot be on).
Linux shows them under /sys/firmware/efi/efivars as 4 bytes of attributes followed by the value.
No /sys/firmware/efi at all means the machine booted through a BIOS (or UEFI's legacy CSM).
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

EFI_DIR = Path("/sys/firmware/efi")
GLOBAL_GUID = "8be4df61-93ca-11d2-aa0d-00e098032b8c"


class SecureBoot(StrEnum):
    """How this machine booted, in the words the TUI and reports show."""

    ON = "on"  # UEFI, Secure Boot enforced: only signed loaders and kernels run
    OFF = "off"  # UEFI, Secure Boot off (disabled in the firmware or in setup mode)
    BIOS = "bios"  # no UEFI: a BIOS or a UEFI's legacy mode (CSM)
    UNKNOWN = "unknown"  # UEFI, but the variable could not be read (efivarfs not mounted)


def _variable(efi_dir: Path, name: str) -> int | None:
    """The one-byte value of EFI global variable `name`, or None when it is missing or unreadable."""
    try:
        data = (efi_dir / "efivars" / f"{name}-{GLOBAL_GUID}").read_bytes()
    except OSError:
        return None
    return data[4] if len(data) >= 5 else None  # 4 bytes of attributes, then the value


def state(efi_dir: Path | None = None) -> SecureBoot:
    """The Secure Boot state of the running system (read from `efi_dir`, /sys/firmware/efi by default)."""
    where = EFI_DIR if efi_dir is None else efi_dir
    if not where.is_dir():
        return SecureBoot.BIOS
    efivars = where / "efivars"
    if not (efivars / f"SecureBoot-{GLOBAL_GUID}").exists():
        # a mounted efivarfs without the variable: a firmware that has no Secure Boot at all
        mounted = efivars.is_dir() and any(efivars.iterdir())
        return SecureBoot.OFF if mounted else SecureBoot.UNKNOWN
    enabled = _variable(where, "SecureBoot")
    if enabled is None:
        return SecureBoot.UNKNOWN
    if enabled == 1 and _variable(where, "SetupMode") != 1:
        return SecureBoot.ON
    return SecureBoot.OFF


def describe(value: SecureBoot) -> str:
    """One short phrase for a header or a report."""
    return {
        SecureBoot.ON: "Secure Boot on",
        SecureBoot.OFF: "UEFI, Secure Boot off",
        SecureBoot.BIOS: "BIOS boot",
        SecureBoot.UNKNOWN: "UEFI, Secure Boot unknown",
    }[value]
