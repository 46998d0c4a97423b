"""The restore plan: a frozen statement of exactly what will be written where.

Building it touches nothing. It answers every question that could stop a restore halfway (is the
target safe, big enough, are the tools installed, is every chunk present) before the first write.
It is what the confirmation shows, what --dry-run prints and what restore() executes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from lifeboat.boot.plan_chain import planned_chain
from lifeboat.devices import Disk, disk_info, human_size
from lifeboat.engine.shrink_plan import ShrinkStep, check_scratch, lv_floors, plan_shrink, shrink_step
from lifeboat.engine.lvm_plan import (GroupAction, check_names, plan_group, pv_partitions, renamed_groups, restore_tools,
                                      target_nodes, with_shrink_steps)
from lifeboat.engine.partial_lvm import ChosenVolume
from lifeboat.engine.luks_plan import (ContainerAction, check_key, growable, opened_containers, plan_container,
                                      pv_offsets)
from lifeboat.engine.luks_plan import restore_tools as luks_tools
from lifeboat.engine.rescue import unreadable_lines
from lifeboat.errors import ImageCorrupt, LifeboatError, ToolMissing, UnsafeTarget
from lifeboat.health import read_health
from lifeboat.fs.registry import CaptureMode, kind_for
from lifeboat.layout.fit import fit_layout
from lifeboat.layout.model import DiskLayout, PartitionEntry
from lifeboat.layout.sectors import convert_layout, logical_sector_size
from lifeboat.fs.sectors import HEAD_BYTES, sector_limit
from lifeboat.fs.shrink import ShrinkMethod, capability
from lifeboat.fs.usedmap import decode_runs, runs_in_window
from lifeboat.repo.manifest import (CHUNK_SIZE, RESTORABLE, DataStream, ImageManifest, LuksContent, PartitionImage,
                                    RawContent, content_stream, load_manifest)
from lifeboat.repo.store import Repository
from lifeboat.run import TOOLS, missing_tools
from lifeboat.volumes.luks import LuksKey
from lifeboat.volumes.luks import device_mapper as luks_device_mapper
from lifeboat.volumes.lvm import device_mapper, groups_elsewhere

BASE_TOOLS = ["sfdisk", "partx", "udevadm", "blkid", "wipefs"]



@dataclass(frozen=True)
class PartitionAction:
    number: int
    fstype: str
    mode: CaptureMode
    source: PartitionEntry
    target: PartitionEntry
    write_bytes: int
    grow: str  # tool that grows the filesystem, "" when it keeps its size
    note: str = ""
    reason: str = ""  # why the content is copied whole (a LUKS container, a BitLocker volume)
    source_sector_size: int = 512  # `source` counts in these
    target_sector_size: int = 512  # `target` counts in these
    shrink: ShrinkStep | None = None  # the partition is smaller than the captured one: how its content gets in
    name: str = ""  # "VG/LV" when the action writes a logical volume

    @property
    def grows(self) -> bool:
        return self.target.size * self.target_sector_size > self.source.size * self.source_sector_size

    @property
    def title(self) -> str:
        if self.name.startswith("of the "):  # the contents of a LUKS container
            return f"contents {self.name} ({self.fstype or self.mode})"
        if self.name:
            return f"logical volume {self.name} ({self.fstype or self.mode})"
        return f"partition {self.number} ({self.fstype or self.mode})"


@dataclass(frozen=True)
class RestorePlan:
    image: str
    repo_root: str
    target: str
    target_disk: Disk
    manifest: ImageManifest = field(repr=False, hash=False, compare=False)
    source_layout: DiskLayout = field(repr=False)
    target_layout: DiskLayout = field(repr=False)
    current_layout: DiskLayout | None = field(repr=False, default=None)
    actions: tuple[PartitionAction, ...] = ()
    notes: tuple[str, ...] = ()  # what the plan had to give up (swap shrunk)
    keep_table: bool = False  # chosen partitions only (engine/partial.py): table, boot code, the rest untouched
    target_marker: str = ""  # "incomplete restore of image X ..." when a restore into the target was cut off
    boot_chain: str = ""  # which chain the bootloader step installs (boot.plan_chain), "" when none
    volume_groups: tuple[GroupAction, ...] = ()  # LVM groups recreated in their PV partitions
    volumes: tuple[ChosenVolume, ...] = ()  # chosen logical volumes onto a kept disk's group (partial_lvm.py)
    containers: tuple[ContainerAction, ...] = ()  # LUKS containers re-created from their headers, then filled
    luks_key: LuksKey | None = field(default=None, repr=False, compare=False)  # opens them (never shown)

    @property
    def total_bytes(self) -> int:
        return (sum(a.write_bytes for a in self.actions) + sum(g.write_bytes for g in self.volume_groups)
                + sum(c.action.write_bytes for c in self.volumes))

    def describe(self) -> list[str]:
        d = self.target_disk
        src = self.manifest.source
        lines = [
            f"Restore image {self.image!r} (from {src.model or src.path}, {human_size(src.size)}, "
            f"captured {self.manifest.created})",
            f"onto {d.path} ({d.model or d.transport}{' ' + d.serial if d.serial else ''}, {human_size(d.size)}"
            f"{', ' + d.health.describe() if d.health else ''}).",
            f"EVERYTHING on {d.path} will be replaced." if not self.keep_table else
            f"Only {_chosen(self)} of {d.path} will be replaced; "
            "its partition table, boot code and other partitions are kept.",
            "",
            "Now on the target:",
        ]
        if self.target_marker:
            lines.append(f"  {self.target_marker}")
        elif self.current_layout:
            lines += _layout_lines(self.current_layout)
        else:
            lines.append("  no partition table (blank)")
        lines += ["", f"Will be written ({self.target_layout.label.upper()}, disk id {self.target_layout.disk_id}"
                  f"{', table kept' if self.keep_table else ''}):"]
        src_ss, dst_ss = self.source_layout.sector_size, self.target_layout.sector_size
        if src_ss != dst_ss:
            lines.append(f"  table converted from {src_ss}-byte to {dst_ss}-byte sectors "
                         "(starts and sizes below are in the target's sectors)")
        for a in self.actions:
            size = human_size(a.target.size * dst_ss)
            grow = ""
            if a.grows:
                grow = f"  grows from {human_size(a.source.size * src_ss)}" + f" ({a.grow or a.note})"
            elif a.note and a.target.size * dst_ss < a.source.size * src_ss:
                grow = f"  shrinks from {human_size(a.source.size * src_ss)} ({a.note})"
            elif a.shrink:
                grow = f"  {a.shrink.describe()}"
            what = {CaptureMode.USED_BLOCKS: f"{human_size(a.write_bytes)} of data",
                    CaptureMode.RAW: f"{human_size(a.write_bytes)} raw",
                    CaptureMode.SWAP: "new swap, same UUID", CaptureMode.NONE: "empty"}[a.mode]
            if a.number in pv_partitions(self.manifest):
                what = "LVM physical volume, same UUID"
            if a.number in opened_containers(self.manifest):
                what = "LUKS container, same UUID"
            onto = f" -> {a.target.number}" if a.target.number != a.number else ""
            lines.append(f"  {a.number:>2}{onto}  start {a.target.start:>10}  {size:>10}  {a.fstype or a.mode:<8} {what}{grow}")
            if a.reason:
                lines.append(f"      {a.reason} ({human_size(a.source.size * src_ss)})")
            inside = [c for c in self.containers if a.target.number == c.target_partition]
            for container in inside:
                lines += container.lines()
            for group in self.volume_groups:  # nested under the container whose contents are its PV
                if a.target.number in group.partitions[:1]:
                    lines += [("  " if inside else "") + line for line in group.lines()]
        lines += [c.line() for c in self.volumes]
        lines += [f"  Note: {note}" for note in self.notes]
        incomplete = unreadable_lines(self.manifest)
        if incomplete:
            lines += ["", "INCOMPLETE IMAGE: these bytes could not be read at capture and will be written as zeros:"]
            lines += [f"  {line}" for line in incomplete]
        regions = ", ".join(r.name for r in self.manifest.boot_regions) if not self.keep_table else "kept as they are"
        lines += ["", f"Boot regions: {regions}.",
                  f"Total to write: {human_size(self.total_bytes)}."]
        if self.boot_chain:
            lines.append(self.boot_chain)
        return lines

    def to_json(self) -> dict:
        return {
            "image": self.image,
            "repo": self.repo_root,
            "target": self.target,
            "target_size": self.target_disk.size,
            "current_layout": self.current_layout.to_json() if self.current_layout else None,
            "target_layout": self.target_layout.to_json(),
            "source_sector_size": self.source_layout.sector_size,
            "target_sector_size": self.target_layout.sector_size,
            "actions": [
                {"number": a.number, "fstype": a.fstype, "mode": str(a.mode), "start": a.target.start, "size": a.target.size,
                 "source_size": a.source.size, "write_bytes": a.write_bytes, "grows": a.grows, "grow_tool": a.grow,
                 "reason": a.reason,
                 "shrink": {"method": a.shrink.method.name.lower(), "target_bytes": a.shrink.target_bytes,
                            "beyond_bytes": a.shrink.beyond_bytes, "seconds": round(a.shrink.seconds, 1)}
                 if a.shrink else None}
                for a in self.actions
            ],
            "total_bytes": self.total_bytes,
            "notes": list(self.notes),
            "keep_table": self.keep_table,
            "volume_groups": [g.to_json() for g in self.volume_groups],
            "volumes": [c.to_json() for c in self.volumes],
            "luks_containers": [c.to_json() for c in self.containers],
        }


def _chosen(plan: RestorePlan) -> str:
    """"partition(s) 2, 3 and logical volume(s) vg/root" of a plan that keeps the table."""
    parts = [f"partition(s) {', '.join(str(a.target.number) for a in plan.actions)}"] if plan.actions else []
    if plan.volumes:
        parts.append(f"logical volume(s) {', '.join(f'{c.vg}/{c.action.name}' for c in plan.volumes)}")
    return " and ".join(parts)


def _layout_lines(layout: DiskLayout) -> list[str]:
    lines = [f"  {layout.label.upper()} table, disk id {layout.disk_id}"]
    for p in layout.partitions:
        lines.append(f"  {p.number:>2}  start {p.start:>10}  {human_size(p.size * layout.sector_size):>10}  {p.kind}")
    return lines


def _current_layout(target: str) -> DiskLayout | None:
    from lifeboat.layout.read import read_layout

    try:
        return read_layout(target)
    except LifeboatError:
        return None


def check_target_safe(disk: Disk) -> None:
    if disk.unsafe_reason:
        raise UnsafeTarget(f"refusing to write to {disk.path}: {disk.unsafe_reason}")


def check_chunks(repo: Repository, manifest: ImageManifest) -> None:
    """Every chunk present and plausibly whole (a stat each, no reads). Raises ImageCorrupt naming where."""
    problems = []
    for region in manifest.boot_regions:
        problem = repo.chunk_problem(region.digest)
        if problem:
            problems.append(f"boot region {region.name}: chunk {region.digest[:16]} {problem}")
    volumes = [(f"logical volume {vg.name}/{lv.name}", lv.stream) for vg in manifest.volume_groups for lv in vg.lvs]
    for number, container in opened_containers(manifest).items():
        volumes.append((f"contents of the LUKS container on partition {number}", content_stream(container.inner)))
        problem = repo.chunk_problem(container.header.digest)
        if problem:
            problems.append(f"partition {number}: LUKS header backup chunk {problem}")
    for vg in manifest.volume_groups:
        problem = repo.chunk_problem(vg.metadata.digest)
        if problem:
            problems.append(f"volume group {vg.name}: metadata chunk {problem}")
    for title, stream in [(p.title, p.stream) for p in manifest.partitions] + volumes:
        if stream is None:
            continue
        map_problem = repo.chunk_problem(stream.map.digest)
        if map_problem:
            problems.append(f"{title}: block map chunk {map_problem}")
        for ref in stream.chunks:
            problem = repo.chunk_problem(ref.digest)
            if problem:
                problems.append(f"{title} at offset {ref.offset}: chunk {ref.digest[:16]} {problem}")
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ImageCorrupt(f"image {manifest.name!r} is damaged: {problems[0]}{more}; nothing was written")


def _check_restorable(manifest: ImageManifest) -> None:
    pvs = pv_partitions(manifest) | frozenset(opened_containers(manifest))
    for part in manifest.partitions:
        if part.content.kind not in RESTORABLE and part.number not in pvs:
            raise LifeboatError(f"image {manifest.name!r}: {part.title} holds {part.content.kind} content, "
                                "which this Lifeboat cannot restore yet; nothing was written")
    for vg in manifest.volume_groups:
        for lv in vg.lvs:
            if lv.content.kind not in RESTORABLE:
                raise LifeboatError(f"image {manifest.name!r}: logical volume {vg.name}/{lv.name} holds "
                                    f"{lv.content.kind} content, which this Lifeboat cannot restore yet; "
                                    "nothing was written")


def _sector_steps(repo: Repository, manifest: ImageManifest, target_ss: int) -> dict[int, ShrinkStep]:
    """A filesystem that records smaller units than the target's sectors (read from its first 4 KiB in the
    image) cannot be mounted there: one that can be made anew and its files copied (FAT: an ESP) gets that
    step; any other is refused before anything is written."""
    if target_ss <= manifest.layout.sector_size:
        return {}
    steps: dict[int, ShrinkStep] = {}
    for part in manifest.partitions:
        if part.stream is None:
            continue
        limit = sector_limit(part.fstype, image_head(repo, part.stream, HEAD_BYTES))
        if not limit or limit.largest >= target_ss:
            continue
        cap = capability(part.fstype)
        if cap.method is not ShrinkMethod.COPY:
            raise LifeboatError(
                f"image {manifest.name!r}: {part.title}: its {limit.what} is smaller than the target's "
                f"{target_ss}-byte sectors, so it could not be mounted there (only FAT, xfs and exFAT are made anew "
                "and copied); restore onto a disk with 512-byte sectors; nothing was written")
        steps[part.number] = replace(shrink_step(repo, part, part.size),  # made anew at its own size
                                     remade_for=f"{target_ss}-byte sectors (its {limit.what})")
    return steps


def image_head(repo: Repository, stream: DataStream, length: int) -> bytes:
    """The first `length` bytes of a stored partition, zeros where nothing was stored."""
    out = bytearray(length)
    first = next((ref for ref in stream.chunks if ref.window == 0), None)
    if first is None:
        return bytes(out)
    runs = decode_runs(repo.get_chunk(stream.map.digest, stream.map.length))
    data, pos = repo.get_chunk(first.digest, first.length), 0
    for start, n in runs_in_window(runs, 0, 0, CHUNK_SIZE)[0]:
        if start < length:
            take = min(n, length - start)
            out[start:start + take] = data[pos:pos + take]
        pos += n
    return bytes(out)


def _action(fitted, part: PartitionImage | None, shrink: ShrinkStep | None = None, pvs: frozenset[int] = frozenset()
            ) -> tuple[PartitionAction, list[str]]:
    """What happens to one partition of the fitted table, and the tools that needs."""
    fstype = part.fstype if part else ""
    mode = part.mode if part else CaptureMode.NONE
    kind = kind_for(fstype)
    grows = fitted.grows and mode is CaptureMode.USED_BLOCKS and bool(kind.grow)
    note = ""
    luks_pv = "LUKS container holding an " if part and isinstance(part.content, LuksContent) else ""
    if part and part.number in pvs and fitted.grows:
        note = f"{luks_pv}LVM physical volume: pvresize, then its data volumes grow"
    elif part and part.number in pvs and fitted.entry.size < fitted.source.size:
        note = f"{luks_pv}LVM physical volume, smaller: its volumes shrink as listed below"
    elif part and isinstance(part.content, LuksContent) and part.content.inner is not None and fitted.grows:
        note = "LUKS container: its contents grow inside it" if growable(part.content) else \
            "LUKS container: its contents keep their size"
    elif fitted.grows and not grows:
        note = "content copied as is, its size unchanged" if kind.mode is CaptureMode.RAW else "filesystem cannot be grown; it keeps its size"
    action = PartitionAction(
        number=fitted.entry.number, fstype=fstype, mode=mode, source=fitted.source, target=fitted.entry,
        write_bytes=part.used_bytes if part else 0, grow=kind.grow if grows else "", note=note, shrink=shrink,
        reason=part.content.reason if part and isinstance(part.content, RawContent) else "",
    )
    return action, kind.restore_tools(grows) + list(shrink.tools if shrink else ())


def plan_restore(repo: Repository, name: str, target: str, vg_renames: dict[str, str] | None = None,
                 luks_key: LuksKey | None = None) -> RestorePlan:
    manifest = load_manifest(repo, name)
    _check_restorable(manifest)
    disk = disk_info(target)
    check_target_safe(disk)
    disk = replace(disk, health=read_health(target))
    source_layout = manifest.layout
    target_ss = logical_sector_size(target)
    converted = convert_layout(source_layout, target_ss)  # raises for a partition off the target's sectors
    sector_steps = _sector_steps(repo, manifest, target_ss)
    # a filesystem Lifeboat cannot grow keeps its partition's size: the room goes where it is usable
    containers = opened_containers(manifest)
    keep_size = frozenset(p.number for p in manifest.partitions if p.mode is not CaptureMode.RAW
                          and not kind_for(p.fstype).grow and p.number not in pv_partitions(manifest)
                          and not (p.number in containers and growable(containers[p.number])))
    shrinks: dict[int, ShrinkStep] = sector_steps
    notes: list[str] = []
    if disk.size // converted.sector_size < converted.min_disk_sectors:
        if converted.sector_size != source_layout.sector_size:
            raise LifeboatError(f"{target} is smaller than the image's disk and has {target_ss}-byte sectors (the image "
                                f"{source_layout.sector_size}): shrinking while converting sectors is not supported yet; "
                                "nothing was written")
        target_layout, fitted, shrinks, notes = plan_shrink(repo, manifest, disk.size)
    else:
        target_layout, fitted = fit_layout(converted, disk.size, keep_size)
    actions = []
    tools = list(BASE_TOOLS)
    for f in fitted:
        if f.entry.is_extended:
            continue
        action, needed = _action(f, manifest.partition(f.entry.number), shrinks.get(f.entry.number),
                                 pv_partitions(manifest))
        action = replace(action, source=source_layout.partition(f.source.number),
                         source_sector_size=source_layout.sector_size, target_sector_size=target_layout.sector_size)
        actions.append(action)
        tools += needed
    targets = {f.source.number: f.entry for f in fitted if not f.entry.is_extended}
    groups = renamed_groups(_plan_groups(repo, manifest, targets, target_layout.sector_size,
                                         disk.size // converted.sector_size < converted.min_disk_sectors),
                            vg_renames or {})
    tools += restore_tools(groups)
    luks_actions = tuple(plan_container(n, c, source_layout.partition(n).size * source_layout.sector_size,
                                        targets[n], target_layout.sector_size) for n, c in containers.items())
    tools += luks_tools(luks_actions)
    missing = missing_tools(tools)
    if missing:
        tool = missing[0]
        raise ToolMissing(tool, TOOLS.get(tool))
    check_chunks(repo, manifest)
    if groups:
        if not device_mapper():
            raise LifeboatError(f"image {name!r} holds LVM volume groups, and this system's kernel has no "
                                "device-mapper to write them; restore it from the Lifeboat live system; nothing was written")
        check_names(groups, target, groups_elsewhere(target_nodes(target)))
    if luks_actions:
        if not luks_device_mapper():
            raise LifeboatError(f"image {name!r} holds LUKS containers' contents, and this system's kernel has no "
                                "device-mapper to open them; restore it from the Lifeboat live system; nothing was written")
        check_key(repo, manifest, luks_actions, luks_key)
    return RestorePlan(
        image=name, repo_root=str(repo.root), target=target, target_disk=disk, manifest=manifest,
        source_layout=source_layout, target_layout=target_layout, current_layout=_current_layout(target),
        actions=tuple(actions), notes=tuple(notes), target_marker=_marker_text(target), volume_groups=groups,
        containers=luks_actions, luks_key=luks_key if luks_actions else None,
        boot_chain=planned_chain(repo, manifest).describe(),
    )


def _plan_groups(repo: Repository, manifest: ImageManifest, targets: dict, sector_size: int, smaller: bool
                 ) -> tuple[GroupAction, ...]:
    """The groups' actions; on a smaller target each shrinking volume says how its content gets in."""
    groups = []
    for vg in manifest.volume_groups:
        pv_shrinks = any(targets[pv.partition].size < manifest.layout.partition(pv.partition).size
                         for pv in vg.pvs if pv.partition in targets)
        floors = lv_floors(repo, manifest, vg) if smaller and pv_shrinks else None
        group = plan_group(vg, targets, sector_size, floors, pv_offsets(manifest))
        steps = {lv.name: shrink_step(repo, lv, v.new_size) for lv, v in zip(vg.lvs, group.volumes)
                 if v.new_size < v.size}
        check_scratch(dict(enumerate(steps.values())))
        groups.append(with_shrink_steps(group, steps))
    return tuple(groups)


def _marker_text(target: str) -> str:
    from lifeboat.engine.restore_marker import read_marker

    marker = read_marker(target)
    return marker.describe() if marker else ""
