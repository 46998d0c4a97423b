"""Capture of LVM volume groups: the live system's lvm2 reads the groups on the source's PVs, each
group's metadata is backed up (vgcfgbackup), its volumes are activated read-only (the kernel's
read-only flag; the metadata is not touched) and each logical volume is captured like a partition,
by its filesystem's used blocks. Groups Lifeboat cannot image volume by volume yet (thin pools,
snapshots, caches, RAID, PVs on other disks) leave their PVs to be copied whole, with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from lifeboat.devices import filesystem_facts, human_size, writable_mounts
from lifeboat.errors import LifeboatError
from lifeboat.events import LogLine, ProgressSink
from lifeboat.fs.registry import CaptureMode, FsKind, kind_for
from lifeboat.fs.volumes import VolumeKind
from lifeboat.layout.model import PartitionEntry
from lifeboat.repo.manifest import (BlobRef, Content, LogicalVolumeImage, LvmPvContent, LvSegmentImage,
                                    PhysicalVolumeImage, VolumeGroupImage)
from lifeboat.repo.store import Repository
from lifeboat.run import missing_tools
from lifeboat.volumes import lvm
from lifeboat.volumes.lvm_model import LogicalVolume, VolumeGroup

LVM_PV = FsKind("LVM2_member", CaptureMode.NONE)  # nothing read: its volumes are captured instead


@dataclass
class SourceGroup:
    group: VolumeGroup
    devices: tuple[str, ...]  # its PVs' nodes
    partitions: dict[str, int]  # PV UUID -> partition number (the container's, for a PV inside LUKS)
    metadata: bytes  # vgcfgbackup's text
    volumes: list = field(default_factory=list)  # engine.capture.SourcePartition, one per visible LV


def _device(node: str) -> int:
    """The device number of `node` (-1 when it is gone): a partition and an opened LUKS container alike,
    whichever name lvm2 gives it (/dev/vda2, /dev/mapper/NAME or /dev/dm-3)."""
    try:
        return os.stat(node).st_rdev
    except OSError:
        return -1


def _pv_partitions(parts: list) -> dict[int, object]:
    return {_device(p.node): p for p in parts if p.volume and p.volume.kind is VolumeKind.LVM_PV}


def inspect_groups(parts: list, progress: ProgressSink, measure: Callable[[object], None]) -> list[SourceGroup]:
    """The volume groups on `parts` (engine.capture.SourcePartition: partitions, and the opened contents of
    LUKS containers) that are imaged volume by volume; the PVs of the others keep their whole copy, with the
    reason in `part.reason`."""
    pvs = _pv_partitions(parts)
    if not pvs:
        return []
    missing = "lvm2 is not installed on this system" if missing_tools(["lvm"]) else ""
    if not missing and not lvm.device_mapper():
        missing = "this system's kernel has no device-mapper, so its logical volumes cannot be read one by one"
    if missing:
        for part in pvs.values():
            part.reason = f"{part.volume.describe}, copied whole: {missing}"
        return []
    found = []
    for group in lvm.read_groups(sorted(p.node for p in pvs.values())):
        members = {_device(pv.node): pv for pv in group.pvs}
        reason = group.unsupported(frozenset(pv.node for number, pv in members.items() if number in pvs))
        if reason:
            for node in members.keys() & pvs.keys():
                pvs[node].reason = f"{pvs[node].volume.describe}, copied whole: {reason}"
            progress(LogLine(f"LVM: {reason}; its physical volumes are copied whole", "warning"))
            continue
        devices = tuple(sorted(pvs[n].node for n in members))
        source = SourceGroup(group, devices, {pv.uuid: pvs[n].entry.number for n, pv in members.items()},
                             lvm.backup_metadata(group.name, devices))
        with lvm.activated(group.name, devices, read_only=True) as was_active:
            if was_active:
                progress(LogLine(f"LVM: volume group {group.name} was already active; it is left so"))
            source.volumes = [_volume(group, lv) for lv in group.visible_lvs]
            _refuse_writable(source)
            for volume in source.volumes:
                measure(volume)
        for number, pv in members.items():
            pvs[number].kind, pvs[number].pv = LVM_PV, LvmPvContent(group.name, pv.uuid)
        progress(LogLine(f"LVM: volume group {group.name}: {len(source.volumes)} logical volumes "
                         f"({', '.join(v.title for v in source.volumes)}), imaged one by one"))
        found.append(source)
    return found


def _volume(group: VolumeGroup, lv: LogicalVolume):
    from lifeboat.engine.capture import SourcePartition  # the partition record, reused for a volume

    node = lvm.node(group.name, lv.name)
    facts = filesystem_facts(node)
    entry = PartitionEntry(0, 0, lv.size // 512, "")
    return SourcePartition(entry, node, facts.fstype, kind_for(facts.fstype), facts.uuid, facts.label,
                           name=f"{group.name}/{lv.name}")


def _refuse_writable(source: SourceGroup) -> None:
    writable = writable_mounts()
    for volume in source.volumes:
        where = writable.get(os.stat(volume.node).st_rdev)
        if where:
            raise LifeboatError(f"{volume.name} ({volume.node}) is mounted read-write on {where}: unmount it (or "
                                "remount it read-only) before capturing; nothing was written")


def capture_groups(groups: list[SourceGroup], repo: Repository, writer, capture: Callable[[object], Content]
                   ) -> tuple[VolumeGroupImage, ...]:
    """Store each group's metadata and its volumes' data (activated read-only for the time of it)."""
    out = []
    for source in groups:
        group = source.group
        digest, written = repo.put_chunk(source.metadata, writer.level)
        writer.stored += written
        with lvm.activated(group.name, source.devices, read_only=True):
            lvs = []
            for volume, lv in zip(source.volumes, group.visible_lvs):
                content = capture(volume)
                writer.progress(LogLine(f"{volume.title}: {human_size(volume.to_read)} stored from "
                                        f"{human_size(lv.size)}"))
                lvs.append(LogicalVolumeImage(
                    lv.name, lv.uuid, lv.size, content, lv.extents, lv.tags,
                    tuple(LvSegmentImage(s.start_extent, s.extents, s.type, s.stripes, s.devices) for s in lv.segments)))
        pvs = tuple(PhysicalVolumeImage(source.partitions[pv.uuid], pv.uuid, pv.pe_start, pv.extents)
                    for pv in group.pvs)
        out.append(VolumeGroupImage(group.name, group.uuid, group.extent_size, BlobRef(digest, len(source.metadata)),
                                    tuple(lvs), group.extents, group.free, group.tags, pvs))
    return tuple(out)
