"""The plan for a target disk smaller than the image's layout: which partitions shrink, how, by how
much, how long it roughly takes, and where the part of a filesystem beyond its new end waits while
it is shrunk. Reads the block maps (one small chunk per shrinking partition); writes nothing."""

from __future__ import annotations

import contextlib
import os
import struct
from dataclasses import dataclass, replace

from lifeboat.devices import human_size
from lifeboat.engine.luks_plan import pv_offsets
from lifeboat.errors import LifeboatError
from lifeboat.fs.minsize import measured_minimum
from lifeboat.fs.shrink import ShrinkMethod, capability, estimate_seconds
from lifeboat.fs.usedmap import decode_runs
from lifeboat.layout.fit import FittedPartition
from lifeboat.layout.model import DiskLayout
from lifeboat.imagefs.mount import image_view
from lifeboat.imagefs.view import (AddressSpace, SpaceReader, WindowCache, address_spaces, address_spaces_of,
                                   lv_space_name)
from lifeboat.layout.shrink import MIN_SWAP, ShrinkNeed, minimum_bytes, shrink_layout
from lifeboat.repo.manifest import ImageManifest, LogicalVolumeImage, PartitionImage, VolumeGroupImage
from lifeboat.repo.store import Repository

BTRFS_SUPER = 64 * 1024
SCRATCH = os.environ.get("LIFEBOAT_SCRATCH", "/var/tmp/lifeboat-shrink")


@dataclass(frozen=True)
class ShrinkStep:
    """How one partition's content gets into its smaller partition."""

    method: ShrinkMethod
    fstype: str
    source_bytes: int
    target_bytes: int
    data_bytes: int
    beyond_bytes: int  # stored data past the new end: held in the overflow file while resizing
    seconds: float
    tools: tuple[str, ...]
    remade_for: str = ""  # why a partition that keeps its size is made anew: "4096-byte sectors" (a 4Kn target)

    def describe(self) -> str:
        if self.remade_for:
            eta = f", about {self.seconds:.0f} s" if self.seconds else ""
            return (f"made anew for {self.remade_for} with its UUID, label and parameters, files copied from the "
                    f"image{eta}")
        what = {ShrinkMethod.RESIZE: f"restored at full size, then shrunk in place ({human_size(self.beyond_bytes)} "
                                     f"beyond the new end held in {SCRATCH} meanwhile)",
                ShrinkMethod.COPY: "filesystem made anew with its UUID, label and parameters, files copied "
                                   "from the image",
                ShrinkMethod.SWAP: "made anew, smaller"}.get(self.method, str(self.method))
        eta = f", about {self.seconds:.0f} s" if self.seconds else ""
        return f"shrinks {human_size(self.source_bytes)} -> {human_size(self.target_bytes)}: {what}{eta}"


def _beyond(repo: Repository, part: PartitionImage | LogicalVolumeImage, cut: int) -> int:
    stream = part.stream
    if stream is None:
        return 0
    runs = decode_runs(repo.get_chunk(stream.map.digest, stream.map.length))
    return sum(max(0, start + n - max(start, cut)) for start, n in runs if start + n > cut)


def fs_used_bytes(repo: Repository, part: PartitionImage) -> int:
    """Bytes the filesystem itself says it uses. The block map counts btrfs's allocated chunks whole,
    free space inside them included; its superblock's bytes_used (offset 0x78 of the superblock at
    64 KiB) counts only what is used. Others: the block map's count."""
    return _space_used(repo, part, next((s for s in address_spaces_of(part) if s.name == f"p{part.number}"), None))


def _space_used(repo: Repository, holder: PartitionImage | LogicalVolumeImage, space: AddressSpace | None) -> int:
    if holder.fstype != "btrfs" or space is None:
        return holder.used_bytes
    superblock = SpaceReader(repo, space, WindowCache(repo, 1)).read(BTRFS_SUPER, 4096)
    if superblock[0x40:0x48] != b"_BHRfS_M":
        return holder.used_bytes
    return min(holder.used_bytes, struct.unpack_from("<Q", superblock, 0x78)[0])


def _need(repo: Repository, part: PartitionImage | None, number: int, fixed: bool, view: _View) -> ShrinkNeed:
    if part is None or fixed:
        return ShrinkNeed(number, 0, False)
    space = next((s for s in address_spaces_of(part) if s.name == f"p{part.number}"), None)
    return _content_need(repo, part, space, number, part.title, view)


def _content_need(repo: Repository, holder: PartitionImage | LogicalVolumeImage, space: AddressSpace | None,
                  number: int, title: str, view: _View) -> ShrinkNeed:
    """What a partition's or a logical volume's content allows (`space`: its address space in the image)."""
    cap = capability(holder.fstype if holder.mode != "raw" else "")
    if cap.method is ShrinkMethod.SWAP:
        return ShrinkNeed(number, 0, True, swap=True, title=title)
    if cap.method is ShrinkMethod.NONE or space is None:
        return ShrinkNeed(number, holder.size, False, title=title, data_bytes=holder.used_bytes)
    used = _space_used(repo, holder, space)
    least = cap.min_bytes(used)
    if cap.method is ShrinkMethod.RESIZE and least < holder.size:  # ask the filesystem's own tool
        least = measured_minimum(holder.fstype, view.file(space.name)) or least
    return ShrinkNeed(number, least, True, title=title, data_bytes=used)


def volume_needs(repo: Repository, manifest: ImageManifest, vg: VolumeGroupImage, view: _View
                 ) -> dict[str, ShrinkNeed]:
    """What each logical volume of `vg` allows (LV name -> need; min_bytes is its size when it cannot
    shrink; swap's floor is MIN_SWAP)."""
    spaces = {s.name: s for s in address_spaces(manifest)}
    out = {}
    for lv in vg.lvs:
        title = f"logical volume {vg.name}/{lv.name} ({lv.fstype or lv.mode})"
        need = _content_need(repo, lv, spaces.get(lv_space_name(vg.name, lv.name)), 0, title, view)
        out[lv.name] = replace(need, min_bytes=min(lv.size, MIN_SWAP)) if need.swap else need
    return out


def _pv_need(repo: Repository, manifest: ImageManifest, number: int, view: _View) -> ShrinkNeed | None:
    """What a PV partition allows: its first extent's offset plus every volume at its minimum (whole
    extents). None when the partition is no PV of a group that can shrink (one PV, linear volumes)."""
    vg = next((g for g in manifest.volume_groups if [pv.partition for pv in g.pvs] == [number]), None)
    if vg is None or any(seg.stripes > 1 or seg.type not in ("linear", "striped") for lv in vg.lvs for seg in lv.segments):
        return None
    needs = volume_needs(repo, manifest, vg, view)
    extents = sum(min_extents(needs[lv.name], lv.size, vg.extent_size) for lv in vg.lvs)
    listed = ", ".join(f"{lv.name} {lv.fstype or lv.mode} at least "
                       f"{human_size(min_extents(needs[lv.name], lv.size, vg.extent_size) * vg.extent_size)}"
                       for lv in vg.lvs)
    header = pv_offsets(manifest).get(number, 0)  # a PV inside a LUKS container: its header comes first
    return ShrinkNeed(number, header + vg.pvs[0].pe_start + extents * vg.extent_size, True,
                      title=f"partition {number} ({'LUKS container: ' if header else ''}LVM volume group {vg.name}: "
                            f"{listed})",
                      data_bytes=sum(n.data_bytes for n in needs.values()))


def min_extents(need: ShrinkNeed, size: int, extent_size: int) -> int:
    """The fewest extents a logical volume of `size` bytes can have (its size when it cannot shrink)."""
    if not need.shrinkable:
        return -(-size // extent_size)
    return min(-(-size // extent_size), -(-need.min_bytes // extent_size))


class _View:
    """The image's read-only view, started the first time a partition's minimum is measured."""

    def __init__(self, repo: Repository, name: str, stack: contextlib.ExitStack):
        self.repo, self.name, self.stack, self.dir = repo, name, stack, ""

    def file(self, space: str) -> str:
        if not self.dir:
            self.dir = self.stack.enter_context(image_view(str(self.repo.root), self.name))
        return os.path.join(self.dir, space)


def shrink_needs(repo: Repository, manifest: ImageManifest) -> dict[int, ShrinkNeed]:
    """What each partition of the image allows when the target is smaller (a PV: its volumes' minimums)."""
    with contextlib.ExitStack() as stack:
        view = _View(repo, manifest.name, stack)
        return {p.number: _pv_need(repo, manifest, p.number, view)
                or _need(repo, manifest.partition(p.number), p.number, p.fixed_size and p.kind != "swap", view)
                for p in manifest.layout.data_partitions()}


def lv_floors(repo: Repository, manifest: ImageManifest, vg: VolumeGroupImage) -> dict[str, ShrinkNeed]:
    """What each logical volume of `vg` allows, the image's view opened for it alone."""
    with contextlib.ExitStack() as stack:
        return volume_needs(repo, manifest, vg, _View(repo, manifest.name, stack))


def minimum_disk_bytes(repo: Repository, manifest: ImageManifest) -> int:
    """The smallest disk this image can be restored onto (every partition at its minimum)."""
    return minimum_bytes(manifest.layout, shrink_needs(repo, manifest))


def plan_shrink(repo: Repository, manifest: ImageManifest, disk_bytes: int
                ) -> tuple[DiskLayout, list[FittedPartition], dict[int, ShrinkStep], list[str]]:
    layout = manifest.layout
    needs = shrink_needs(repo, manifest)
    fitted_layout, fitted, notes = shrink_layout(layout, disk_bytes, needs)
    steps: dict[int, ShrinkStep] = {}
    pvs = {pv.partition for vg in manifest.volume_groups for pv in vg.pvs}
    for f in fitted:
        part = manifest.partition(f.entry.number)
        if part is not None and f.entry.size < f.source.size and part.number not in pvs:  # a PV: its LVs shrink
            steps[part.number] = shrink_step(repo, part, f.entry.size * layout.sector_size)
    check_scratch(steps)
    return fitted_layout, fitted, steps, notes


def shrink_step(repo: Repository, part: PartitionImage | LogicalVolumeImage, new_bytes: int) -> ShrinkStep:
    """How partition (or logical volume) `part` of the image gets into `new_bytes` (its minimum already
    checked)."""
    cap = capability(part.fstype)
    beyond = _beyond(repo, part, new_bytes) if cap.method is ShrinkMethod.RESIZE else 0
    return ShrinkStep(cap.method, part.fstype, part.size, new_bytes, part.used_bytes, beyond,
                      estimate_seconds(cap.method, part.used_bytes, beyond), cap.tools)


def check_scratch(steps: dict[int, ShrinkStep]) -> None:
    """The overflow of one partition at a time must fit in the scratch directory."""
    need = max((s.beyond_bytes for s in steps.values()), default=0)
    if not need:
        return
    os.makedirs(SCRATCH, exist_ok=True)
    st = os.statvfs(SCRATCH)
    free = st.f_bavail * st.f_frsize
    if free < need + 64 * 1024 * 1024:
        raise LifeboatError(f"{SCRATCH} has {human_size(free)} free, but shrinking needs {human_size(need)} there "
                            "for the data beyond a partition's new end (set LIFEBOAT_SCRATCH to a larger place); "
                            "nothing was written")
