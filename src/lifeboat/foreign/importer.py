"""Import = read a foreign image + write it into a native repository.

Every window the Clonezilla reader hands out (checksums verified) is stored as a native chunk, so
it deduplicates against everything already in the repository; the block maps, boot regions, table,
identifiers and origin are kept, so restoring the imported image gives the same disk as restoring
the Clonezilla image.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import replace
from pathlib import Path

from lifeboat.events import Outcome, Progress, ProgressSink, StepFinished, StepStarted, discard
from lifeboat.engine.pipeline import OrderedPool
from lifeboat.errors import ImageCorrupt, RepositoryError
from lifeboat.foreign.clonezilla import is_image_dir
from lifeboat.foreign.czrepo import ClonezillaRepository
from lifeboat.repo.manifest import (
    BlockMapRef,
    CaptureStats,
    ChunkRef,
    Compression,
    DataStream,
    ImageManifest,
    LogicalVolumeImage,
    PartitionImage,
    VolumeGroupImage,
    content_stream,
    write_manifest,
)
from lifeboat.repo.store import Repository, check_image_name


class _Copier:
    def __init__(self, source: ClonezillaRepository, repo: Repository, level: int, progress: ProgressSink,
                 total: int):
        self.source, self.repo, self.level, self.progress, self.total = source, repo, level, progress, total
        self.done = self.stored = self.new_chunks = 0
        self.item, self.refs = "", []

    def copy(self, digest: str, length: int) -> tuple[str, int]:
        data = self.source.get_chunk(digest, length)
        try:
            return self.repo.put_chunk(data, self.level)
        finally:
            self.source.release(data)  # put_chunk keeps nothing of it: the buffer takes a later window

    def on_result(self, tag: tuple[int, int], value: tuple[str, int]) -> None:
        window, length = tag
        digest, written = value
        self.refs.append(ChunkRef(window, digest, length))
        self.stored += written
        self.new_chunks += 1 if written else 0
        self.done += length
        self.progress(Progress("import", self.item, self.done, self.total, self.done, self.total))

    def stream(self, item: str, stream: DataStream, cancel: threading.Event, workers: int | None) -> DataStream:
        self.item, self.refs = item, []
        map_digest, written = self.copy(stream.map.digest, stream.map.length)
        self.stored += written
        with OrderedPool(self.on_result, workers=workers, cancel=cancel) as pool:
            for ref in stream.chunks:
                pool.submit((ref.window, ref.length), self.copy, ref.digest, ref.length)
        return replace(stream, map=BlockMapRef(map_digest, stream.map.length, stream.map.runs),
                       chunks=tuple(sorted(self.refs, key=lambda r: r.window)))


def open_source(path: str) -> tuple[ClonezillaRepository, str]:
    """The Clonezilla image directory `path` as (reader, image name)."""
    image_dir = Path(path).absolute()
    if not is_image_dir(image_dir):
        raise ImageCorrupt(f"{image_dir}: not a Clonezilla image directory (no 'clonezilla-img', 'parts' or 'disk')")
    return ClonezillaRepository(image_dir), image_dir.name


def import_image(path: str, name: str, repo: Repository, *, level: int = 3, progress: ProgressSink = discard,
                 cancel: threading.Event | None = None, workers: int | None = None) -> ImageManifest:
    """Write the Clonezilla image in directory `path` into `repo` as native image `name`."""
    check_image_name(name)
    if isinstance(repo, ClonezillaRepository):
        raise RepositoryError(f"{repo.root} holds Clonezilla images; import into a Lifeboat repository")
    if repo.has_image(name):
        raise RepositoryError(f"{repo.root} already has an image named {name!r}")
    source, image = open_source(path)
    cancel = cancel or threading.Event()
    manifest = source.manifest(image)
    with repo.shared_use(), repo.writer_lock(name):
        copier = _Copier(source, repo, level, progress, manifest.data_bytes)
        progress(StepStarted("boot regions"))
        regions = []
        for region in manifest.boot_regions:
            digest, written = copier.copy(region.digest, region.length)
            copier.stored += written
            regions.append(replace(region, digest=digest))
        progress(StepFinished("boot regions", Outcome.DONE, ", ".join(r.name for r in regions)))
        parts = []
        for part in manifest.partitions:
            parts.append(_import_partition(copier, part, cancel, workers))
        groups = tuple(_import_group(copier, vg, cancel, workers) for vg in manifest.volume_groups)
        now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        native = replace(manifest, name=name, finished=now, boot_regions=tuple(regions), partitions=tuple(parts),
                         volume_groups=groups,
                         compression=Compression("zstd", level),
                         stats=CaptureStats(copier.done, copier.stored, copier.new_chunks))
        progress(StepStarted("manifest", "syncing chunks, writing the manifest"))
        write_manifest(repo, native)
        progress(StepFinished("manifest", Outcome.DONE, name))
    return native


def _import_partition(copier: _Copier, part: PartitionImage, cancel: threading.Event,
                      workers: int | None) -> PartitionImage:
    stream = content_stream(part.content)
    if stream is None:
        return part
    copier.progress(StepStarted(part.title))
    native = copier.stream(part.title, stream, cancel, workers)
    copier.progress(StepFinished(part.title, Outcome.DONE, f"{len(native.chunks)} chunks"))
    return replace(part, content=replace(part.content, stream=native))


def _import_group(copier: _Copier, vg: VolumeGroupImage, cancel: threading.Event,
                  workers: int | None) -> VolumeGroupImage:
    """The group's metadata (lvm_<VG>.conf) as a blob, each logical volume's data like a partition's."""
    copier.progress(StepStarted(f"volume group {vg.name}"))
    digest, written = copier.copy(vg.metadata.digest, vg.metadata.length)
    copier.stored += written
    lvs = tuple(_import_volume(copier, vg, lv, cancel, workers) for lv in vg.lvs)
    copier.progress(StepFinished(f"volume group {vg.name}", Outcome.DONE, f"{len(lvs)} logical volumes"))
    return replace(vg, metadata=replace(vg.metadata, digest=digest), lvs=lvs)


def _import_volume(copier: _Copier, vg: VolumeGroupImage, lv: LogicalVolumeImage, cancel: threading.Event,
                   workers: int | None) -> LogicalVolumeImage:
    stream = content_stream(lv.content)
    if stream is None:
        return lv
    title = f"logical volume {vg.name}/{lv.name} ({lv.fstype or lv.mode})"
    copier.progress(StepStarted(title))
    native = copier.stream(title, stream, cancel, workers)
    copier.progress(StepFinished(title, Outcome.DONE, f"{len(native.chunks)} chunks"))
    return replace(lv, content=replace(lv.content, stream=native))
