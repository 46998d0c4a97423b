"""Restore of LVM volume groups, once the partitions exist on the target: each PV recreated with its
UUID (pvcreate --uuid --restorefile), the group's metadata restored (vgcfgrestore), the PVs grown to
their partitions, the group activated, each volume's data written, the data volumes extended and
their filesystems grown, swap made again; the group is deactivated afterwards, on error too.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable

from lifeboat.events import Outcome
from lifeboat.fs.grow import grow_filesystem, make_swap
from lifeboat.fs.registry import CaptureMode
from lifeboat.engine.lvm_plan import GroupAction, VolumeAction
from lifeboat.layout.write import partition_node
from lifeboat.repo.manifest import ImageManifest, LogicalVolumeImage, VolumeGroupImage
from lifeboat.repo.store import Repository
from lifeboat.volumes import lvm
from lifeboat.volumes.lvm_model import LvRole, grow_extents

WriteVolume = Callable[[str, VolumeAction, LogicalVolumeImage], None]  # (node, action, image) -> data written


def _group(manifest: ImageManifest, name: str) -> VolumeGroupImage:
    return next(vg for vg in manifest.volume_groups if vg.name == name)


def restore_groups(groups: tuple[GroupAction, ...], manifest: ImageManifest, repo: Repository, target: str,
                   write: WriteVolume, step, done) -> None:
    for action in groups:
        vg = _group(manifest, action.name)
        devices = [partition_node(target, n) for n in action.partitions]
        _recreate(vg, repo, devices, step, done)
        if action.rename:
            step(f"LVM {vg.name} as {action.rename}", "vgimportclone: new name, new PV and VG UUIDs")
            lvm.import_clone(devices, action.rename)
            done(f"LVM {vg.name} as {action.rename}", Outcome.DONE, "LV UUIDs kept")
        name = action.new_name
        try:
            lvm.activate(name, devices, read_only=False)
            sizes = _extents(vg, name, action, devices)
            for lv, volume in zip(vg.lvs, action.volumes):
                _restore_volume(name, vg, lv, volume, sizes[lv.name], devices, write, step, done)
        finally:
            lvm.deactivate(name, devices)
        done(f"LVM {name} deactivated", Outcome.DONE, ", ".join(devices))


def _recreate(vg: VolumeGroupImage, repo: Repository, devices: list[str], step, done) -> None:
    title = f"LVM {vg.name}"
    step(title, "physical volumes and metadata, same UUIDs")
    metadata = repo.get_chunk(vg.metadata.digest, vg.metadata.length)
    with tempfile.TemporaryDirectory(prefix="lifeboat-lvm-") as tmp:
        path = os.path.join(tmp, f"{vg.name}.vg")
        with open(path, "wb") as f:
            f.write(metadata)
        for pv, device in zip(vg.pvs, devices):
            lvm.create_pv(device, pv.uuid, path)
        lvm.restore_metadata(vg.name, devices, path)
    for device in devices:
        lvm.resize_pv(device)
    done(title, Outcome.DONE, f"PVs {', '.join(pv.uuid for pv in vg.pvs)} on {', '.join(devices)}, VG UUID {vg.uuid}")


def _extents(vg: VolumeGroupImage, name: str, action: GroupAction, devices: list[str]) -> dict[str, int]:
    """The volumes' extents now that the PVs have their size: what pvresize added, shared as planned."""
    added = lvm.free_extents(name, devices) - vg.free
    roles = {v.name: v.role for v in action.volumes}
    return grow_extents({lv.name: lv.size // vg.extent_size for lv in vg.lvs}, roles, added)


def _restore_volume(name: str, vg: VolumeGroupImage, lv: LogicalVolumeImage, volume: VolumeAction, extents: int,
                    devices: list[str], write: WriteVolume, step, done) -> None:
    node = lvm.node(name, lv.name)
    title = f"logical volume {name}/{lv.name} ({volume.fstype or volume.mode})"
    if volume.mode in (CaptureMode.USED_BLOCKS, CaptureMode.RAW):
        write(node, volume, lv)
    if extents * vg.extent_size > lv.size:
        lvm.extend_lv(name, lv.name, extents, devices)
    if volume.role is LvRole.SWAP:
        step(f"swap {name}/{lv.name}")
        make_swap(node, getattr(lv.content, "uuid", ""), getattr(lv.content, "label", ""))
        done(f"swap {name}/{lv.name}", Outcome.DONE, f"UUID {getattr(lv.content, 'uuid', '')}")
    elif extents * vg.extent_size > lv.size and volume.grow:
        step(f"grow {title}", volume.grow)
        done(f"grow {title}", Outcome.DONE, grow_filesystem(volume.grow, volume.fstype, node)
             + f" to {extents * vg.extent_size} bytes")
