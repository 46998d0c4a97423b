"""What a restore does with the image's LVM volume groups: each PV's size on the target, the extents
the group gains, and each logical volume's size tomorrow (the volumes holding a filesystem Lifeboat
can grow share the new extents in proportion to their size; swap and the others keep theirs). On a
smaller target the group's free extents go first, then the data volumes give up the rest in proportion
to their room above their minimum, then swap; fixed volumes keep their size. Pure, apart from
`check_names`, which asks the machine's lvm2 which group names are taken.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace

from lifeboat.devices import human_size
from lifeboat.engine.shrink_plan import ShrinkStep, min_extents
from lifeboat.errors import LifeboatError, TargetTooSmall
from lifeboat.layout.shrink import ShrinkNeed
from lifeboat.fs.registry import CaptureMode, kind_for
from lifeboat.layout.model import PartitionEntry
from lifeboat.repo.manifest import ContentKind, ImageManifest, LogicalVolumeImage, VolumeGroupImage
from lifeboat.volumes.lvm_model import LvRole, grow_extents, pv_extents, shrink_extents

LVM_TOOLS = ["lvm"]
VG_NAME = re.compile(r"[A-Za-z0-9+_.][A-Za-z0-9+_.-]{0,126}")


@dataclass(frozen=True)
class VolumeAction:
    name: str
    uuid: str
    role: LvRole
    fstype: str
    mode: CaptureMode
    size: int  # bytes today
    new_size: int  # bytes tomorrow
    write_bytes: int
    grow: str = ""  # the tool that grows its filesystem, "" when it keeps its size
    shrink: ShrinkStep | None = None  # smaller than captured: how its content gets in

    @property
    def grows(self) -> bool:
        return self.new_size > self.size

    def change(self) -> str:
        if self.grows:
            return f"  grows from {human_size(self.size)} ({self.grow})"
        if self.shrink is not None:
            return f"  {self.shrink.describe()}"
        return "  keeps its size"


@dataclass(frozen=True)
class GroupAction:
    name: str
    uuid: str
    partitions: tuple[int, ...]  # the target's partitions that are its PVs
    extent_size: int
    extents: int  # today
    new_extents: int  # tomorrow (an estimate until pvresize says: the data volumes take what it gives)
    volumes: tuple[VolumeAction, ...] = ()
    rename: str = ""  # restored under this name, with new PV and VG UUIDs (vgimportclone)

    @property
    def new_name(self) -> str:
        return self.rename or self.name

    @property
    def write_bytes(self) -> int:
        return sum(v.write_bytes for v in self.volumes)

    def lines(self) -> list[str]:
        """The plan's lines for the group, under its PV partition."""
        size, new = self.extents * self.extent_size, self.new_extents * self.extent_size
        grows = f", grows to {human_size(new)}" if new > size else f", shrinks to {human_size(new)}" if new < size else ""
        out = [f"      LVM volume group {self.name} ({human_size(size)}{grows}), UUID {self.uuid}"]
        if self.rename:
            out = [f"      LVM volume group {self.name} restored as {self.rename} ({human_size(size)}{grows}), "
                   "new PV and VG UUIDs (as vgimportclone makes them; the LV UUIDs are kept)"]
        for v in self.volumes:
            what = {CaptureMode.USED_BLOCKS: f"{human_size(v.write_bytes)} of data",
                    CaptureMode.RAW: f"{human_size(v.write_bytes)} raw",
                    CaptureMode.SWAP: "new swap, same UUID", CaptureMode.NONE: "empty"}[v.mode]
            out.append(f"        {v.name:<16} {human_size(v.new_size):>10}  {v.fstype or v.mode:<8} {what}{v.change()}")
        return out

    def to_json(self) -> dict:
        return {"name": self.name, "uuid": self.uuid, "partitions": list(self.partitions),
                "rename": self.rename, "extent_size": self.extent_size, "extents": self.extents, "new_extents": self.new_extents,
                "lvs": [{"name": v.name, "uuid": v.uuid, "role": str(v.role), "fstype": v.fstype, "mode": str(v.mode),
                         "size": v.size, "new_size": v.new_size, "write_bytes": v.write_bytes, "grows": v.grows,
                         "grow_tool": v.grow,
                         "shrink": {"method": v.shrink.method.name.lower(), "target_bytes": v.shrink.target_bytes,
                                    "beyond_bytes": v.shrink.beyond_bytes, "seconds": round(v.shrink.seconds, 1)}
                         if v.shrink else None} for v in self.volumes]}

    @property
    def shrinks(self) -> bool:
        return self.new_extents < self.extents


def role_of(lv: LogicalVolumeImage) -> LvRole:
    if lv.content.kind is ContentKind.SWAP:
        return LvRole.SWAP
    if lv.content.kind is ContentKind.FILESYSTEM and kind_for(lv.fstype).grow:
        return LvRole.DATA
    return LvRole.FIXED


def pv_partitions(manifest: ImageManifest) -> frozenset[int]:
    return frozenset(pv.partition for vg in manifest.volume_groups for pv in vg.pvs)


def plan_group(vg: VolumeGroupImage, targets: dict[int, PartitionEntry], sector_size: int,
               floors: dict[str, ShrinkNeed] | None = None, offsets: dict[int, int] | None = None) -> GroupAction:
    """`targets`: the source's partition number -> its partition on the target. `floors` (LV name -> what
    it allows, shrink_plan.lv_floors): given when the target is smaller, so the volumes may shrink.
    `offsets`: partition number -> bytes before its PV (a LUKS container's header: luks_plan.pv_offsets)."""
    new_pv = 0
    for pv in vg.pvs:
        entry = targets.get(pv.partition)
        if entry is None:
            raise LifeboatError(f"partition {pv.partition} (a PV of volume group {vg.name}) has no place on the target")
        extents = pv_extents(entry.size * sector_size - (offsets or {}).get(pv.partition, 0), pv.pe_start,
                             vg.extent_size)
        if extents < pv.extents and (floors is None or len(vg.pvs) != 1):
            raise LifeboatError(f"partition {pv.partition} (a PV of volume group {vg.name}) would hold {extents} "
                                f"extents, fewer than its {pv.extents}: "
                                + ("only a group on one PV can be restored onto a smaller disk" if len(vg.pvs) != 1 else
                                   "its volumes' minimum sizes are not known here")
                                + "; nothing was written")
        new_pv += extents
    added = new_pv - sum(pv.extents for pv in vg.pvs)
    roles = {lv.name: role_of(lv) for lv in vg.lvs}
    today = {lv.name: lv.size // vg.extent_size for lv in vg.lvs}
    if added >= 0:
        sizes = grow_extents(today, roles, added)
    else:
        sizes = _shrunk(vg, today, roles, floors or {}, -added)
    volumes = tuple(
        VolumeAction(lv.name, lv.uuid, roles[lv.name], lv.fstype, lv.mode, lv.size, sizes[lv.name] * vg.extent_size,
                     lv.used_bytes, kind_for(lv.fstype).grow if sizes[lv.name] * vg.extent_size > lv.size else "")
        for lv in vg.lvs)
    return GroupAction(vg.name, vg.uuid, tuple(targets[pv.partition].number for pv in vg.pvs), vg.extent_size,
                       vg.extents, vg.extents + added, volumes)


def _shrunk(vg: VolumeGroupImage, today: dict[str, int], roles: dict[str, LvRole], floors: dict[str, ShrinkNeed],
            removed: int) -> dict[str, int]:
    """The volumes' extents when the group loses `removed`; raises naming the volume and the shortfall."""
    mins = {lv.name: min_extents(floors[lv.name], lv.size, vg.extent_size) if lv.name in floors else today[lv.name]
            for lv in vg.lvs}
    sizes, missing = shrink_extents(today, mins, roles, vg.free, removed)
    if missing:
        biggest = max(vg.lvs, key=lambda lv: (mins[lv.name], lv.name))
        short = missing * vg.extent_size
        smallest = ", ".join(f"{lv.name} {lv.fstype or lv.mode} {human_size(mins[lv.name] * vg.extent_size)}" for lv in vg.lvs)
        raise TargetTooSmall(
            f"volume group {vg.name} does not fit: its volumes at their smallest are {human_size(short)} ({short} bytes) "
            f"too large for the smaller PV; logical volume {vg.name}/{biggest.name} ({biggest.fstype or biggest.mode}) "
            f"holds {human_size(floors[biggest.name].data_bytes if biggest.name in floors else biggest.used_bytes)} of "
            f"data and needs at least {human_size(mins[biggest.name] * vg.extent_size)} (each at its smallest: "
            f"{smallest}); nothing was written")
    return sizes


def with_shrink_steps(group: GroupAction, steps: dict[str, ShrinkStep]) -> GroupAction:
    """The group with each shrinking volume's step (LV name -> how its content gets in)."""
    return replace(group, volumes=tuple(replace(v, shrink=steps.get(v.name)) for v in group.volumes))


def restore_tools(groups: tuple[GroupAction, ...]) -> list[str]:
    tools = list(LVM_TOOLS) if groups else []
    for group in groups:
        for v in group.volumes:
            tools += kind_for(v.fstype).restore_tools(v.grows) + list(v.shrink.tools if v.shrink else ())
    return tools


def check_names(groups: tuple[GroupAction, ...], target: str, elsewhere: dict[str, list[str]]) -> None:
    """Refuse a group whose name another disk of this machine already uses (`elsewhere`: name -> PVs, from
    lvm.groups_elsewhere): two groups of one name confuse the booted system."""
    for group in groups:
        if group.rename and group.rename in elsewhere:
            raise LifeboatError(f"--rename-vg: a volume group named {group.rename} already exists on "
                                f"{', '.join(elsewhere[group.rename])}; choose another name; nothing was written")
        if group.name in elsewhere and not group.rename:
            raise LifeboatError(
                f"a volume group named {group.name} already exists on {', '.join(elsewhere[group.name])}, another "
                f"disk of this machine: restoring the image's {group.name} onto {target} would give this machine "
                f"two groups of that name; restore it under another name (--rename-vg {group.name}=NEW), rename "
                "that group (vgrename) or detach that disk; nothing was written")


def renamed_groups(groups: tuple[GroupAction, ...], renames: dict[str, str]) -> tuple[GroupAction, ...]:
    """The groups with the user's new names (OLD -> NEW). Raises for a name not in the image or not valid."""
    known = {g.name for g in groups}
    for old, new in renames.items():
        if old not in known:
            raise LifeboatError(f"--rename-vg {old}={new}: the image has no volume group {old} "
                                f"(it has {', '.join(sorted(known)) or 'none'}); nothing was written")
        if not VG_NAME.fullmatch(new) or new in (".", "..") or new.startswith("-"):
            raise LifeboatError(f"--rename-vg {old}={new}: {new!r} is not a volume group name lvm2 accepts "
                                "(letters, digits and + _ . -); nothing was written")
    return tuple(replace(g, rename=renames.get(g.name, "")) for g in groups)


def target_nodes(target: str) -> list[str]:
    """The target disk and its partitions' nodes (their PVs are replaced, not in the way)."""
    name = os.path.basename(os.path.realpath(target))
    parts = [p for p in os.listdir(f"/sys/block/{name}") if p.startswith(name)] if os.path.isdir(f"/sys/block/{name}") else []
    return [f"/dev/{name}", *(f"/dev/{p}" for p in parts)]
