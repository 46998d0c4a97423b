"""The LVM files of a Clonezilla image (what ocs-sr's save_logv writes), read as plain data:

    lvm_vg_dev.list    one line per PV: "<VG> /dev/<partition> <PV UUID>"
    lvm_logv.list      one line per LV: "/dev/<VG>/<LV> <what `file -Ls` said of it>"
    lvm_<VG>.conf      the group's metadata (vgcfgbackup), read by foreign.vgconf
    <VG>-<LV>.<fs>-ptcl-img.<comp>[.aa …]   each LV's partclone image (Clonezilla names a device
                       /dev/A/B as the file name A-B, slashes turned into dashes)
    swappt-<VG>-<LV>.info   UUID and LABEL of a swap LV (recreated, not stored)

Groups whose PVs are whole disks, span disks the image does not hold, or have volumes Lifeboat does not
restore one by one (thin pools, snapshots, RAID, caches) are errors naming the file.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from lifeboat.errors import ImageCorrupt
from lifeboat.volumes.lvm_model import VolumeGroup
from lifeboat.foreign.vgconf import parse_metadata

PV_LIST, LV_LIST = "lvm_vg_dev.list", "lvm_logv.list"
_FILE_UUID = re.compile(r"\bUUID=([0-9A-Fa-f-]{8,})")
_FILE_LABEL = re.compile(r'volume name "([^"]*)"')


@dataclass(frozen=True)
class CzPhysicalVolume:
    vg: str
    device: str  # sda2, as the list names it without /dev/
    uuid: str


@dataclass(frozen=True)
class CzVolumeLine:
    vg: str
    lv: str
    described: str  # what `file -Ls` said: "Linux rev 1.0 ext4 filesystem data, UUID=…"

    @property
    def device(self) -> str:
        """Clonezilla's file name of the volume (to_ocs_dev_img_name): /dev/VG/LV → VG-LV."""
        return f"{self.vg}-{self.lv}"

    @property
    def is_swap(self) -> bool:
        return "swap" in self.described.lower()

    @property
    def file_uuid(self) -> str:
        m = _FILE_UUID.search(self.described)
        return m.group(1).lower() if m else ""

    @property
    def file_label(self) -> str:
        m = _FILE_LABEL.search(self.described)
        return m.group(1) if m else ""


@dataclass(frozen=True)
class CzLvmFiles:
    pvs: tuple[CzPhysicalVolume, ...]
    volumes: tuple[CzVolumeLine, ...]
    groups: tuple[tuple[VolumeGroup, str], ...]  # (the group as its metadata says, the metadata file)

    @property
    def devices(self) -> frozenset[str]:
        """The partitions that are PVs (sda2, …)."""
        return frozenset(pv.device for pv in self.pvs)

    @property
    def volume_files(self) -> frozenset[str]:
        """Clonezilla's names of the logical volumes (VG-LV): their image and swappt- files."""
        return frozenset(v.device for v in self.volumes)


def _lines(path: Path) -> list[tuple[int, list[str]]]:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        raise ImageCorrupt(f"{path}: file is missing (the image holds other LVM files)") from None
    except OSError as exc:
        raise ImageCorrupt(f"{path}: cannot be read ({exc.strerror})") from None
    return [(n, line.split()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def _pvs(d: Path) -> tuple[CzPhysicalVolume, ...]:
    out = []
    for n, words in _lines(d / PV_LIST):
        if len(words) != 3 or not words[1].startswith("/dev/"):
            raise ImageCorrupt(f"{d / PV_LIST}, line {n}: expected '<VG> /dev/<partition> <PV UUID>'")
        vg, dev, uuid = words
        if vg == "/NOT_FOUND":
            raise ImageCorrupt(f"{d / PV_LIST}, line {n}: {dev} is a PV without a volume group; Clonezilla "
                               "saved no volume of it")
        out.append(CzPhysicalVolume(vg, dev[len("/dev/"):], uuid))
    if not out:
        raise ImageCorrupt(f"{d / PV_LIST}: lists no physical volume")
    return tuple(out)


def _volumes(d: Path, groups: set[str]) -> tuple[CzVolumeLine, ...]:
    out = []
    path = d / LV_LIST
    if not path.exists():  # a group without volumes: Clonezilla writes no list
        return ()
    for n, words in _lines(path):
        parts = words[0].split("/") if words else []
        if len(parts) != 4 or parts[:2] != ["", "dev"]:
            raise ImageCorrupt(f"{path}, line {n}: expected '/dev/<VG>/<LV> <description>'")
        if parts[2] not in groups:
            raise ImageCorrupt(f"{path}, line {n}: volume group {parts[2]} is not in {PV_LIST}")
        out.append(CzVolumeLine(parts[2], parts[3], " ".join(words[1:])))
    return tuple(out)


def read_lvm_files(d: Path) -> CzLvmFiles | None:
    """The image's LVM files (None when it has none). Raises ImageCorrupt naming the file."""
    if not (d / PV_LIST).exists():
        stray = sorted(n for n in os.listdir(d) if n.startswith("lvm_"))
        if stray:
            raise ImageCorrupt(f"{d / stray[0]}: LVM files without {PV_LIST}; the image is incomplete")
        return None
    pvs = _pvs(d)
    names = list(dict.fromkeys(pv.vg for pv in pvs))
    groups = []
    for name in names:
        conf = d / f"lvm_{name}.conf"
        try:
            text = conf.read_text(errors="replace")
        except FileNotFoundError:
            raise ImageCorrupt(f"{conf}: file is missing: the metadata of volume group {name}") from None
        except OSError as exc:  # ocs-sr writes it readable by root only
            raise ImageCorrupt(f"{conf}: cannot be read ({exc.strerror})") from None
        group = parse_metadata(text, str(conf))
        if group.name != name:
            raise ImageCorrupt(f"{conf}: describes volume group {group.name}, {PV_LIST} names {name}")
        _check_group(group, [pv for pv in pvs if pv.vg == name], conf)
        groups.append((group, str(conf)))
    return CzLvmFiles(pvs, _volumes(d, set(names)), tuple(groups))


def _check_group(group: VolumeGroup, pvs: list[CzPhysicalVolume], conf: Path) -> None:
    listed = {pv.uuid for pv in pvs}
    known = {pv.uuid for pv in group.pvs}
    if listed != known:
        away = sorted(known - listed)
        raise ImageCorrupt(f"{conf}: volume group {group.name} has physical volumes {', '.join(away)} that "
                           f"{PV_LIST} does not list (on another disk): not supported" if away else
                           f"{conf}: {PV_LIST} lists PVs of {group.name} its metadata does not have")
    for lv in group.lvs:
        reason = lv.unsupported()
        if lv.hidden or reason:
            why = reason or f"{lv.name.strip('[]')} is a hidden volume"
            raise ImageCorrupt(f"{conf}: volume group {group.name}: {why}, which Lifeboat does not restore "
                               "from a Clonezilla image")
