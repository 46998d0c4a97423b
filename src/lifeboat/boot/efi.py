"""UEFI firmware boot entries (NVRAM), through efibootmgr."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from lifeboat.errors import CommandTimedOut
from lifeboat.run import run

EFI_SYSFS = "/sys/firmware/efi"
# efibootmgr normally returns within a second. It has been seen to hang now and then (under OVMF in
# QEMU, and upstream reports the same on real machines: rhboot/efibootmgr#140); a hang must become a
# reported failure, never a job that waits forever.
EFIBOOTMGR_TIMEOUT = 60.0
_ENTRY = re.compile(r"^Boot([0-9A-Fa-f]{4})(\*?)\s+(.*)$")


@dataclass(frozen=True)
class BootEntry:
    num: str  # "0003"
    active: bool
    label: str
    path: str  # everything after the label: HD(...)/File(\EFI\...) or the raw device path


def booted_under_uefi() -> bool:
    return os.path.isdir(EFI_SYSFS)


def parse_efibootmgr(text: str) -> list[BootEntry]:
    """Entries from `efibootmgr -v` (the label and path are separated by a tab in efibootmgr >= 17,
    by spaces in older versions)."""
    entries = []
    for line in text.splitlines():
        m = _ENTRY.match(line.rstrip())
        if not m:
            continue
        rest = m.group(3)
        if "\t" in rest:
            label, _, path = rest.partition("\t")
        else:
            idx = re.search(r"\s(HD|PciRoot|VenHw|BBS|FvVol|Fv\(|VenMsg|File)\(?", rest)
            label, path = (rest[: idx.start()], rest[idx.start():]) if idx else (rest, "")
        entries.append(BootEntry(m.group(1).upper(), m.group(2) == "*", label.strip(), path.strip()))
    return entries


def loader_in_path(loader: str, path: str) -> bool:
    """Is the EFI loader path (\\EFI\\debian\\grubx64.efi) the file this entry boots?"""
    norm = loader.replace("/", "\\").lower()
    return norm in path.replace("/", "\\").lower()


def _efibootmgr(*args: str) -> str:
    """Run efibootmgr, bounded in time; a run that hangs is killed and tried once more (every call here
    is safe to repeat: create_entry first removes what an interrupted run may have left)."""
    argv = ["efibootmgr", *args]
    try:
        return run(argv, timeout=EFIBOOTMGR_TIMEOUT).stdout
    except CommandTimedOut:
        return run(argv, timeout=EFIBOOTMGR_TIMEOUT).stdout


def list_entries() -> list[BootEntry]:
    return parse_efibootmgr(_efibootmgr("-v"))


def entry_for(loader: str, entries: list[BootEntry], partuuid: str | None = None) -> BootEntry | None:
    for e in entries:
        if loader_in_path(loader, e.path) and (partuuid is None or partuuid.lower() in e.path.lower()):
            return e
    return None


def create_entry(disk: str, part_number: int, label: str, loader: str) -> None:
    """Replace any entry with the same label and loader, then create it first in BootOrder."""
    for e in list_entries():
        if e.label == label and loader_in_path(loader, e.path):
            _efibootmgr("-q", "-b", e.num, "-B")
    _efibootmgr("-q", "-c", "-d", disk, "-p", str(part_number), "-L", label, "-l", loader)
