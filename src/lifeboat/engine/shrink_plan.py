"""The plan for a target disk smaller than the image's layout: which partitions shrink, how, by how
much, how long it roughly takes, and where the part of a filesystem beyond its new end waits while
it is shrunk. Reads the block maps (one small chunk per shrinking partition); writes nothing."""

from __future__ import annotations

import contextlib
import os
import struct
from dataclasses import dataclass

from lifeboat.devices import human_size
from lifeboat.errors import LifeboatError
from lifeboat.fs.minsize import measured_minimum
from lifeboat.fs.shrink import ShrinkMethod, capability, estimate_seconds
from lifeboat.fs.usedmap import decode_runs
from lifeboat.layout.fit import FittedPartition
from lifeboat.layout.model import DiskLayout
from lifeboat.imagefs.mount import image_view
from lifeboat.imagefs.view import SpaceReader, WindowCache, address_spaces_of
from lifeboat.layout.shrink import ShrinkNeed, minimum_bytes, shrink_layout
from lifeboat.repo.manifest import ImageManifest, PartitionImage
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


def _beyond(repo: Repository, part: PartitionImage, cut: int) -> int:
    stream = part.stream
    if stream is None:
        return 0
    runs = decode_runs(repo.get_chunk(stream.map.digest, stream.map.length))
    return sum(max(0, start + n - max(start, cut)) for start, n in runs if start + n > cut)


def fs_used_bytes(repo: Repository, part: PartitionImage) -> int:
    """Bytes the filesystem itself says it uses. The block map counts btrfs's allocated chunks whole,
    free space inside them included; its superblock's bytes_used (offset 0x78 of the superblock at
    64 KiB) counts only what is used. Others: the block map's count."""
    space = next((s for s in address_spaces_of(part) if s.name == f"p{part.number}"), None)
    if part.fstype != "btrfs" or space is None:
        return part.used_bytes
    superblock = SpaceReader(repo, space, WindowCache(repo, 1)).read(BTRFS_SUPER, 4096)
    if superblock[0x40:0x48] != b"_BHRfS_M":
        return part.used_bytes
    return min(part.used_bytes, struct.unpack_from("<Q", superblock, 0x78)[0])


def _need(repo: Repository, part: PartitionImage | None, number: int, fixed: bool, view: _View) -> ShrinkNeed:
    if part is None or fixed:
        return ShrinkNeed(number, 0, False)
    cap = capability(part.fstype if part.mode != "raw" else "")
    if cap.method is ShrinkMethod.SWAP:
        return ShrinkNeed(number, 0, True, swap=True, title=part.title)
    if cap.method is ShrinkMethod.NONE:
        return ShrinkNeed(number, part.size, False, title=part.title, data_bytes=part.used_bytes)
    used = fs_used_bytes(repo, part)
    least = cap.min_bytes(used)
    if cap.method is ShrinkMethod.RESIZE and least < part.size:  # ask the filesystem's own tool
        least = measured_minimum(part.fstype, view.file(f"p{part.number}")) or least
    return ShrinkNeed(number, least, True, title=part.title, data_bytes=used)


class _View:
    """The image's read-only view, started the first time a partition's minimum is measured."""

    def __init__(self, repo: Repository, name: str, stack: contextlib.ExitStack):
        self.repo, self.name, self.stack, self.dir = repo, name, stack, ""

    def file(self, space: str) -> str:
        if not self.dir:
            self.dir = self.stack.enter_context(image_view(str(self.repo.root), self.name))
        return os.path.join(self.dir, space)


def shrink_needs(repo: Repository, manifest: ImageManifest) -> dict[int, ShrinkNeed]:
    """What each partition of the image allows when the target is smaller."""
    with contextlib.ExitStack() as stack:
        view = _View(repo, manifest.name, stack)
        return {p.number: _need(repo, manifest.partition(p.number), p.number, p.fixed_size and p.kind != "swap", view)
                for p in manifest.layout.data_partitions()}


def minimum_disk_bytes(repo: Repository, manifest: ImageManifest) -> int:
    """The smallest disk this image can be restored onto (every partition at its minimum)."""
    return minimum_bytes(manifest.layout, shrink_needs(repo, manifest))


def plan_shrink(repo: Repository, manifest: ImageManifest, disk_bytes: int
                ) -> tuple[DiskLayout, list[FittedPartition], dict[int, ShrinkStep], list[str]]:
    layout = manifest.layout
    needs = shrink_needs(repo, manifest)
    fitted_layout, fitted, notes = shrink_layout(layout, disk_bytes, needs)
    steps: dict[int, ShrinkStep] = {}
    for f in fitted:
        part = manifest.partition(f.entry.number)
        if part is not None and f.entry.size < f.source.size:
            steps[part.number] = shrink_step(repo, part, f.entry.size * layout.sector_size)
    check_scratch(steps)
    return fitted_layout, fitted, steps, notes


def shrink_step(repo: Repository, part: PartitionImage, new_bytes: int) -> ShrinkStep:
    """How partition `part` of the image gets into `new_bytes` (its minimum already checked)."""
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
