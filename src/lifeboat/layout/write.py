"""Write a DiskLayout onto a disk, exactly, and make the kernel see its partitions.

sfdisk writes the whole table in one pass with every identifier (disk GUID/signature, partition
GUIDs, names, attributes). The kernel is then told through BLKPG (`partx`), which works both on
kernels that parse tables themselves and on ones that do not (some build hosts).
"""

from __future__ import annotations

import os
import time

from lifeboat.errors import LifeboatError
from lifeboat.layout.model import DiskLayout, PartitionEntry
from lifeboat.run import run


def sfdisk_script(layout: DiskLayout) -> str:
    lines = [f"label: {layout.label}", f"label-id: {layout.disk_id}", "unit: sectors", f"sector-size: {layout.sector_size}"]
    if layout.label == "gpt":
        if layout.first_lba:
            lines.append(f"first-lba: {layout.first_lba}")
        if layout.last_lba:
            lines.append(f"last-lba: {layout.last_lba}")
    lines.append("")
    for p in layout.partitions:
        lines.append(f"part{p.number} : {_entry_fields(layout.label, p)}")
    return "\n".join(lines) + "\n"


def _entry_fields(label: str, p: PartitionEntry) -> str:
    fields = [f"start={p.start}", f"size={p.size}", f"type={p.type}"]
    if label == "gpt":
        if p.uuid:
            fields.append(f"uuid={p.uuid}")
        if p.name:
            fields.append('name="' + p.name.replace('"', "") + '"')
        if p.attrs:
            fields.append(f'attrs="{p.attrs}"')
    elif p.bootable:
        fields.append("bootable")
    return ", ".join(fields)


def apply_layout(disk: str, layout: DiskLayout) -> None:
    """Replace whatever table `disk` has with `layout`, then register its partitions with the kernel."""
    run(["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", "--wipe", "always", disk], input=sfdisk_script(layout))
    refresh_partitions(disk, layout)


def _kernel_partitions(disk: str) -> dict[int, tuple[int, int]]:
    """Partition number -> (start, size) in 512-byte sectors, as the kernel sees them now."""
    name = os.path.basename(os.path.realpath(disk))
    base = f"/sys/class/block/{name}"
    found = {}
    try:
        entries = os.listdir(base)
    except OSError:
        return found
    for entry in entries:
        part_dir = os.path.join(base, entry)
        try:
            with open(os.path.join(part_dir, "partition")) as f:
                number = int(f.read())
            with open(os.path.join(part_dir, "start")) as f:
                start = int(f.read())
            with open(os.path.join(part_dir, "size")) as f:
                size = int(f.read())
        except OSError:
            continue
        found[number] = (start, size)
    return found


def _expected(layout: DiskLayout) -> dict[int, tuple[int, int]]:
    factor = layout.sector_size // 512
    expected = {}
    for p in layout.partitions:
        # the kernel shows an MBR extended partition as a 1 KiB stub
        size = 2 if p.is_extended else p.size * factor
        expected[p.number] = (p.start * factor, size)
    return expected


def refresh_partitions(disk: str, layout: DiskLayout, attempts: int = 5) -> None:
    """Make the kernel's partitions of `disk` match `layout`, and wait until their nodes exist."""
    expected = _expected(layout)
    for attempt in range(attempts):
        run(["udevadm", "settle", "--timeout=10"], check=False)
        current = _kernel_partitions(disk)
        if _matches(current, expected) and _nodes_exist(disk, expected):
            return
        if current:
            run(["partx", "--update", disk], check=False)
        if _kernel_partitions(disk).keys() != expected.keys():
            run(["partx", "--delete", disk], check=False)
            run(["partx", "--add", disk], check=False)
        time.sleep(0.2 * (attempt + 1))
    run(["udevadm", "settle", "--timeout=10"], check=False)
    current = _kernel_partitions(disk)
    if not (_matches(current, expected) and _nodes_exist(disk, expected)):
        raise LifeboatError(f"{disk}: the kernel does not show the partitions just written (sees {sorted(current)})")


def _matches(current: dict[int, tuple[int, int]], expected: dict[int, tuple[int, int]]) -> bool:
    return all(current.get(n, (None, None))[0] == s for n, (s, _) in expected.items()) and set(current) == set(expected)


def partition_node(disk: str, number: int) -> str:
    """/dev/sda + 2 -> /dev/sda2; /dev/nvme0n1 + 2 -> /dev/nvme0n1p2; /dev/loop3 + 1 -> /dev/loop3p1."""
    real = os.path.realpath(disk)
    sep = "p" if real[-1].isdigit() else ""
    return f"{real}{sep}{number}"


def _nodes_exist(disk: str, expected: dict[int, tuple[int, int]]) -> bool:
    return all(os.path.exists(partition_node(disk, n)) for n in expected)


def ensure_partitions(disk: str, layout: DiskLayout) -> None:
    """Partition nodes for an existing table (a capture source). Asks the kernel only when they are missing."""
    expected = _expected(layout)
    if _matches(_kernel_partitions(disk), expected) and _nodes_exist(disk, expected):
        return
    refresh_partitions(disk, layout)
