"""The LVM volume groups of a disk being fixed, active for the length of a bootfix (or a restore's bootloader
step) so that a root, a /boot or any other volume its fstab names can be found, mounted and chrooted into.

Only the groups whose physical volumes are partitions of this disk (or opened LUKS containers on it) are activated, with the live system's lvm2
and every command limited to those PVs (lifeboat.volumes.lvm). A group whose name is already active from another
disk is not activated (its LVs' /dev/mapper nodes would collide): it is reported as unreadable, by name and by
the other disk's PVs. Each group this activated is deactivated afterwards, on error too, and that is a step.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from lifeboat.boot.model import DONE, FAILED, NOT_NEEDED, Recorder
from lifeboat.boot.probe import LVM_PV, Volume, split_mapper
from lifeboat.devices import Disk, filesystem_facts
from lifeboat.errors import LifeboatError
from lifeboat.volumes import lvm
from lifeboat.volumes.lvm_model import VolumeGroup

MAPPER = "/dev/mapper"


@dataclass
class OpenGroups:
    """What activating the disk's volume groups gave: the volumes to look into, and what could not be opened."""

    volumes: list[Volume] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # "volume group debian-vg on /dev/sda3: why"


def pv_nodes(disk: Disk) -> list[str]:
    return [p.path for p in disk.partitions if p.fstype == LVM_PV]


def where(group: str, pvs: Sequence[str]) -> str:
    return f"volume group {group} on {', '.join(pvs)}"


def name_clash(group: VolumeGroup, elsewhere: dict[str, list[str]], mapper_entries: Iterable[str]) -> str:
    """Why `group` must not be activated here ("" when it may): a group of the same name on another disk whose
    volumes are active (a /dev/mapper node VG-LV exists while none of this group's volumes is active)."""
    others = elsewhere.get(group.name, [])
    if not others or any(lv.active for lv in group.visible_lvs):
        return ""
    active = sorted(e for e in mapper_entries if (split_mapper(e) or ("", ""))[0] == group.name)
    if not active:
        return ""
    return (f"{where(group.name, [pv.node for pv in group.pvs])} not activated: a volume group of the same name is "
            f"active from {', '.join(others)} (another disk; {', '.join(MAPPER + '/' + e for e in active)}); "
            f"deactivate it first (vgchange -an {group.name}) or restore this one under another name (--rename-vg)")


def volumes_of(group: VolumeGroup) -> list[Volume]:
    """The group's visible volumes as block devices (lvm2's node), each with what its filesystem says."""
    pvs = tuple(pv.node for pv in group.pvs)
    out = []
    for lv in group.visible_lvs:
        node = lvm.node(group.name, lv.name)
        try:
            facts = filesystem_facts(node)
        except LifeboatError:
            facts = None
        out.append(Volume(group.name, lv.name, node, pvs, facts.fstype if facts else "", facts.uuid if facts else "",
                          facts.label if facts else ""))
    return out


def _mapper_entries() -> list[str]:
    try:
        return os.listdir(MAPPER)
    except OSError:
        return []


@contextlib.contextmanager
def _active(group: VolumeGroup, devices: list[str], rec: Recorder) -> Iterator[None]:
    """`group` active for the block (lvm.activated); its deactivation afterwards is a reported step."""
    step = f"deactivate volume group {group.name}"
    stack = contextlib.ExitStack()
    was_active = stack.enter_context(lvm.activated(group.name, devices, read_only=False))
    try:
        yield
    finally:
        rec.start(step, ", ".join(devices))
        try:
            stack.close()
        except LifeboatError as err:
            rec.finish(step, FAILED, f"{err}; the disk's volumes may still be in use: run vgchange -an {group.name}")
        else:
            if was_active:
                rec.finish(step, NOT_NEEDED, "it was active before: left as it was")
            else:
                rec.finish(step, DONE, "its logical volumes are inactive again")


@contextlib.contextmanager
def opened(disk: Disk, rec: Recorder, more_pvs: Sequence[str] = ()) -> Iterator[OpenGroups]:
    """The disk's volume groups active for the block, their volumes yielded; deactivated afterwards. `more_pvs`:
    PVs inside the disk's opened LUKS containers (/dev/mapper/NAME, boot.luks_roots)."""
    found = OpenGroups()
    pvs = [*pv_nodes(disk), *more_pvs]
    if not pvs:
        yield found
        return
    if not lvm.device_mapper():
        found.unreadable.append(f"{where('?', pvs)}: this system has no device-mapper, so LVM volumes cannot be "
                                "activated (load dm_mod, or run Lifeboat from its live system)")
        yield found
        return
    try:
        groups = lvm.read_groups(pvs)
        elsewhere = lvm.groups_elsewhere(pvs)
    except LifeboatError as err:
        found.unreadable.append(f"{where('?', pvs)}: lvm2 cannot read it: {err}")
        yield found
        return
    with contextlib.ExitStack() as stack:
        for group in groups:
            devices = [pv.node for pv in group.pvs]
            clash = name_clash(group, elsewhere, _mapper_entries())
            partial = group.unsupported(frozenset([*pvs, *map(os.path.realpath, pvs)]))  # dm: either name
            if partial.startswith(f"volume group {group.name}: "):  # an LV kind Lifeboat does not image: activates
                partial = ""
            if clash or partial:
                found.unreadable.append(clash or f"{partial}: not activated from {disk.path} alone")
                continue
            try:
                stack.enter_context(_active(group, devices, rec))
            except LifeboatError as err:
                found.unreadable.append(f"{where(group.name, devices)}: activation failed: {err}")
                continue
            rec.log(f"activated {where(group.name, devices)}: " + ", ".join(lv.name for lv in group.visible_lvs))
            found.volumes += volumes_of(group)
        yield found
