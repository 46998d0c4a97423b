"""Read a disk's partition table into a DiskLayout.

pyparted gives geometry, names and flags; it cannot read the identifiers that boot references
depend on (GPT disk GUID, partition unique GUIDs, GPT type GUIDs, MBR signature), so those come
from `sfdisk --json`. The two readings are cross-checked: a disagreement is an error, not a guess.
"""

from __future__ import annotations

import json

import parted

from lifeboat.errors import LifeboatError
from lifeboat.layout.model import DiskLayout, PartitionEntry
from lifeboat.run import run


def _sfdisk_table(path: str) -> dict:
    proc = run(["sfdisk", "--json", path], check=False)
    if proc.returncode != 0:
        raise LifeboatError(f"{path}: no readable partition table ({proc.stderr.strip() or 'sfdisk failed'})")
    return json.loads(proc.stdout)["partitiontable"]


def _parted_partitions(path: str) -> tuple[str, dict[int, dict]]:
    device = parted.getDevice(path)
    try:
        disk = parted.newDisk(device)
    except parted.PartedException as exc:  # noqa: F841 - parted says "unrecognised disk label"
        raise LifeboatError(f"{path}: parted cannot read its partition table: {exc}") from None
    found = {}
    for part in disk.partitions:
        if part.number < 1:
            continue
        flags = tuple(sorted(parted.partitionFlag[f] for f in parted.partitionFlag if part.getFlag(f)))
        name = ""
        if disk.supportsFeature(parted.DISK_TYPE_PARTITION_NAME):
            try:
                name = part.name or ""
            except parted.PartitionException:
                name = ""
        found[part.number] = {
            "start": part.geometry.start,
            "size": part.geometry.length,
            "name": name,
            "flags": flags,
        }
    label = disk.type
    device.removeFromCache()
    return ("dos" if label == "msdos" else label), found


def read_layout(path: str) -> DiskLayout:
    table = _sfdisk_table(path)
    label = table["label"]
    if label not in ("gpt", "dos"):
        raise LifeboatError(f"{path}: partition table type '{label}' is not supported (only GPT and MBR)")
    parted_label, parted_parts = _parted_partitions(path)
    if parted_label != label:
        raise LifeboatError(f"{path}: parted sees a '{parted_label}' table, sfdisk a '{label}' table")
    sector_size = int(table.get("sectorsize", 512))
    with open(path, "rb") as f:
        disk_bytes = f.seek(0, 2)
    entries = []
    for p in table.get("partitions", []):
        number = _trailing_number(p["node"])
        seen = parted_parts.get(number)
        if seen is None or seen["start"] != p["start"] or seen["size"] != p["size"]:
            raise LifeboatError(f"{path}: partition {number}: parted and sfdisk disagree about its geometry")
        entries.append(
            PartitionEntry(
                number=number,
                start=int(p["start"]),
                size=int(p["size"]),
                type=str(p["type"]).upper() if label == "gpt" else str(p["type"]).lower(),
                uuid=str(p.get("uuid", "")).upper(),
                name=p.get("name", "") or seen["name"],
                attrs=p.get("attrs", ""),
                bootable=bool(p.get("bootable", False)),
                flags=seen["flags"],
            )
        )
    entries.sort(key=lambda e: e.number)
    return DiskLayout(
        label=label,
        disk_id=str(table.get("id", "")).upper() if label == "gpt" else str(table.get("id", "")).lower(),
        sector_size=sector_size,
        disk_sectors=disk_bytes // sector_size,
        partitions=tuple(entries),
        first_lba=int(table.get("firstlba", 0)),
        last_lba=int(table.get("lastlba", 0)),
    )


def _trailing_number(node: str) -> int:
    digits = ""
    for ch in reversed(node):
        if not ch.isdigit():
            break
        digits = ch + digits
    return int(digits)
