"""Capture a whole disk into a repository image.

inspect_source() looks at the disk and answers every "can we?" question (tools, filesystems,
used sizes) before anything is written; capture() streams the data into chunks and writes the
manifest last.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from dataclasses import dataclass, field

from lifeboat import __version__, locks
from lifeboat.devices import disk_info, filesystem_facts, human_size, writable_mounts
from lifeboat.crashpoint import crashpoint
from lifeboat.engine import luks_capture, lvm_capture
from lifeboat.engine.ioerrors import repository_failure
from lifeboat.events import LogLine, Outcome, Progress, ProgressSink, StepFinished, StepStarted, discard
from lifeboat.engine.pipeline import logical_sector_size_of, BufferRing, OrderedPool, direct_io_ok
from lifeboat.engine.restore_marker import table_head_bytes
from lifeboat.engine.rescue import Reader, RescueOptions, read_error, rescue_owners, stream_rescue
from lifeboat.errors import Cancelled, LifeboatError, RepositoryError
from lifeboat.fs.registry import RAW, CaptureMode, FsKind, kind_for
from lifeboat.fs.volumes import VolumeInfo
from lifeboat.fs.volumes import probe as probe_volume
from lifeboat.fs.usedmap import Runs, data_windows, encode_runs, used_runs, with_edges
from lifeboat.layout.model import DiskLayout, PartitionEntry
from lifeboat.layout.read import read_layout
from lifeboat.layout.write import ensure_partitions, partition_node
from lifeboat.repo.manifest import (
    CHUNK_SIZE,
    BlockMapRef,
    BootRegion,
    CaptureStats,
    ChunkRef,
    Compression,
    Content,
    DataStream,
    FilesystemContent,
    ImageManifest,
    LvmPvContent,
    PartitionImage,
    RawContent,
    SourceDisk,
    SwapContent,
    write_manifest,
)
from lifeboat.repo.store import Repository, check_image_name, is_disk_full
from lifeboat.run import TOOLS, missing_tools, run
from lifeboat.timing import StageTimes
from lifeboat.volumes.luks import LuksKey, LuksKeys

RAW_BLOCK = 64 * 1024  # granularity of zero-skipping for raw partitions
_ZERO_BLOCK = bytes(RAW_BLOCK)


@dataclass
class SourcePartition:
    entry: PartitionEntry
    node: str
    fstype: str
    kind: FsKind
    uuid: str = ""
    label: str = ""
    runs: Runs = field(default_factory=list)  # filled for used-blocks partitions
    sector_size: int = 512  # the disk's logical sectors, which entry counts in
    volume: VolumeInfo | None = None  # a LUKS/LVM/BitLocker/MD volume, copied whole
    reason: str = ""  # why it is copied whole, when the volume's own reason is not the whole story
    pv: LvmPvContent | None = None  # an LVM PV whose logical volumes are imaged one by one
    name: str = ""  # "VG/LV" for a logical volume (its entry then spans it, from sector 0)
    luks: luks_capture.SourceContainer | None = None  # a LUKS container opened with its passphrase
    inside: str = ""  # "LUKS container on partition 2" for the opened contents of one

    @property
    def size(self) -> int:
        return self.entry.size * self.sector_size

    @property
    def to_read(self) -> int:
        if self.luks:
            return self.luks.inner.to_read
        if self.kind.mode is CaptureMode.USED_BLOCKS:
            return sum(n for _, n in self.runs)
        return self.size if self.kind.mode is CaptureMode.RAW else 0

    @property
    def title(self) -> str:
        if self.inside:  # the opened contents of a LUKS container
            return f"contents of the {self.inside} ({self.fstype or 'raw'})"
        if self.name:  # a logical volume
            return f"logical volume {self.name} ({self.fstype or 'raw'})"
        return f"partition {self.entry.number} ({self.fstype or 'raw'})"


@dataclass
class SourceInfo:
    path: str
    size: int
    model: str
    serial: str
    layout: DiskLayout
    partitions: list[SourcePartition]
    groups: list[lvm_capture.SourceGroup] = field(default_factory=list)  # LVM volume groups on the disk

    @property
    def to_read(self) -> int:
        return sum(p.to_read for p in self.partitions) + sum(v.to_read for g in self.groups for v in g.volumes)


def inspect_source(source: str, progress: ProgressSink = discard, rescue: bool = False,
                   luks_key: LuksKey | LuksKeys | None = None) -> SourceInfo:
    """Read the table and every partition's filesystem (a LUKS container's contents too, opened read-only
    with `luks_key`). Raises before anything is written."""
    progress(StepStarted("inspect source", f"reading the partition table and block maps of {source}"))
    missing = missing_tools(["sfdisk", "blkid", "partx", "udevadm"])
    if missing:
        raise LifeboatError(f"missing tools: {_named(missing)}")
    disk = disk_info(source)
    if disk.is_boot_medium:
        raise LifeboatError(f"{source} is the disk Lifeboat runs from; capture another disk")
    with locks.holding_disk(source):
        return _inspect(source, disk, progress, rescue, luks_key)


def _inspect(source: str, disk, progress: ProgressSink, rescue: bool = False,
             luks_key: LuksKey | LuksKeys | None = None) -> SourceInfo:
    run(["udevadm", "settle", "--timeout=10"], check=False)  # let a re-read already under way finish first
    layout = read_layout(source)
    ensure_partitions(source, layout)
    _refuse_writable_mounts(source, layout)
    parts = []
    for entry in layout.data_partitions():
        node = partition_node(source, entry.number)
        facts = filesystem_facts(node)
        part = SourcePartition(entry, node, facts.fstype, kind_for(facts.fstype), facts.uuid, facts.label,
                               sector_size=layout.sector_size)
        part.volume = _probe_volume(part)
        if part.volume:  # never by used blocks: an MD 1.0 member's filesystem would lose its superblock
            part.kind = RAW
            part.fstype = part.volume.fstype
            progress(LogLine(f"{part.title}: {part.volume.describe}"))
        parts.append(part)
    needed = [tool for p in parts for tool in p.kind.capture_tools()]
    missing = missing_tools(needed)
    if missing:
        raise LifeboatError(f"missing tools: {_named(missing)}; nothing was written")
    for part in parts:
        _measure(part, progress, rescue)
    luks_capture.inspect_containers(parts, luks_key, progress, lambda inner: _measure(inner, progress, rescue))
    with luks_capture.opened_for_capture(parts, volumes_only=True):  # an LVM PV inside LUKS is a PV too
        groups = lvm_capture.inspect_groups(parts + luks_capture.inner_volumes(parts), progress,
                                            lambda vol: _measure(vol, progress, rescue))
    luks_capture.copy_ungrouped_whole(parts)
    info = SourceInfo(source, disk.size, disk.model, disk.serial, layout, parts, groups)
    progress(StepFinished("inspect source", Outcome.DONE, f"{len(parts)} partitions, {human_size(info.to_read)} to read"))
    return info


def _measure(part: SourcePartition, progress: ProgressSink, rescue: bool) -> None:
    """Map the used blocks of a used-blocks partition (or logical volume)."""
    if part.kind.mode is not CaptureMode.USED_BLOCKS:
        return
    missing = missing_tools(part.kind.capture_tools())
    if missing:
        raise LifeboatError(f"missing tools: {_named(missing)}; nothing was written")
    try:
        part.runs = with_edges(used_runs(part.kind.partclone, part.node, part.size), part.size)
    except LifeboatError as exc:
        if not rescue:
            raise
        # the damage is in the filesystem's own metadata: copy every sector of it instead
        progress(LogLine(f"{part.title}: {exc}; rescue copies the whole partition", "warning"))
        part.kind = RAW


def _probe_volume(part: SourcePartition) -> VolumeInfo | None:
    try:
        return probe_volume(part.node, part.size)
    except OSError as exc:
        raise LifeboatError(f"{part.node}: cannot read its first bytes ({exc.strerror or exc}); nothing was written") from None


def _refuse_writable_mounts(source: str, layout: DiskLayout) -> None:
    """A filesystem that changes while it is read makes an inconsistent image (and a repository on
    the source disk would be captured into itself)."""
    writable = writable_mounts()
    for entry in layout.data_partitions():
        node = partition_node(source, entry.number)
        where = writable.get(os.stat(node).st_rdev) if os.path.exists(node) else None
        if where:
            raise LifeboatError(
                f"{node} is mounted read-write on {where}: unmount it (or remount it read-only) before capturing; "
                "nothing was written"
            )


def _named(tools: list[str]) -> str:
    return ", ".join(f"{t} (Debian package {TOOLS[t]})" if t in TOOLS else t for t in tools)


class _Writer:
    """Counts progress and collects chunk references while the pool hashes and stores."""

    def __init__(self, repo: Repository, level: int, progress: ProgressSink, total: int):
        self.repo = repo
        self.level = level
        self.progress = progress
        self.total = total
        self.done = 0
        self.stored = 0
        self.new_chunks = 0
        self.item = ""
        self.item_done = 0
        self.item_total = 0
        self.refs: list[ChunkRef] = []
        self.times = StageTimes()
        self.workers = 0
        self.rescue: RescueOptions | None = None
        self.deadline: float | None = None  # monotonic time when rescue retries stop
        self.reader: Reader | None = None  # the current partition's rescue reader: its error count for progress
        self.to_retry = 0  # bytes the rescue's retry passes have still to go over

    def start_item(self, item: str, total: int) -> None:
        self.item, self.item_done, self.item_total, self.refs = item, 0, total, []
        self.reader, self.to_retry = None, 0
        self.times = self.repo.stage_times = StageTimes()

    def store(self, data: bytearray) -> tuple[str, int]:
        return self.repo.put_chunk(data, self.level)

    def skip(self, length: int) -> None:
        """Count bytes that were read but hold nothing to store (all zero)."""
        self.done += length
        self.item_done += length

    def on_result(self, tag: tuple[int, int, int], value: tuple[str, int] | None) -> None:
        if value is None:  # a rescue window, stored later after its retries
            return
        index, length, counted = tag
        digest, written = value
        crashpoint("capture-chunk")
        self.refs.append(ChunkRef(index, digest, length))
        self.stored += written
        self.new_chunks += 1 if written else 0
        self.done += counted
        self.item_done += counted
        errors = self.reader.stats.errors if self.reader else 0
        self.progress(Progress("capture", self.item, self.item_done, self.item_total, self.done, self.total,
                               read_errors=errors, to_retry=self.to_retry))
        if self.item_done >= self.item_total:
            self.progress(LogLine(f"{self.item}: {self.times.summary(self.workers)}"))


class _SourceFds:
    """A partition opened twice: with O_DIRECT for aligned runs (no copy through the page cache, and
    a cold cache stays cold for everyone else), and buffered for anything unaligned."""

    def __init__(self, node: str):
        self.node = node
        try:
            self.buffered = os.open(node, os.O_RDONLY)
        except FileNotFoundError:
            raise LifeboatError(f"{node} disappeared before it could be read (was the disk removed?)") from None
        os.posix_fadvise(self.buffered, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        self.align = logical_sector_size_of(self.buffered)
        try:
            self.direct = os.open(node, os.O_RDONLY | os.O_DIRECT)
        except OSError:
            self.direct = -1

    def for_run(self, offset: int, length: int, buffer_pos: int) -> int:
        return self.direct if self.direct >= 0 and direct_io_ok(offset, length, buffer_pos, self.align) else self.buffered

    def close(self) -> None:
        for fd in (self.direct, self.buffered):
            if fd >= 0:
                os.close(fd)


def _read_exact(fd: int, view: memoryview, offset: int, where: str) -> None:
    got = 0
    while got < len(view):
        n = os.preadv(fd, [view[got:]], offset + got)
        if n <= 0:
            raise LifeboatError(f"{where}: read ended early at byte {offset + got} (device shrank or was removed?)")
        got += n


def _stream_used(source: _SourceFds, part: SourcePartition, pool: OrderedPool, writer: _Writer,
                 cancel: threading.Event) -> Runs:
    """Hand each 4 MiB window's used runs to the pool, which reads, hashes and stores them.

    Reading in the workers keeps several reads in flight (direct I/O has no readahead) and lets
    one worker compress while another waits for the disk.
    """
    # Reused read buffers: allocating (and zero-filling) 4 MiB per chunk cost a quarter of the
    # reading thread's time. A buffer is refilled only after its chunk has been stored (see BufferRing).
    ring = BufferRing(pool.depth, CHUNK_SIZE)
    writer.workers = pool.workers
    for window, inside, length in data_windows(part.runs, CHUNK_SIZE):
        if cancel.is_set():
            raise Cancelled()
        pool.submit((window, length, length), _read_and_store, source, inside, ring.next()[:length], part.title, writer)
    return part.runs


def _read_and_store(source: _SourceFds, runs: Runs, view: memoryview, title: str, writer: _Writer) -> tuple[str, int]:
    pos, started = 0, time.perf_counter()
    for start, n in runs:
        try:
            _read_exact(source.for_run(start, n, pos), view[pos : pos + n], start, title)
        except OSError as exc:
            raise read_error(source, title, start, n, exc) from None
        pos += n
    writer.times.add("read", time.perf_counter() - started, pos)
    return writer.store(view)


def _stream_raw(source: _SourceFds, part: SourcePartition, pool: OrderedPool, writer: _Writer, cancel: threading.Event) -> Runs:
    """Copy every non-zero 64 KiB block; the map of what was kept is built while reading."""
    runs: Runs = []
    for window in range((part.size + CHUNK_SIZE - 1) // CHUNK_SIZE):
        if cancel.is_set():
            raise Cancelled()
        base = window * CHUNK_SIZE
        span = min(CHUNK_SIZE, part.size - base)
        buf = bytearray(span)
        try:
            _read_exact(source.buffered, memoryview(buf), base, part.title)
        except OSError as exc:
            raise read_error(source, part.title, base, span, exc) from None
        kept = bytearray()
        for off in range(0, span, RAW_BLOCK):
            block = buf[off : off + RAW_BLOCK]
            if block == _ZERO_BLOCK[: len(block)]:
                continue
            kept += block
            if runs and runs[-1][0] + runs[-1][1] == base + off:
                runs[-1] = (runs[-1][0], runs[-1][1] + len(block))
            else:
                runs.append((base + off, len(block)))
        if kept:
            pool.submit((window, len(kept), span), writer.store, kept)
        else:
            writer.skip(span)
    return runs


def _boot_regions(source: str, layout: DiskLayout) -> list[tuple[str, int, bytes]]:
    """(name, offset, bytes): the first sector, and the gap before the first partition."""
    # GPT: everything after the primary entries (LBA 34 at 512 bytes, LBA 6 at 4096), even below the
    # first usable LBA
    gap_start = table_head_bytes(layout)
    gap_end = layout.first_partition_start * layout.sector_size
    with open(source, "rb") as f:
        regions = [("mbr", 0, f.read(512))]
        if gap_end > gap_start:
            f.seek(gap_start)
            regions.append(("post-mbr-gap", gap_start, f.read(gap_end - gap_start)))
    return regions


def capture(
    source: str,
    name: str,
    repo: Repository,
    *,
    level: int = 3,
    progress: ProgressSink = discard,
    cancel: threading.Event | None = None,
    info: SourceInfo | None = None,
    workers: int | None = None,
    rescue: RescueOptions | None = None,
) -> ImageManifest:
    """Capture `source` as image `name`. Returns the manifest. Raises LifeboatError; leaves no image on failure."""
    check_image_name(name)
    cancel = cancel or threading.Event()
    if repo.has_image(name):
        raise RepositoryError(f"an image named {name!r} already exists in {repo.root}; choose another name")
    with locks.capturing(source), locks.holding_disk(source), repo.shared_use(), repo.writer_lock(name):
        info = info or inspect_source(source, progress)
        progress(LogLine(f"capturing {source} ({human_size(info.to_read)} to read) into {repo.root} as {name!r}"))
        writer = _Writer(repo, level, progress, info.to_read)
        writer.rescue = rescue
        if rescue and rescue.timeout:
            writer.deadline = time.monotonic() + rescue.timeout
        try:
            return _capture(info, name, repo, writer, cancel, workers)
        except OSError as exc:
            if is_disk_full(exc):
                raise RepositoryError(
                    f"the repository at {repo.root} is full (while storing {writer.item or 'boot regions'}, "
                    f"at byte {writer.item_done} of it); the image was not saved, "
                    "chunks already written stay for the next capture"
                ) from None
            if exc.filename and not str(exc.filename).startswith(str(repo.root)):
                raise LifeboatError(f"{exc.filename}: {exc.strerror or exc} (was the source disk removed?)") from None
            raise repository_failure(exc, repo.root, f"storing {writer.item or 'boot regions'} "
                                                     f"(at byte {writer.item_done} of it)") from None
        finally:
            repo.clean_tmp()


def _capture_partition(part: SourcePartition, repo: Repository, writer: _Writer, cancel: threading.Event,
                       workers: int | None) -> PartitionImage:
    """Store one partition's data and block map; returns its manifest record."""
    record = PartitionImage(part.entry.number, part.size, _capture_content(part, repo, writer, cancel, workers))
    writer.progress(StepFinished(part.title, Outcome.DONE, human_size(record.used_bytes)))
    return record


def _capture_content(part: SourcePartition, repo: Repository, writer: _Writer, cancel: threading.Event,
                     workers: int | None) -> Content:
    """Store the data and block map of a partition or a logical volume; returns its content record."""
    mode = part.kind.mode
    writer.progress(StepStarted(part.title, f"{mode}, {human_size(part.to_read)}"))
    writer.start_item(part.title, part.to_read)
    if part.luks:
        return luks_capture.capture_container(part, repo, writer,
                                              lambda inner: _capture_content(inner, repo, writer, cancel, workers))
    if part.pv:
        return part.pv
    content: Content = SwapContent(part.uuid, part.label)
    if mode in (CaptureMode.USED_BLOCKS, CaptureMode.RAW):
        source = _SourceFds(part.node)
        try:
            with OrderedPool(writer.on_result, workers=workers or repo.transfer_workers, cancel=cancel) as pool:
                if writer.rescue:
                    runs = part.runs if mode is CaptureMode.USED_BLOCKS else [(0, part.size)]
                    reader = writer.reader = Reader(source.for_run, part.node, part.title, writer.rescue,
                                                    writer.deadline)
                    lost = stream_rescue(reader, runs, pool, writer, cancel)
                else:
                    lost = []
                    stream = _stream_used if mode is CaptureMode.USED_BLOCKS else _stream_raw
                    runs = stream(source, part, pool, writer, cancel)
        finally:
            source.close()
        blob = encode_runs(runs)
        map_digest, written = repo.put_chunk(blob, writer.level)
        writer.stored += written
        data = DataStream(BlockMapRef(map_digest, len(blob), len(runs)), tuple(sorted(writer.refs, key=_window)),
                          sum(n for _, n in runs), **rescue_owners(part, mode, lost, writer.progress))
        if mode is CaptureMode.USED_BLOCKS:
            content = FilesystemContent(part.fstype, part.uuid, part.label, data)
        else:
            reason = f"no used-block map for {part.fstype}" if part.fstype else "content not recognised"
            reason = part.reason or (part.volume.reason if part.volume else reason)
            content = RawContent(data, part.fstype, part.uuid, part.label, reason)
    return content


def _window(ref: ChunkRef) -> int:
    return ref.window


def _capture(info: SourceInfo, name: str, repo: Repository, writer: _Writer, cancel: threading.Event,
             workers: int | None) -> ImageManifest:
    started = dt.datetime.now(dt.timezone.utc)
    level, progress = writer.level, writer.progress
    regions = []
    for region, offset, data in _boot_regions(info.path, info.layout):
        digest, written = repo.put_chunk(data, level)
        writer.stored += written
        regions.append(BootRegion(region, offset, len(data), digest))
    with luks_capture.opened_for_capture(info.partitions):  # a group may have its PV in one
        partitions = tuple(_capture_partition(part, repo, writer, cancel, workers) for part in info.partitions)
        volume_groups = lvm_capture.capture_groups(
            info.groups, repo, writer, lambda vol: _capture_content(vol, repo, writer, cancel, workers))
    manifest = ImageManifest(
        name=name,
        created=started.isoformat(timespec="seconds"),
        finished=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        lifeboat_version=__version__,
        source=SourceDisk(info.path, info.size, info.model, info.serial, info.layout.sector_size),
        layout=info.layout,
        boot_regions=tuple(regions),
        partitions=partitions,
        volume_groups=volume_groups,
        compression=Compression("zstd", level),
        stats=CaptureStats(read_bytes=writer.done, new_chunk_bytes=writer.stored, new_chunks=writer.new_chunks),
    )
    progress(StepStarted("manifest", "syncing chunks, writing the manifest"))
    crashpoint("capture-before-manifest")
    write_manifest(repo, manifest)
    progress(StepFinished("manifest", Outcome.DONE, name))
    return manifest
