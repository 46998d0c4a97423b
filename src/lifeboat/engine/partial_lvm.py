"""Restore chosen logical volumes of an image onto the same-named volumes of a group on a disk that is kept.

    lifeboat restore NAME DISK --partitions lbvg/root[,2,...]

Image volume VG/LV goes onto the volume LV of the group VG whose PVs are on the target disk (the group as
it is there: its metadata, its other volumes and every byte outside that volume stay as they are). A
target volume larger than the image's gets the filesystem grown into it, a smaller one gets it shrunk in
place or re-created and copied, exactly as onto a smaller disk; one smaller than the data needs is refused,
naming the volume and the shortfall, before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass

from lifeboat.devices import human_size
from lifeboat.engine import shrink_restore
from lifeboat.engine.lvm_plan import VolumeAction, role_of
from lifeboat.engine.shrink_plan import ShrinkStep, lv_floors, shrink_step
from lifeboat.errors import LifeboatError, TargetTooSmall
from lifeboat.events import Outcome
from lifeboat.fs.grow import grow_filesystem, make_swap
from lifeboat.fs.registry import CaptureMode, kind_for
from lifeboat.imagefs.view import lv_space_name
from lifeboat.repo.manifest import RESTORABLE, ImageManifest, LogicalVolumeImage, VolumeGroupImage
from lifeboat.repo.store import Repository
from lifeboat.volumes import lvm
from lifeboat.volumes.lvm_model import VolumeGroup


@dataclass(frozen=True)
class ChosenVolume:
    """One image volume written onto a volume of the target's group."""

    vg: str  # the group's name, in the image and on the target
    devices: tuple[str, ...]  # the target group's PVs
    action: VolumeAction  # size: the image's volume; new_size: the target's

    def line(self) -> str:
        v = self.action
        what = {CaptureMode.USED_BLOCKS: f"{human_size(v.write_bytes)} of data", CaptureMode.RAW:
                f"{human_size(v.write_bytes)} raw", CaptureMode.SWAP: "new swap, same UUID",
                CaptureMode.NONE: "empty"}[v.mode]
        same = "" if v.new_size != v.size else "  same size"
        return (f"  logical volume {self.vg}/{v.name} on {', '.join(self.devices)}: {human_size(v.new_size)}  "
                f"{v.fstype or v.mode} {what}{v.change() if v.new_size != v.size else same}")

    def to_json(self) -> dict:
        v = self.action
        return {"vg": self.vg, "lv": v.name, "devices": list(self.devices), "size": v.size, "target_size": v.new_size,
                "fstype": v.fstype, "grow_tool": v.grow,
                "shrink": {"method": v.shrink.method.name.lower(), "target_bytes": v.shrink.target_bytes}
                if v.shrink else None}


def split_selection(text: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """("2,3", (("vg", "lv"), ...)) from "2,vg/lv,3": partition numbers apart from VG/LV names."""
    numbers, volumes = [], []
    for item in (i.strip() for i in text.split(",")):
        if "/" in item:
            vg, _, lv = item.partition("/")
            if not vg or not lv or "/" in lv:
                raise LifeboatError(f"--partitions {text!r}: {item!r} is not VG/LV (a logical volume)")
            volumes.append((vg, lv))
        else:
            numbers.append(item)
    return ",".join(numbers), tuple(volumes)


def _image_volume(manifest: ImageManifest, vg_name: str, lv_name: str) -> tuple[VolumeGroupImage, LogicalVolumeImage]:
    for vg in manifest.volume_groups:
        for lv in vg.lvs:
            if (vg.name, lv.name) == (vg_name, lv_name):
                return vg, lv
    have = ", ".join(f"{vg.name}/{lv.name}" for vg in manifest.volume_groups for lv in vg.lvs) or "none"
    raise LifeboatError(f"image {manifest.name!r} has no logical volume {vg_name}/{lv_name} (it has {have}); "
                        "nothing was written")


def _target_group(groups: list[VolumeGroup], vg_name: str, lv_name: str, target: str) -> VolumeGroup:
    group = next((g for g in groups if g.name == vg_name), None)
    if group is None or not any(lv.name == lv_name for lv in group.visible_lvs):
        where = f"its group {vg_name} has no volume {lv_name}" if group else f"it holds no volume group {vg_name}"
        raise LifeboatError(f"{target}: {where}, so there is nothing to restore {vg_name}/{lv_name} onto (restore "
                            "the whole disk instead); nothing was written")
    reason = group.unsupported(frozenset(pv.node for pv in group.pvs))
    if group.pv_count != len(group.pvs) or reason:
        raise LifeboatError(f"{target}: {reason or f'volume group {vg_name} has PVs on other disks'}; nothing was written")
    return group


def plan_volumes(repo: Repository, manifest: ImageManifest, target: str, nodes: list[str],
                 chosen: tuple[tuple[str, str], ...]) -> tuple[tuple[ChosenVolume, ...], list[str]]:
    """The chosen volumes' actions and the tools they need; `nodes`: the target disk's partition nodes.
    Raises, before anything is written, for a volume the image or the target lacks or one too small."""
    if not chosen:
        return (), []
    groups = lvm.read_groups(nodes)
    out, tools = [], ["lvm"]
    for vg_name, lv_name in chosen:
        vg, lv = _image_volume(manifest, vg_name, lv_name)
        if lv.content.kind not in RESTORABLE:
            raise LifeboatError(f"image {manifest.name!r}: logical volume {vg_name}/{lv_name} holds {lv.content.kind} "
                                "content, which this Lifeboat cannot restore yet; nothing was written")
        group = _target_group(groups, vg_name, lv_name, target)
        size = next(t.size for t in group.visible_lvs if t.name == lv_name)
        shrink = _shrink(repo, manifest, vg, lv, size) if size < lv.size else None
        grows = size > lv.size and lv.mode is CaptureMode.USED_BLOCKS and bool(kind_for(lv.fstype).grow)
        action = VolumeAction(lv.name, lv.uuid, role_of(lv), lv.fstype, lv.mode, lv.size, size, lv.used_bytes,
                              kind_for(lv.fstype).grow if grows else "", shrink)
        out.append(ChosenVolume(vg_name, tuple(pv.node for pv in group.pvs), action))
        tools += kind_for(lv.fstype).restore_tools(grows) + list(shrink.tools if shrink else ())
    return tuple(out), tools


def _shrink(repo: Repository, manifest: ImageManifest, vg: VolumeGroupImage, lv: LogicalVolumeImage,
            size: int) -> ShrinkStep:
    need = lv_floors(repo, manifest, vg)[lv.name]
    least = need.min_bytes if need.shrinkable else lv.size
    if size < least:
        short = least - size
        raise TargetTooSmall(f"the target's logical volume {vg.name}/{lv.name} is {human_size(size)}, but the "
                             f"image's ({lv.fstype or lv.mode}, {human_size(need.data_bytes)} of data) needs at least "
                             f"{human_size(least)}: {human_size(short)} ({short} bytes) short; nothing was written")
    return shrink_step(repo, lv, size)


def restore_volumes(volumes: tuple[ChosenVolume, ...], manifest: ImageManifest, repo: Repository, write,
                    step, done) -> None:
    """Each chosen volume written (`write`: restore's volume writer), grown or shrunk, in its group activated
    for the while (what was active before stays so)."""
    for chosen in volumes:
        v = chosen.action
        lv = _image_volume(manifest, chosen.vg, v.name)[1]
        space = lv_space_name(chosen.vg, v.name)
        with lvm.activated(chosen.vg, list(chosen.devices), read_only=False):
            node = lvm.node(chosen.vg, v.name)
            if v.mode in (CaptureMode.USED_BLOCKS, CaptureMode.RAW):
                write(node, v, lv, space)
            title = f"logical volume {chosen.vg}/{v.name} ({v.fstype or v.mode})"
            if v.mode is CaptureMode.SWAP:
                step(f"swap {chosen.vg}/{v.name}")
                make_swap(node, getattr(lv.content, "uuid", ""), getattr(lv.content, "label", ""))
                done(f"swap {chosen.vg}/{v.name}", Outcome.DONE, f"UUID {getattr(lv.content, 'uuid', '')}")
            elif v.shrink is not None:
                step(f"shrink {title}", str(v.shrink.method))
                done(f"shrink {title}", Outcome.DONE, shrink_restore.finish_space(
                    str(repo.root), manifest.name, space, node, v.shrink, getattr(lv.content, "uuid", ""),
                    getattr(lv.content, "label", "")))
            elif v.grow:
                step(f"grow {title}", v.grow)
                done(f"grow {title}", Outcome.DONE, grow_filesystem(v.grow, v.fstype, node))
        done(f"LVM {chosen.vg} as it was", Outcome.DONE, f"{chosen.vg}/{v.name} written; the group's other volumes kept")
