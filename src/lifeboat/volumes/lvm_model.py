"""LVM volume groups as lvm2 reports them: parsing and arithmetic, pure (no lvm2 needed, no root).

`vgs`, `pvs` and `lvs --segments -a` with `--reportformat json --units b --nosuffix` are read into
frozen VolumeGroup trees; `unsupported()` says why a group cannot be imaged volume by volume yet
(thin pools, snapshots, caches, RAID and mirrors: its PVs are copied whole instead); `grow_extents()`
shares the extents a larger disk adds among the volumes that hold data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum

from lifeboat.errors import LifeboatError

SIMPLE_SEGTYPES = frozenset({"linear", "striped"})
_ATTR_KINDS = {"s": "a snapshot", "o": "the origin of a snapshot", "t": "a thin pool", "V": "a thin volume",
               "r": "a RAID volume", "R": "a RAID volume", "m": "a mirror", "M": "a mirror", "C": "a cached volume",
               "e": "a pool's metadata", "v": "a virtual volume", "i": "a mirror/RAID image", "d": "a VDO pool",
               "D": "a VDO pool's data", "l": "a mirror log", "p": "a pvmove volume"}
REPORT_ARGS = ["--reportformat", "json", "--units", "b", "--nosuffix"]
VG_FIELDS = "vg_name,vg_uuid,vg_extent_size,vg_extent_count,vg_free_count,vg_tags,pv_count,lv_count"
PV_FIELDS = "pv_name,pv_uuid,vg_name,pv_size,dev_size,pe_start,pv_pe_count,pv_pe_alloc_count,pv_tags"
LV_FIELDS = ("vg_name,lv_name,lv_uuid,lv_size,lv_attr,lv_tags,lv_active,segtype,seg_start_pe,seg_size_pe,"
             "stripes,devices")


class LvRole(StrEnum):
    """What a restore onto a larger disk does with a logical volume."""

    DATA = "data"  # holds a filesystem Lifeboat can grow: it gets its share of the new extents
    SWAP = "swap"  # recorded, recreated with its UUID, kept its size
    FIXED = "fixed"  # anything else (copied raw, a filesystem that cannot grow): kept its size


@dataclass(frozen=True)
class Segment:
    start_extent: int  # in the LV
    extents: int
    type: str  # linear | striped | ...
    stripes: int
    devices: str  # lvm2's "/dev/vda2(0)" list


@dataclass(frozen=True)
class LogicalVolume:
    name: str
    uuid: str
    size: int  # bytes
    attr: str  # lvm2's lv_attr, "-wi-a-----"
    tags: tuple[str, ...] = ()
    active: bool = False
    segments: tuple[Segment, ...] = ()

    @property
    def hidden(self) -> bool:
        return self.name.startswith("[")

    @property
    def extents(self) -> int:
        return sum(s.extents for s in self.segments)

    def unsupported(self) -> str:
        """Why this volume cannot be imaged on its own ("" when it can)."""
        kind = _ATTR_KINDS.get(self.attr[:1], "")
        if kind:
            return f"{self.name.strip('[]')} is {kind}"
        odd = sorted({s.type for s in self.segments} - SIMPLE_SEGTYPES)
        return f"{self.name.strip('[]')} has {', '.join(odd)} segments" if odd else ""


@dataclass(frozen=True)
class PhysicalVolume:
    node: str  # /dev/vda2, as lvm2 names it
    uuid: str
    size: int  # bytes lvm2 uses
    dev_size: int  # bytes of the device
    pe_start: int  # byte offset of the first extent
    extents: int
    allocated: int
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class VolumeGroup:
    name: str
    uuid: str
    extent_size: int  # bytes
    extents: int
    free: int  # extents
    tags: tuple[str, ...] = ()
    pvs: tuple[PhysicalVolume, ...] = ()
    lvs: tuple[LogicalVolume, ...] = ()  # hidden ones ("[x_tdata]") included
    pv_count: int = 0  # as the metadata says: more than len(pvs) when some are missing or elsewhere

    @property
    def visible_lvs(self) -> tuple[LogicalVolume, ...]:
        return tuple(lv for lv in self.lvs if not lv.hidden)

    def unsupported(self, nodes: frozenset[str]) -> str:
        """Why the group's PVs must be copied whole ("" when its volumes can be imaged one by one); `nodes`:
        the source disk's partition nodes."""
        if self.pv_count != len(self.pvs):
            return f"volume group {self.name} has {self.pv_count} physical volumes, {len(self.pvs)} of them found"
        away = [pv.node for pv in self.pvs if pv.node not in nodes]
        if away:
            return f"volume group {self.name} spans other disks too ({', '.join(away)})"
        for lv in self.lvs:
            reason = lv.unsupported()
            if reason:
                return f"volume group {self.name}: {reason}, which Lifeboat does not image volume by volume yet"
        return ""


def _report_rows(text: str, key: str, command: str) -> list[dict[str, str]]:
    try:
        data = json.loads(text)
        rows = [row for part in data["report"] for row in part.get(key, [])]
    except (ValueError, KeyError, TypeError) as exc:
        raise LifeboatError(f"{command}: unexpected report ({type(exc).__name__}: {exc})") from None
    if not all(isinstance(r, dict) for r in rows):
        raise LifeboatError(f"{command}: unexpected report (rows are not objects)")
    return rows


def _int(row: dict[str, str], key: str, command: str) -> int:
    value = row.get(key, "")
    try:
        return int(value) if value != "" else 0
    except ValueError:
        raise LifeboatError(f"{command}: {key} {value!r} is not a number") from None


def _tags(value: str) -> tuple[str, ...]:
    return tuple(t for t in value.split(",") if t)


def _lvs(rows: list[dict[str, str]], vg: str) -> tuple[LogicalVolume, ...]:
    """One LogicalVolume per name, its segments in order (`lvs --segments` gives a row per segment)."""
    by_name: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        if row.get("vg_name") == vg:
            by_name.setdefault(row.get("lv_name", ""), []).append(row)
    out = []
    for name, segs in by_name.items():
        first = segs[0]
        segments = tuple(Segment(_int(s, "seg_start_pe", "lvs"), _int(s, "seg_size_pe", "lvs"), s.get("segtype", ""),
                                 _int(s, "stripes", "lvs"), s.get("devices", "")) for s in segs)
        out.append(LogicalVolume(name, first.get("lv_uuid", ""), _int(first, "lv_size", "lvs"), first.get("lv_attr", ""),
                                 _tags(first.get("lv_tags", "")), first.get("lv_active", "") == "active",
                                 tuple(sorted(segments, key=lambda s: s.start_extent))))
    return tuple(out)


def parse_reports(vgs: str, pvs: str, lvs: str) -> list[VolumeGroup]:
    """The groups in the JSON reports of `vgs -o VG_FIELDS`, `pvs -o PV_FIELDS` and
    `lvs --segments -a -o LV_FIELDS` (each with REPORT_ARGS)."""
    pv_rows, lv_rows = _report_rows(pvs, "pv", "pvs"), _report_rows(lvs, "seg", "lvs") + _report_rows(lvs, "lv", "lvs")
    groups = []
    for row in _report_rows(vgs, "vg", "vgs"):
        name = row.get("vg_name", "")
        members = tuple(
            PhysicalVolume(p.get("pv_name", ""), p.get("pv_uuid", ""), _int(p, "pv_size", "pvs"), _int(p, "dev_size", "pvs"),
                           _int(p, "pe_start", "pvs"), _int(p, "pv_pe_count", "pvs"), _int(p, "pv_pe_alloc_count", "pvs"),
                           _tags(p.get("pv_tags", "")))
            for p in pv_rows if p.get("vg_name") == name)
        groups.append(VolumeGroup(name, row.get("vg_uuid", ""), _int(row, "vg_extent_size", "vgs"),
                                  _int(row, "vg_extent_count", "vgs"), _int(row, "vg_free_count", "vgs"),
                                  _tags(row.get("vg_tags", "")), members, _lvs(lv_rows, name),
                                  _int(row, "pv_count", "vgs")))
    return groups


def metadata_facts(text: str) -> tuple[str, str]:
    """(VG name, VG id) from vgcfgbackup's text: its first `NAME {` and the `id = "..."` inside it."""
    name, vg_id = "", ""
    for line in text.splitlines():
        stripped = line.strip()
        if not name and stripped.endswith("{") and not line[:1].isspace():
            name = stripped[:-1].strip()
        elif name and stripped.startswith("id = ") and not vg_id:
            vg_id = stripped.split("=", 1)[1].strip().strip('"')
            break
    return name, vg_id


def renamed_metadata(text: str, old: str, new: str) -> str:
    """vgcfgbackup's text with the group's top-level name `old` replaced by `new`."""
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if not line[:1].isspace() and line.rstrip().endswith("{"):
            if line.split("{", 1)[0].strip() != old:
                raise LifeboatError(f"volume group metadata names {line.split('{', 1)[0].strip()!r}, not {old!r}")
            lines[i] = f"{new} {{\n"
            return "".join(lines)
    raise LifeboatError(f"volume group metadata of {old!r} has no group section")


def pv_extents(partition_bytes: int, pe_start: int, extent_size: int) -> int:
    """Extents a PV of `partition_bytes` holds (one metadata area at its start, as pvcreate makes it)."""
    return max(0, (partition_bytes - pe_start) // extent_size)


def grow_extents(sizes: dict[str, int], roles: dict[str, LvRole], added: int) -> dict[str, int]:
    """New extent counts of the volumes `sizes` (name -> extents today) when the group gains `added`
    extents: the volumes with role DATA share them in proportion to their size (the rounding remainder
    goes to the largest); swap and fixed volumes, and the group's free extents, keep their size."""
    data = [name for name in sizes if roles.get(name) is LvRole.DATA]
    out = dict(sizes)
    total = sum(sizes[n] for n in data)
    if added <= 0 or total <= 0:
        return out
    given = 0
    for name in data:
        share = added * sizes[name] // total
        out[name] += share
        given += share
    largest = max(data, key=lambda n: (sizes[n], n))
    out[largest] += added - given
    return out


def shrink_extents(sizes: dict[str, int], mins: dict[str, int], roles: dict[str, LvRole], free: int,
                   removed: int) -> tuple[dict[str, int], int]:
    """New extent counts of the volumes `sizes` (name -> extents today) when the group loses `removed`
    extents, and how many extents are still missing (0 when it fits). The group's `free` extents go
    first; then the DATA volumes give up the rest in proportion to their room above their minimum
    (`mins`, name -> extents); only then does swap shrink (down to its minimum), and last the FIXED
    volumes whose content can be made smaller (a minimum below their size); the others keep theirs."""
    out = dict(sizes)
    missing = max(0, removed - free)
    for role in (LvRole.DATA, LvRole.SWAP, LvRole.FIXED):
        names = [n for n in sizes if roles.get(n) is role]
        missing = _take_extents(out, mins, names, missing)
    return out, missing


def _take_extents(sizes: dict[str, int], mins: dict[str, int], names: list[str], deficit: int) -> int:
    """Take `deficit` extents from `names` in proportion to each one's room above its minimum; what is
    still missing."""
    room = {n: max(0, sizes[n] - mins.get(n, sizes[n])) for n in names}
    total = sum(room.values())
    if deficit <= 0 or total <= 0:
        return max(0, deficit)
    keep = max(0, total - deficit)  # the room left is shared in proportion to the room each had
    taken = 0
    for n in names:
        cut = room[n] - keep * room[n] // total
        sizes[n] -= cut
        taken += cut
    for n in sorted(names, key=lambda k: (sizes[k] - mins.get(k, sizes[k]), k), reverse=True):
        if taken >= deficit:
            break
        if sizes[n] > mins.get(n, sizes[n]):
            sizes[n] -= 1
            taken += 1
    return max(0, deficit - taken)
