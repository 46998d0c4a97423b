"""sfdisk's dump format (`sfdisk -d`, Clonezilla's `<disk>-pt.sf`) read into a DiskLayout.

    label: gpt
    label-id: 039BD725-27EE-C148-9720-9EFE1D8051EC
    device: /dev/sda
    unit: sectors
    first-lba: 2048
    last-lba: 942046
    sector-size: 512

    /dev/sda1 : start=2048, size=65536, type=C12A…, uuid=E919…, name="EFI system", attrs="…"
    /dev/sdb1 : start=2048, size=131072, type=83, bootable

Identifiers are kept exactly as layout/read.py keeps those of a live disk (GPT upper case, MBR
lower case), so a layout read from a dump and one read from the disk compare equal.
"""

from __future__ import annotations

import re

from lifeboat.errors import ImageCorrupt
from lifeboat.layout.model import DiskLayout, PartitionEntry

_FIELD = re.compile(r'\s*([a-z-]+)\s*(?:=\s*("(?:[^"\\]|\\.)*"|[^,]*))?\s*(?:,|$)')
_TRAILING_NUMBER = re.compile(r"(\d+)$")


def _fields(text: str) -> dict[str, str]:
    out, pos = {}, 0
    text = text.strip()
    while pos < len(text):
        m = _FIELD.match(text, pos)
        if not m or m.end() == pos:
            raise ValueError(f"cannot read {text[pos:]!r}")
        value = m.group(2) or ""
        if value.startswith('"'):
            value = value[1:-1].replace('\\"', '"')
        out[m.group(1)] = value.strip() if m.group(2) is not None else "yes"
        pos = m.end()
    return out


def parse_sfdisk_dump(text: str, disk_sectors: int, where: str) -> DiskLayout:
    """The layout in an sfdisk dump. `disk_sectors` is the size of the disk it was read from."""
    header: dict[str, str] = {}
    rows: list[tuple[str, dict[str, str]]] = []
    try:
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if " : " in line or line.endswith(" :"):
                node, _, rest = line.partition(":")
                rows.append((node.strip(), _fields(rest)))
            elif ":" in line:
                key, _, value = line.partition(":")
                header[key.strip()] = value.strip()
    except ValueError as exc:
        raise ImageCorrupt(f"{where}: not an sfdisk dump ({exc})") from None
    label = header.get("label", "")
    if label not in ("gpt", "dos"):
        raise ImageCorrupt(f"{where}: partition table type {label!r} is not supported (only GPT and MBR)")
    gpt = label == "gpt"
    entries = []
    for node, f in rows:
        number = _TRAILING_NUMBER.search(node)
        if not number or "start" not in f or "size" not in f or "type" not in f:
            raise ImageCorrupt(f"{where}: partition line for {node} lacks a number, start, size or type")
        entries.append(PartitionEntry(
            number=int(number.group(1)), start=int(f["start"]), size=int(f["size"]),
            type=f["type"].upper() if gpt else f["type"].lower().removeprefix("0x"),
            uuid=f.get("uuid", "").upper(), name=f.get("name", ""), attrs=f.get("attrs", ""),
            bootable="bootable" in f,
        ))
    entries.sort(key=lambda e: e.number)
    disk_id = header.get("label-id", "")
    return DiskLayout(
        label=label,
        disk_id=disk_id.upper() if gpt else disk_id.lower(),
        sector_size=int(header.get("sector-size", "512")),
        disk_sectors=disk_sectors,
        partitions=tuple(entries),
        first_lba=int(header.get("first-lba", "0")) if gpt else 0,
        last_lba=int(header.get("last-lba", "0")) if gpt else 0,
    )
