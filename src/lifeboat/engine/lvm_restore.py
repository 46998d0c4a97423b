"""Restore of LVM volume groups, once the partitions exist on the target: each PV recreated with its
UUID (pvcreate --uuid --restorefile), the group's metadata restored (vgcfgrestore), the PVs grown to
their partitions, the group activated, each volume's data written, the data volumes extended and
their filesystems grown, swap made again; the group is deactivated afterwards, on error too. On a
smaller disk the metadata is first rewritten for the smaller PV (lvm_metadata.resized_metadata: same
UUIDs, each volume at its planned size), and each shrinking volume's filesystem is shrunk in place or
made anew with its files copied, as shrink_restore does for partitions.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable

from lifeboat.events import Outcome
from lifeboat.fs.grow import grow_filesystem, make_swap
from lifeboat.fs.registry import CaptureMode
from lifeboat.engine import shrink_restore
from lifeboat.engine.lvm_plan import GroupAction, VolumeAction
from lifeboat.imagefs.view import lv_space_name
from lifeboat.layout.write import partition_node
from lifeboat.repo.manifest import ImageManifest, LogicalVolumeImage, VolumeGroupImage
from lifeboat.repo.store import Repository
from lifeboat.volumes import lvm
from lifeboat.volumes.lvm_metadata import resized_metadata
from lifeboat.volumes.lvm_model import LvRole, grow_extents, pv_extents

# (node, action, image, its address space in the image's view) -> data written
WriteVolume = Callable[[str, VolumeAction, LogicalVolumeImage, str], None]


def _group(manifest: ImageManifest, name: str) -> VolumeGroupImage:
    return next(vg for vg in manifest.volume_groups if vg.name == name)


def restore_groups(groups: tuple[GroupAction, ...], manifest: ImageManifest, repo: Repository, target: str,
                   write: WriteVolume, step, done, nodes: dict[int, str] | None = None) -> None:
    """`nodes`: target partition number -> the node its PV goes on, when not the partition itself (an
    opened LUKS container: luks_restore.opened_volumes)."""
    for action in groups:
        vg = _group(manifest, action.name)
        devices = [(nodes or {}).get(n) or partition_node(target, n) for n in action.partitions]
        _recreate(vg, repo, devices, step, done, action)
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
                if volume.shrink is not None:
                    _shrink_volume(str(repo.root), manifest.name, name, vg, lv, volume, step, done)
        finally:
            lvm.deactivate(name, devices)
        done(f"LVM {name} deactivated", Outcome.DONE, ", ".join(devices))


def _recreate(vg: VolumeGroupImage, repo: Repository, devices: list[str], step, done, action: GroupAction) -> None:
    title = f"LVM {vg.name}"
    step(title, "physical volumes and metadata, same UUIDs")
    metadata = repo.get_chunk(vg.metadata.digest, vg.metadata.length)
    if action.shrinks:  # the PV and the volumes at their new sizes, laid out anew (lvm_metadata.py)
        metadata = _smaller_metadata(vg, action, metadata, devices[0])
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


def _smaller_metadata(vg: VolumeGroupImage, action: GroupAction, metadata: bytes, device: str) -> bytes:
    """The group's metadata for its one PV on the smaller partition `device`."""
    fd = os.open(device, os.O_RDONLY)
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)
    pe_count = pv_extents(size, vg.pvs[0].pe_start, vg.extent_size)
    extents = {v.name: v.new_size // vg.extent_size for v in action.volumes}
    return resized_metadata(metadata.decode(), size // 512, pe_count, extents).encode()


def _shrink_volume(repo_root: str, image: str, name: str, vg: VolumeGroupImage, lv: LogicalVolumeImage,
                   volume: VolumeAction, step, done) -> None:
    """A shrinking volume's filesystem into its smaller LV (shrunk in place, or made anew and its files
    copied); swap was made anew at its new size already."""
    if volume.shrink is None or volume.role is LvRole.SWAP:
        return
    title = f"shrink logical volume {name}/{lv.name} ({volume.fstype})"
    step(title, str(volume.shrink.method))
    done(title, Outcome.DONE, shrink_restore.finish_space(repo_root, image, lv_space_name(vg.name, lv.name),
                                                          lvm.node(name, lv.name), volume.shrink,
                                                          getattr(lv.content, "uuid", ""), getattr(lv.content, "label", "")))


def _extents(vg: VolumeGroupImage, name: str, action: GroupAction, devices: list[str]) -> dict[str, int]:
    """The volumes' extents now that the PVs have their size: what pvresize added, shared as planned (on a
    smaller disk the metadata already gave them their planned sizes)."""
    if action.shrinks:
        return {v.name: v.new_size // vg.extent_size for v in action.volumes}
    added = lvm.free_extents(name, devices) - vg.free
    roles = {v.name: v.role for v in action.volumes}
    return grow_extents({lv.name: lv.size // vg.extent_size for lv in vg.lvs}, roles, added)


def _restore_volume(name: str, vg: VolumeGroupImage, lv: LogicalVolumeImage, volume: VolumeAction, extents: int,
                    devices: list[str], write: WriteVolume, step, done) -> None:
    node = lvm.node(name, lv.name)
    title = f"logical volume {name}/{lv.name} ({volume.fstype or volume.mode})"
    if volume.mode in (CaptureMode.USED_BLOCKS, CaptureMode.RAW):
        write(node, volume, lv, lv_space_name(vg.name, lv.name))
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
