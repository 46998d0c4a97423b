"""Restore chosen partitions of an image onto partitions of a disk whose table is kept.

    lifeboat restore NAME DISK --partitions 2,3 [--map 3=5]

Image partition N goes onto the target's partition N (or the one `--map N=M` names). The target's
partition table, boot code, and every byte outside the chosen target partitions stay as they are.
A target partition larger than the image's gets the filesystem grown into it (when it can grow); a
smaller one gets it shrunk or re-created and copied, exactly as onto a smaller disk; one smaller than
the data needs is refused, naming both partitions and the shortfall, before anything is written.
"""

from __future__ import annotations

import re
from dataclasses import replace

from lifeboat.devices import disk_info, human_size, with_layout
from lifeboat.engine.plan import (
    BASE_TOOLS,
    PartitionAction,
    RestorePlan,
    check_chunks,
    check_target_safe,
)
from lifeboat.engine.lvm_plan import target_nodes
from lifeboat.engine.partial_lvm import plan_volumes
from lifeboat.engine.shrink_plan import ShrinkStep, check_scratch, shrink_needs, shrink_step
from lifeboat.errors import LifeboatError, TargetTooSmall, ToolMissing
from lifeboat.fs.registry import CaptureMode, kind_for
from lifeboat.health import read_health
from lifeboat.layout.model import PartitionEntry
from lifeboat.layout.read import read_layout
from lifeboat.repo.manifest import RESTORABLE, ImageManifest, PartitionImage, load_manifest
from lifeboat.repo.store import Repository
from lifeboat.run import TOOLS, missing_tools
from lifeboat.volumes.lvm import device_mapper


def parse_selection(partitions: str, maps: list[str] | None = None) -> dict[int, int]:
    """{image partition: target partition} from "2,3" and ["3=5"]. Raises LifeboatError naming the bad part."""
    chosen: dict[int, int] = {}
    for item in (p.strip() for p in partitions.split(",")):
        if not re.fullmatch(r"[1-9][0-9]*", item):
            raise LifeboatError(f"--partitions {partitions!r}: {item!r} is not a partition number")
        chosen[int(item)] = int(item)
    for text in maps or []:
        for item in (m.strip() for m in text.split(",")):
            found = re.fullmatch(r"([1-9][0-9]*)=([1-9][0-9]*)", item)
            if not found:
                raise LifeboatError(f"--map {text!r}: {item!r} is not IMAGE_PARTITION=TARGET_PARTITION")
            source, target = int(found.group(1)), int(found.group(2))
            if source not in chosen:
                raise LifeboatError(f"--map {item}: partition {source} is not one of --partitions {partitions}")
            chosen[source] = target
    targets = list(chosen.values())
    duplicate = next((t for t in targets if targets.count(t) > 1), None)
    if duplicate is not None:
        raise LifeboatError(f"two image partitions would go onto target partition {duplicate}")
    return chosen


def _image_partition(manifest: ImageManifest, number: int) -> PartitionImage:
    part = manifest.partition(number)
    if part is None:
        have = ", ".join(str(p.number) for p in manifest.partitions)
        raise LifeboatError(f"image {manifest.name!r} has no partition {number} (it has {have}); nothing was written")
    if part.content.kind not in RESTORABLE:
        raise LifeboatError(f"image {manifest.name!r}: {part.title} holds {part.content.kind} content, which this "
                            "Lifeboat cannot restore yet; nothing was written")
    return part


def _action(repo: Repository, manifest: ImageManifest, part: PartitionImage, source: PartitionEntry,
            target: PartitionEntry, sector_size: int, needs) -> PartitionAction:
    size = target.size * sector_size
    kind = kind_for(part.fstype)
    shrink: ShrinkStep | None = None
    grow, note = "", ""
    if size < part.size:
        need = needs[part.number]
        if not need.shrinkable or size < need.min_bytes:
            least = need.min_bytes if need.shrinkable else part.size
            short = least - size
            raise TargetTooSmall(f"target partition {target.number} is {human_size(size)}, but {part.title} of the "
                                 f"image needs at least {human_size(least)}: {human_size(short)} ({short} bytes) "
                                 "short; nothing was written")
        if part.mode is not CaptureMode.SWAP:
            shrink = shrink_step(repo, part, size)
    elif size > part.size and part.mode is CaptureMode.USED_BLOCKS and kind.grow:
        grow = kind.grow
    elif size > part.size:
        note = "content copied as is, its size unchanged"
    return PartitionAction(number=part.number, fstype=part.fstype, mode=part.mode, source=source, target=target,
                           write_bytes=part.used_bytes, grow=grow, note=note, shrink=shrink)


def plan_partitions(repo: Repository, name: str, target: str, chosen: dict[int, int],
                    volumes: tuple[tuple[str, str], ...] = ()) -> RestorePlan:
    """A plan that writes only the chosen partitions (and logical volumes, VG/LV: partial_lvm.py) and keeps
    the target's table."""
    manifest = load_manifest(repo, name)
    disk = disk_info(target)
    check_target_safe(disk)
    disk = replace(disk, health=read_health(target))  # a failing target asks for an explicit confirmation
    current = read_layout(target)  # no table: LifeboatError, and nothing was written
    try:
        disk = with_layout(disk, current)  # each partition's filesystem as blkid sees it now, for the plan
    except LifeboatError:
        pass  # a partition node the kernel dropped: the plan shows the table's partition kinds instead
    if current.sector_size != manifest.layout.sector_size:
        raise LifeboatError(f"{target} has {current.sector_size}-byte sectors, the image {manifest.layout.sector_size}")
    entries = {p.number: p for p in current.data_partitions()}
    needs = shrink_needs(repo, manifest)
    actions, tools = [], list(BASE_TOOLS)
    for number, onto in sorted(chosen.items()):
        part = _image_partition(manifest, number)
        if onto not in entries:
            raise LifeboatError(f"{target} has no partition {onto} to restore {part.title} onto "
                                f"(it has {', '.join(map(str, entries)) or 'none'}); nothing was written")
        action = _action(repo, manifest, part, manifest.layout.partition(number), entries[onto],
                         current.sector_size, needs)
        actions.append(action)
        tools += kind_for(part.fstype).restore_tools(bool(action.grow)) + list(action.shrink.tools if action.shrink else ())
    if volumes and not device_mapper():
        raise LifeboatError(f"--partitions {', '.join('/'.join(v) for v in volumes)}: this system's kernel has no "
                            "device-mapper to write logical volumes; restore them from the Lifeboat live system; "
                            "nothing was written")
    chosen_volumes, needed = plan_volumes(repo, manifest, target, target_nodes(target), volumes)
    tools += needed
    missing = missing_tools(tools)
    if missing:
        raise ToolMissing(missing[0], TOOLS.get(missing[0]))
    check_scratch({a.number: a.shrink for a in actions if a.shrink})
    check_scratch({i: c.action.shrink for i, c in enumerate(chosen_volumes) if c.action.shrink})
    check_chunks(repo, manifest)
    return RestorePlan(image=name, repo_root=str(repo.root), target=target, target_disk=disk, manifest=manifest,
                       source_layout=manifest.layout, target_layout=current, current_layout=current,
                       actions=tuple(actions), keep_table=True, volumes=chosen_volumes)
