"""Execute a RestorePlan: table, boot regions, partition data, growth, swap, bootloader.

Data goes through the whole-disk device at each partition's offset, so no partition node is
needed until the filesystems are grown. Every chunk is checked against its hash before a byte of
it is written.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import mmap
import os
import struct
import threading
import time
from dataclasses import dataclass, field

from lifeboat import locks
from lifeboat.boot import after_restore
from lifeboat.boot.model import overall
from lifeboat.crashpoint import crashpoint
from lifeboat.devices import disk_info, human_size
from lifeboat.engine import luks_restore, lvm_restore, partial_lvm, shrink_restore
from lifeboat.engine.luks_plan import ContainerAction, opened_containers
from lifeboat.volumes.luks import LuksKey
from lifeboat.engine.lvm_plan import VolumeAction, pv_partitions
from lifeboat.engine.ioerrors import io_failure
from lifeboat.engine.pipeline import logical_sector_size_of, OrderedPool, direct_io_ok
from lifeboat.engine.plan import PartitionAction, RestorePlan, check_target_safe
from lifeboat.engine.restore_marker import (RestoreMarker, commit_table, mark_in_progress, register_partitions,
                                             table_head_bytes, table_sectors, wipe_signatures)
from lifeboat.errors import Cancelled, ImageCorrupt, LifeboatError
from lifeboat.events import LogLine, Outcome, Progress, ProgressSink, StepFinished, StepStarted, discard, summarize
from lifeboat.fs.grow import grow_filesystem, make_swap
from lifeboat.fs.registry import CaptureMode
from lifeboat.fs.shrink import ShrinkMethod
from lifeboat.imagefs import scratch
from lifeboat.imagefs.view import lv_space_name
from lifeboat.fs.usedmap import Runs, decode_runs, runs_in_window
from lifeboat.layout.model import DiskLayout, PartitionEntry
from lifeboat.layout.write import partition_node, refresh_partitions
from lifeboat.repo.manifest import CHUNK_SIZE, ChunkRef, Content, DataStream, ImageManifest, LogicalVolumeImage, content_stream
from lifeboat.repo.store import Repository
from lifeboat.timing import StageTimes

BLKZEROOUT = 0x127F  # _IO(0x12, 127): zero a byte range, offloaded where the device can
MBR_BOOT_CODE = 440  # bytes of boot code before the disk signature and the table


@dataclass(frozen=True)
class StepRecord:
    step: str
    outcome: Outcome
    detail: str = ""


@dataclass
class RestoreResult:
    image: str
    target: str
    bytes_written: int = 0
    seconds: float = 0.0
    steps: list[StepRecord] = field(default_factory=list)

    def failed_steps(self) -> list[StepRecord]:
        """Steps that failed without stopping the restore (a bootloader step): the data is in place, but
        the result is not a success."""
        return [s for s in self.steps if s.outcome is Outcome.FAILED]

    def to_json(self) -> dict:
        return {
            "image": self.image,
            "target": self.target,
            "bytes_written": self.bytes_written,
            "seconds": round(self.seconds, 2),
            "steps": [{"step": s.step, "outcome": str(s.outcome), "detail": s.detail} for s in self.steps],
        }


def _zero(fd: int, offset: int, length: int) -> None:
    if length > 0:
        fcntl.ioctl(fd, BLKZEROOUT, struct.pack("QQ", offset, length))


def _complement(runs: Runs, size: int) -> Runs:
    gaps, pos = [], 0
    for start, n in runs:
        if start > pos:
            gaps.append((pos, start - pos))
        pos = start + n
    if pos < size:
        gaps.append((pos, size - pos))
    return gaps


class _TargetFds:
    """The target opened twice: buffered for small unaligned writes (boot code), and with O_DIRECT for
    partition data. Direct 4 MiB writes skip the page cache: on loop devices here they ran about 3×
    faster than buffered writes followed by a sync, and they keep the cache free for the chunks."""

    def __init__(self, path: str):
        self.boot_code: bytes | None = None  # the MBR's first 440 bytes, written with the table at the end
        self.buffered = os.open(path, os.O_WRONLY | os.O_EXCL)
        self.align = logical_sector_size_of(self.buffered)
        try:
            self.direct = os.open(path, os.O_WRONLY | os.O_DIRECT)
        except OSError:  # a target that cannot do direct I/O: everything goes through the cache
            self.direct = -1

    def for_run(self, offset: int, length: int, buffer_pos: int) -> int:
        return self.direct if self.direct >= 0 and direct_io_ok(offset, length, buffer_pos, self.align) else self.buffered

    def sync_and_close(self) -> None:
        try:
            for fd in (self.direct, self.buffered):
                if fd >= 0:
                    os.fsync(fd)
        finally:
            self.close()

    def close(self) -> None:
        for fd in (self.direct, self.buffered):
            if fd >= 0:
                os.close(fd)
        self.direct = self.buffered = -1


_thread_buffers = threading.local()


def _aligned_buffer(length: int) -> memoryview:
    """This thread's page-aligned buffer, as O_DIRECT requires; reused once its chunk is written."""
    buf = getattr(_thread_buffers, "buf", None)
    if buf is None:
        buf = _thread_buffers.buf = mmap.mmap(-1, CHUNK_SIZE)
    return memoryview(buf)[:length]


class _PartitionWriter:
    def __init__(self, repo: Repository, fds: _TargetFds, action: PartitionAction, progress: ProgressSink,
                 totals: list[int], total: int):
        self.repo, self.fds, self.action, self.progress = repo, fds, action, progress
        self.base = action.target.start * action.target_sector_size
        self.totals, self.total = totals, total
        self.item_done = 0
        self.times = repo.stage_times = StageTimes()
        self.workers = 0

    def write_window(self, ref: ChunkRef, runs: Runs) -> int:
        length = ref.length
        if sum(n for _, n in runs) != length or length > CHUNK_SIZE:
            raise ImageCorrupt(f"{self.action.title} at offset {ref.offset}: chunk length does not match the block map")
        view = _aligned_buffer(length)  # decompressed into directly: no copy, no new 4 MiB object per chunk
        try:
            self.repo.get_chunk_into(ref.digest, view)
        except ImageCorrupt as exc:
            raise ImageCorrupt(f"{self.action.title} at offset {ref.offset}: {exc}") from None
        started, pos = time.perf_counter(), 0
        for start, n in runs:
            fd, written = self.fds.for_run(self.base + start, n, pos), 0
            while written < n:
                written += os.pwrite(fd, view[pos + written : pos + n], self.base + start + written)
            pos += n
        self.times.add("write", time.perf_counter() - started, length)
        return length

    def on_result(self, _tag, length: int) -> None:
        crashpoint("restore-chunk")
        self.item_done += length
        self.totals[0] += length
        self.progress(Progress("restore", self.action.title, self.item_done, self.action.write_bytes, self.totals[0], self.total))
        if self.item_done >= self.action.write_bytes:
            self.progress(LogLine(f"{self.action.title}: {self.times.summary(self.workers)}"))


def _write_partition(repo: Repository, fds: _TargetFds, action: PartitionAction, stream: DataStream,
                     progress: ProgressSink, cancel: threading.Event, totals: list[int], total: int,
                     workers: int | None) -> None:
    base, size = action.target.start * action.target_sector_size, action.source.size * action.source_sector_size
    runs = decode_runs(repo.get_chunk(stream.map.digest, stream.map.length))
    if action.mode is CaptureMode.RAW:
        for start, n in _complement(runs, size):
            _zero(fds.buffered, base + start, n)
    writer = _PartitionWriter(repo, fds, action, progress, totals, total)
    index = 0
    with OrderedPool(writer.on_result, workers=workers or repo.transfer_workers, cancel=cancel) as pool:
        writer.workers = pool.workers
        for ref in stream.chunks:
            inside, index = runs_in_window(runs, index, ref.offset, ref.offset + CHUNK_SIZE)
            pool.submit(ref.window, writer.write_window, ref, inside)


def _write_boot_regions(repo: Repository, fd: int, manifest: ImageManifest, layout: DiskLayout) -> bytes | None:
    """Write the gap before the first partition; return the MBR's boot code, which goes in with the table.

    Only the part of the gap after the target's own table area and before its first partition is written:
    with another sector size the GPT entries end elsewhere (LBA 34 at 512 bytes, LBA 6 at 4096)."""
    boot_code = None
    floor = table_head_bytes(layout)
    ceiling = layout.first_partition_start * layout.sector_size
    for region in manifest.boot_regions:
        data = repo.get_chunk(region.digest, region.length)
        if region.name == "mbr":
            boot_code = data[:MBR_BOOT_CODE]  # the table and signature come from sfdisk, at the commit
            continue
        start, end = max(region.offset, floor), min(region.offset + len(data), ceiling)
        if end > start:
            os.pwrite(fd, data[start - region.offset : end - region.offset], start)
    return boot_code


def restore(plan: RestorePlan, *, progress: ProgressSink = discard, cancel: threading.Event | None = None,
            bootloader: bool = True, workers: int | None = None) -> RestoreResult:
    with locks.holding_disk(plan.target):
        try:
            return _restore(plan, progress, cancel or threading.Event(), bootloader, workers)
        finally:  # a restore that stopped between writing and shrinking leaves no overflow file behind
            shrink_restore.discard_overflows(plan.image, [a.number for a in plan.actions if a.shrink])
            chosen = [(c.vg, c.action) for c in plan.volumes]
            for vg, v in [(g.name, v) for g in plan.volume_groups for v in g.volumes] + chosen:
                if v.shrink is not None:
                    scratch.discard(shrink_restore.space_overflow_path(plan.image, lv_space_name(vg, v.name)))


def _restore(plan: RestorePlan, progress: ProgressSink, cancel: threading.Event, bootloader: bool,
             workers: int | None) -> RestoreResult:
    started = time.monotonic()
    result = RestoreResult(plan.image, plan.target)
    repo = Repository.open(plan.repo_root)
    disk = disk_info(plan.target)
    check_target_safe(disk)  # again: something may have been mounted since the plan was shown
    if disk.size != plan.target_disk.size:
        raise LifeboatError(f"{plan.target} changed size since the plan was made; make a new plan")
    if cancel.is_set():
        raise Cancelled()

    def step(name: str, detail: str = "") -> None:
        progress(StepStarted(name, detail))

    def done(name: str, outcome: str = Outcome.DONE, detail: str = "") -> None:
        record = StepRecord(name, Outcome(outcome), detail)
        result.steps.append(record)
        progress(StepFinished(name, record.outcome, detail))

    if plan.keep_table:
        return _restore_partitions(plan, repo, result, progress, cancel, workers, step, done, started)
    started_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    step("mark target", "restore-in-progress record in sector 0; the old table is wiped")
    table = table_sectors(plan.target_layout, disk.size)  # into a scratch file: fails before any write
    wipe_signatures(plan.target)
    totals = [0]
    fds = _TargetFds(plan.target)
    try:
        try:
            mark_in_progress(fds.buffered, disk.size, RestoreMarker(plan.image, plan.repo_root, started_at),
                             plan.target_layout.sector_size)
            done("mark target", Outcome.DONE, f"{plan.target} shows 'incomplete restore of {plan.image}' until the end")
            crashpoint("restore-marked")
            _write_data(plan, repo, fds, progress, cancel, totals, workers, step, done)
            fds.sync_and_close()  # growing needs the partitions, which an exclusive open of the disk blocks
        except OSError as exc:
            raise io_failure(exc, repo.root, plan.target, f"restoring {plan.image!r}") from None
    except Cancelled:
        progress(LogLine(f"cancelled: {plan.target} is only partly restored and will not boot; restore again", "warning"))
        raise
    except ImageCorrupt as exc:
        raise ImageCorrupt(f"{exc}; {plan.target} is only partly restored and will not boot") from None
    finally:
        fds.close()
    result.bytes_written = totals[0]
    register_partitions(plan.target, plan.target_layout)  # by explicit ranges: the disk has no table yet
    _finish_partitions(plan, step, done)
    if plan.volume_groups:  # in their PVs, before the table: until it is written the disk says "incomplete"
        with luks_restore.opened_volumes(plan.containers, plan.manifest, repo, plan.target, plan.luks_key,
                                         step, done) as nodes:  # a PV inside LUKS: in the opened container
            lvm_restore.restore_groups(plan.volume_groups, plan.manifest, repo, plan.target,
                                       _volume_writer(plan, repo, progress, cancel, totals, workers, step, done),
                                       step, done, nodes)
        result.bytes_written = totals[0]
    if plan.containers:  # like the groups: inside their partitions, before the table
        luks_restore.restore_containers(plan.containers, plan.manifest, repo, plan.target, plan.luks_key,
                                        _container_writer(plan, repo, progress, cancel, totals, workers, step, done),
                                        step, done)
        result.bytes_written = totals[0]
    step("partition table", f"{plan.target_layout.label} with {len(plan.target_layout.partitions)} partitions")
    crashpoint("restore-before-table")
    _commit(plan, table, fds.boot_code, repo.root)
    done("partition table", Outcome.DONE, f"{plan.target_layout.label}, disk id {plan.target_layout.disk_id}")
    # closing the written disk makes udev re-read it; wait for that, then make sure the partitions are there
    refresh_partitions(plan.target, plan.target_layout)
    if bootloader:
        _bootloader(plan.target, plan.target_layout, progress, done, plan.luks_key)
    else:
        done("bootloader", Outcome.SKIPPED, "--no-bootloader")
    result.seconds = time.monotonic() - started
    return result


def _restore_partitions(plan: RestorePlan, repo: Repository, result: RestoreResult, progress: ProgressSink,
                        cancel: threading.Event, workers: int | None, step, done, started: float) -> RestoreResult:
    """Chosen partitions onto a disk whose table is kept (engine/partial.py): no marker, no table, no boot
    code; only the chosen partitions' bytes change."""
    done("partition table", Outcome.NOT_NEEDED, "kept: only the chosen partitions are written")
    totals = [0]
    fds = _TargetFds(plan.target)
    try:
        try:
            _write_data(plan, repo, fds, progress, cancel, totals, workers, step, done, boot=False)
            fds.sync_and_close()
        except OSError as exc:
            raise io_failure(exc, repo.root, plan.target, f"restoring {plan.image!r}") from None
    finally:
        fds.close()
    result.bytes_written = totals[0]
    refresh_partitions(plan.target, plan.target_layout)
    _finish_partitions(plan, step, done)
    if plan.volumes:  # chosen logical volumes, into the target's own group
        partial_lvm.restore_volumes(plan.volumes, plan.manifest, repo,
                                    _volume_writer(plan, repo, progress, cancel, totals, workers, step, done), step, done)
        result.bytes_written = totals[0]
    done("bootloader", Outcome.SKIPPED, "chosen partitions only: the disk's boot code was kept")
    result.seconds = time.monotonic() - started
    return result


def _shrink_progress(progress: ProgressSink, action: PartitionAction, totals: list[int], total: int):
    item = [0]

    def advance(length: int) -> None:
        item[0] += length
        totals[0] += length
        progress(Progress("restore", action.title, item[0], action.write_bytes, totals[0], total))
    return advance


def _commit(plan: RestorePlan, table: list[tuple[int, bytes]], boot_code: bytes | None, repo_root) -> None:
    """The table and the MBR's boot code, sector 0 last: from here on the disk is complete."""
    try:
        fd = os.open(plan.target, os.O_WRONLY)
        try:
            commit_table(fd, table, boot_code)
        finally:
            os.close(fd)
    except OSError as exc:
        raise io_failure(exc, repo_root, plan.target, f"writing the partition table of {plan.image!r}") from None


def _write_data(plan: RestorePlan, repo: Repository, fds: _TargetFds, progress: ProgressSink,
                cancel: threading.Event, totals: list[int], workers: int | None, step, done, boot: bool = True) -> None:
    """The gap before the first partition and every partition's data, flushed. Keeps the MBR's boot
    code in fds.boot_code: it goes in with the table, last."""
    if boot:
        fds.boot_code = _write_boot_regions(repo, fds.buffered, plan.manifest, plan.target_layout)
        done("boot regions", Outcome.DONE, ", ".join(r.name for r in plan.manifest.boot_regions))
    for action in plan.actions:
        stream = _stream_of(plan.manifest, action)
        if stream is None:
            continue
        step(action.title, human_size(action.write_bytes))
        if action.shrink is not None:  # into a smaller partition: shrink_restore says how
            shrink_restore.write_data(repo, fds.buffered, plan.image, action, stream,
                                      _shrink_progress(progress, action, totals, plan.total_bytes), cancel)
            why = action.shrink.remade_for or "to fit"
            done(action.title, Outcome.DONE, f"{human_size(action.write_bytes)} {why}: {action.shrink.method}")
            continue
        _write_partition(repo, fds, action, stream, progress, cancel, totals, plan.total_bytes, workers)
        done(action.title, Outcome.DONE, f"{human_size(action.write_bytes)} written")
    step("flush", "waiting for the disk to store everything")
    for fd in (fds.direct, fds.buffered):
        if fd >= 0:
            os.fsync(fd)
    done("flush")


def _stream_of(manifest: ImageManifest, action: PartitionAction) -> DataStream | None:
    """The stored data an action writes (None for swap and empty partitions)."""
    if action.mode not in (CaptureMode.USED_BLOCKS, CaptureMode.RAW):
        return None
    part = manifest.partition(action.number)
    return part.stream if part else None


def _finish_partitions(plan: RestorePlan, step, done) -> None:
    for action in plan.actions:
        node = partition_node(plan.target, action.target.number)
        if action.mode is CaptureMode.SWAP:
            part = plan.manifest.partition(action.number)
            uuid, label = (part.uuid, part.label) if part else ("", "")
            step(f"swap {action.number}")
            make_swap(node, uuid, label)
            done(f"swap {action.number}", Outcome.DONE, f"UUID {uuid}")
        elif action.shrink is not None:
            name = f"{'make anew' if action.shrink.remade_for else 'shrink'} {action.title}"
            step(name, str(action.shrink.method))
            part = plan.manifest.partition(action.number)
            done(name, Outcome.DONE, shrink_restore.finish(plan.repo_root, plan.image, action.number, node,
                                                           action.shrink, part.uuid, part.label))
        elif action.grow:
            name = f"grow {action.title}"
            step(name, action.grow)
            done(name, Outcome.DONE, grow_filesystem(action.grow, action.fstype, node))
        elif action.note and action.number not in pv_partitions(plan.manifest) | frozenset(
                opened_containers(plan.manifest)):  # a PV, a LUKS container: their own steps say it
            done(f"grow {action.title}", Outcome.NOT_NEEDED, action.note)


def _volume_writer(plan: RestorePlan, repo: Repository, progress: ProgressSink, cancel: threading.Event,
                   totals: list[int], workers: int | None, step, done) -> lvm_restore.WriteVolume:
    """Writes a logical volume's data like a partition's, through the volume's own node."""
    def write(node: str, volume: VolumeAction, lv: LogicalVolumeImage, space: str) -> None:
        entry = PartitionEntry(0, 0, lv.size // 512, "")
        action = PartitionAction(0, volume.fstype, volume.mode, entry, entry, volume.write_bytes, "",
                                 name=os.path.basename(node))
        stream = lv.stream
        if stream is None:
            return
        if volume.shrink is None:
            _write_node(plan, repo, node, action, stream, progress, cancel, totals, workers, step, done)
            return
        step(action.title, human_size(action.write_bytes))  # into a smaller volume: shrink_restore says how
        _write_shrinking_volume(plan, repo, node, space, action, volume, stream, progress, cancel, totals)
        done(action.title, Outcome.DONE, f"{human_size(action.write_bytes)} to fit: {volume.shrink.method}")
    return write


def _write_shrinking_volume(plan: RestorePlan, repo: Repository, node: str, space: str, action: PartitionAction,
                            volume: VolumeAction, stream: DataStream, progress: ProgressSink,
                            cancel: threading.Event, totals: list[int]) -> None:
    """A filesystem shrunk in place: the part below the volume's new end into the volume, the rest into
    its overflow file (nothing for one re-created and copied: its files are copied later)."""
    if volume.shrink is None or volume.shrink.method is not ShrinkMethod.RESIZE:
        return
    overflow = shrink_restore.space_overflow_path(plan.image, space)
    fd = os.open(node, os.O_WRONLY)
    try:
        shrink_restore.write_split(repo, fd, 0, stream, volume.shrink.target_bytes, overflow, action.title,
                                   _shrink_progress(progress, action, totals, plan.total_bytes), cancel)
        os.fsync(fd)
    except OSError as exc:
        raise io_failure(exc, repo.root, node, f"restoring {plan.image!r}") from None
    finally:
        os.close(fd)


def _container_writer(plan: RestorePlan, repo: Repository, progress: ProgressSink, cancel: threading.Event,
                      totals: list[int], workers: int | None, step, done) -> luks_restore.WriteContents:
    """Writes a LUKS container's contents like a partition's, through the opened container's node."""
    def write(node: str, container: ContainerAction, inner: Content) -> None:
        entry = PartitionEntry(0, 0, container.size // 512, "")
        action = PartitionAction(0, container.fstype, container.mode, entry, entry, container.write_bytes, "",
                                 name=f"of the {container.title}")
        stream = content_stream(inner)
        if stream is not None:
            _write_node(plan, repo, node, action, stream, progress, cancel, totals, workers, step, done)
    return write


def _write_node(plan: RestorePlan, repo: Repository, node: str, action: PartitionAction, stream: DataStream,
                progress: ProgressSink, cancel: threading.Event, totals: list[int], workers: int | None,
                step, done) -> None:
    """One stream written from the start of `node` (a logical volume, an opened LUKS container)."""
    step(action.title, human_size(action.write_bytes))
    fds = _TargetFds(node)
    try:
        _write_partition(repo, fds, action, stream, progress, cancel, totals, plan.total_bytes, workers)
        fds.sync_and_close()
    except OSError as exc:
        raise io_failure(exc, repo.root, node, f"restoring {plan.image!r}") from None
    finally:
        fds.close()
    done(action.title, Outcome.DONE, f"{human_size(action.write_bytes)} written")


def _bootloader(target: str, layout: DiskLayout, progress: ProgressSink, done, key: LuksKey | None) -> None:
    """Reinstall the bootloader of the systems on the disk just written with `layout`. Each of boot's steps is
    recorded as "bootloader: <step>"; the "bootloader" step itself ends with their one-word summary
    (done / not-needed / failed), so a data disk ends "bootloader: not-needed" with boot's note. `key`: the
    restore's LUKS passphrase, which also opens a root inside a restored container."""
    progress(StepStarted("bootloader"))
    outcomes = after_restore(target, layout, progress, key)
    for outcome in outcomes:
        done(f"bootloader: {outcome.step}", outcome.outcome, outcome.detail)
    summary = overall(outcomes)
    notes = [o.detail for o in outcomes if o.outcome == summary and o.detail]
    progress(StepFinished("bootloader", summary, notes[0] if summary == Outcome.NOT_NEEDED and notes else ""))


def bootloader_outcome(result: RestoreResult) -> Outcome | None:
    """The bootloader step's one word (done, not-needed, skipped, failed), the same for the CLI, the TUI and
    the unattended result line; None when the restore did not get that far."""
    steps = [s.outcome for s in result.steps if s.step == "bootloader" or s.step.startswith("bootloader: ")]
    return summarize(steps) if steps else None
