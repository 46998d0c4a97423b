"""Rescue reads: get every readable byte off a failing disk, and know exactly which bytes were not.

Passes, like GNU ddrescue's:
1. copy: every 4 MiB window is read in 1 MiB pieces by the pool's workers. A window that reads whole is
   stored at once. At the first error the rest of the window is skipped, and the next windows are
   skipped too for a distance that doubles with each failing window in a row (1, 2, 4 ... 64 MiB): a
   dead region costs a few failed reads, not thousands.
2. trim: every skipped or failed range is read inwards from both ends in 4 KiB blocks until the first
   error on each side (the good data next to a bad spot is usually most of it).
3. scrape: what is left between is read 4 KiB at a time; a block that fails is read sector by sector.
4. retry: each sector still unreadable is tried `retries` more times.
The retry work stops at the deadline (--rescue-timeout): what was not tried by then counts as
unreadable. Past the deadline pass 1 still copies what reads, but its first error skips the rest of
the partition, so a disk that keeps failing ends soon after the deadline however large it is (each
failed read of a dying disk can take the kernel many seconds). Unreadable bytes are stored as zeros
and their ranges (to the sector) returned.
"""

from __future__ import annotations

import errno
import mmap
import os
import threading
import time
from dataclasses import dataclass, field

from lifeboat.events import LogLine
from lifeboat.engine.ioerrors import device_state
from lifeboat.engine.pipeline import BufferRing
from lifeboat.errors import Cancelled, LifeboatError
from lifeboat.fs.registry import CaptureMode
from lifeboat.fs.usedmap import Runs, data_windows, merge_runs
from lifeboat.repo.manifest import CHUNK_SIZE, ByteRange, DataStream, ImageManifest, content_stream

SECTOR = 512
BLOCK = 4096
PIECE = 1024 * 1024
MAX_SKIP = 64 * 1024 * 1024
PAST_DEADLINE = 1 << 62  # pass 1's skip after an error once the rescue's time is up: the rest of the partition
# errors that mean "this device lost the disk", not "these sectors are bad"
_GONE = (errno.ENODEV, errno.ENXIO, errno.ENOMEDIUM, errno.ESHUTDOWN)


@dataclass(frozen=True)
class RescueOptions:
    timeout: float | None = None  # seconds for the whole capture's rescue work; None: no bound
    retries: int = 1  # extra attempts per still-unreadable sector


@dataclass
class RescueStats:
    """Shared by the workers of one partition; read under `lock`."""

    errors: int = 0  # failed reads
    skip_until: int = -1  # pass 1 does not touch windows starting before this offset
    streak: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class SourceGone(LifeboatError):
    pass


class Reader:
    """Reads one partition's ranges with rescue semantics. Offsets are bytes from the partition's start."""

    def __init__(self, fd_for, node: str, title: str, options: RescueOptions, deadline: float | None):
        self.fd_for = fd_for  # (offset, length, buffer_pos) -> fd, as _SourceFds.for_run
        self.node = node
        self.title = title
        self.options = options
        self.deadline = deadline
        self.stats = RescueStats()

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def _read(self, view: memoryview, offset: int, pos: int) -> bool:
        """One read of len(view) bytes at `offset` into view (which sits at `pos` of the window buffer)."""
        try:
            got = 0
            while got < len(view):
                n = os.preadv(self.fd_for(offset + got, len(view) - got, pos + got), [view[got:]], offset + got)
                if n <= 0:
                    raise SourceGone(f"{self.title}: read ended early at byte {offset + got} (device shrank or was removed?)")
                got += n
            return True
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise
            if exc.errno in _GONE or device_state(os.path.realpath(self.node)):
                raise SourceGone(f"{self.title}: the source disk {self.node} is gone ({exc.strerror}); "
                                 "nothing was recorded as complete") from None
            with self.stats.lock:
                self.stats.errors += 1
            return False

    # ---------------------------------------------------------------- pass 1

    def copy_pass(self, runs: Runs, view: memoryview, base: int) -> Runs:
        """Read `runs` (inside the window at `base`) into view; returns the ranges not read (failed or
        skipped). An empty list means the window is complete."""
        with self.stats.lock:
            skip = base < self.stats.skip_until
        if skip:
            return list(runs)
        pending: Runs = []
        pos, failed = 0, -1
        for start, n in runs:
            for off in range(0, n, PIECE):
                size = min(PIECE, n - off)
                if failed >= 0 or not self._read(view[pos + off:pos + off + size], start + off, pos + off):
                    failed = start + off if failed < 0 else failed
                    pending.append((start + off, size))
            pos += n
        self._after_window(base, failed)
        return merge_runs(pending, [])

    def _after_window(self, base: int, failed: int) -> None:
        with self.stats.lock:
            if failed < 0:
                self.stats.streak = 0
                return
            skip = min(MAX_SKIP, PIECE << self.stats.streak)
            if self.out_of_time():  # no time left to read around damage: the rest counts as unreadable
                skip = PAST_DEADLINE
            self.stats.streak += 1
            self.stats.skip_until = max(self.stats.skip_until, failed + skip)

    # ---------------------------------------------------------------- passes 2-4

    def _reread(self, runs: Runs, pending: Runs, view: memoryview):
        """Read again the parts of a window that are not pending (they were read before, into a buffer
        that is gone); returns (pending, at) where at() maps a partition offset to its place in view."""
        places, pos = [], 0
        for start, n in runs:
            places.append((start, pos))
            pos += n

        def at(offset: int) -> int:
            start, where = next(p for p in reversed(places) if p[0] <= offset)
            return where + offset - start

        for start, n in _minus(runs, pending):
            for off in range(0, n, PIECE):
                size = min(PIECE, n - off)
                if not self._read_block((start + off, size), view, at):
                    pending = merge_runs(pending, [(start + off, size)])
        return pending, at

    def recover_pieces(self, runs: Runs, pending: Runs, view: memoryview) -> Runs:
        """Pass 2a: the pending ranges in 1 MiB pieces, inwards from both ends until the first error on
        each side (the piece that failed from the front is not read again from the back). Finds the good
        data that pass 1 skipped past a bad spot. Returns what is still pending."""
        pending, at = self._reread(runs, pending, view)
        left: Runs = []
        for start, n in pending:
            pieces = [(start + off, min(PIECE, n - off)) for off in range(0, n, PIECE)]
            lo, hi = 0, len(pieces)
            while lo < hi and not self.out_of_time() and self._read_block(pieces[lo], view, at):
                lo += 1
            while hi > lo + 1 and not self.out_of_time() and self._read_block(pieces[hi - 1], view, at):
                hi -= 1
            if lo < hi:
                left.append((pieces[lo][0], pieces[hi - 1][0] + pieces[hi - 1][1] - pieces[lo][0]))
        return left

    def recover(self, runs: Runs, pending: Runs, view: memoryview) -> Runs:
        """Passes 2b-4 for one window: trim, scrape, retry. Returns the ranges still unreadable (zeroed in view)."""
        pending, at = self._reread(runs, pending, view)
        left: Runs = []
        for start, n in pending:
            left += self._trim(start, n, view, at)
        bad: Runs = []
        for start, n in left:
            bad += self._scrape(start, n, view, at)
        bad = self._retry(bad, view, at)
        for start, n in bad:
            view[at(start):at(start) + n] = bytes(n)
        return merge_runs(bad, [])

    def _blocks(self, start: int, n: int) -> list[tuple[int, int]]:
        """`start..start+n` cut at 4 KiB boundaries of the partition."""
        out, pos, end = [], start, start + n
        while pos < end:
            nxt = min(end, (pos // BLOCK + 1) * BLOCK)
            out.append((pos, nxt - pos))
            pos = nxt
        return out

    def _trim(self, start: int, n: int, view: memoryview, at) -> Runs:
        blocks = self._blocks(start, n)
        lo, hi = 0, len(blocks)
        while lo < hi and not self.out_of_time() and self._read_block(blocks[lo], view, at):
            lo += 1
        while hi > lo + 1 and not self.out_of_time() and self._read_block(blocks[hi - 1], view, at):
            hi -= 1
        if lo >= hi:
            return []
        first, last = blocks[lo], blocks[hi - 1]
        return [(first[0], last[0] + last[1] - first[0])]

    def _read_block(self, block: tuple[int, int], view: memoryview, at) -> bool:
        start, n = block
        return self._read(view[at(start):at(start) + n], start, at(start))

    def _scrape(self, start: int, n: int, view: memoryview, at) -> Runs:
        bad: Runs = []
        for block in self._blocks(start, n):
            if self.out_of_time():  # the rest of the range, untried
                return merge_runs(bad + [(block[0], start + n - block[0])], [])
            if self._read_block(block, view, at):
                continue
            for s in range(block[0], block[0] + block[1], SECTOR):
                size = min(SECTOR, block[0] + block[1] - s)
                if self.out_of_time() or not self._read_block((s, size), view, at):
                    bad.append((s, size))
        return merge_runs(bad, [])

    def _retry(self, bad: Runs, view: memoryview, at) -> Runs:
        for _ in range(self.options.retries):
            if self.out_of_time():
                break
            still: Runs = []
            for start, n in bad:
                for s in range(start, start + n, SECTOR):
                    size = min(SECTOR, start + n - s)
                    if self.out_of_time() or not self._read_block((s, size), view, at):
                        still.append((s, size))
            bad = merge_runs(still, [])
            if not bad:
                break
        return bad


def _minus(runs: Runs, holes: Runs) -> Runs:
    """The parts of `runs` not covered by `holes` (both sorted)."""
    out: Runs = []
    for start, n in runs:
        pos, end = start, start + n
        for h_start, h_n in holes:
            h_end = h_start + h_n
            if h_end <= pos or h_start >= end:
                continue
            if h_start > pos:
                out.append((pos, h_start - pos))
            pos = max(pos, h_end)
        if pos < end:
            out.append((pos, end - pos))
    return out


def stream_rescue(reader: Reader, runs: Runs, pool, writer, cancel: threading.Event) -> Runs:
    """Pass 1 through the pool (windows that read whole are stored at once), then the retry passes over
    the windows that did not, in order. Returns the unreadable ranges (bytes from the partition's start)."""
    ring = BufferRing(pool.depth, CHUNK_SIZE)
    deferred: list[tuple[int, Runs, Runs]] = []
    for window, inside, length in data_windows(runs, CHUNK_SIZE):
        if cancel.is_set():
            raise Cancelled()
        pool.submit((window, length, length), _first_pass, reader, window, inside, ring.next()[:length], writer,
                    deferred)
    pool.drain()
    return _retry_windows(reader, sorted(deferred), writer, cancel)


def _first_pass(reader: Reader, window: int, inside: Runs, view: memoryview, writer, deferred: list):
    pending = reader.copy_pass(inside, view, window * CHUNK_SIZE)
    if pending:
        with reader.stats.lock:
            deferred.append((window, inside, pending))
            writer.to_retry += sum(n for _, n in pending)
        return None  # stored after the retry passes
    return writer.store(view)


def _retry_windows(reader: Reader, deferred: list[tuple[int, Runs, Runs]], writer, cancel: threading.Event) -> Runs:
    if not deferred:
        return []
    to_retry = writer.to_retry = sum(n for *_, pending in deferred for _, n in pending)
    writer.progress(LogLine(f"{reader.title}: {reader.stats.errors} read errors; going back over "
                            f"{to_retry} bytes in {len(deferred)} windows with smaller reads", "warning"))
    buf = memoryview(mmap.mmap(-1, CHUNK_SIZE))
    still = []
    for window, inside, pending in deferred:  # first what pass 1 skipped, in large reads
        if cancel.is_set():
            raise Cancelled()
        view = buf[:sum(n for _, n in inside)]
        left = reader.recover_pieces(inside, pending, view)
        writer.to_retry -= sum(n for _, n in pending) - sum(n for _, n in left)
        if left:
            still.append((window, inside, left))
        else:
            writer.on_result((window, len(view), len(view)), writer.store(view))
    unreadable: Runs = []
    to_retry = writer.to_retry = sum(n for *_, pending in still for _, n in pending)
    last_note = time.monotonic()
    for done, (window, inside, pending) in enumerate(still):  # then sector by sector
        if cancel.is_set():
            raise Cancelled()
        view = buf[:sum(n for _, n in inside)]
        unreadable += reader.recover(inside, pending, view)
        to_retry = writer.to_retry = to_retry - sum(n for _, n in pending)
        writer.on_result((window, len(view), len(view)), writer.store(view))
        if time.monotonic() - last_note > 5:
            last_note = time.monotonic()
            writer.progress(LogLine(f"{reader.title}: {reader.stats.errors} read errors, {to_retry} bytes still to "
                                    f"retry ({len(still) - done - 1} windows)", "warning"))
    return merge_runs(unreadable, [])


def read_error(source, title: str, start: int, n: int, exc: OSError) -> LifeboatError:
    """Without --rescue: the exact first unreadable byte of a failed read, the device's error, and what to do."""
    node = source.node
    if exc.errno in _GONE or device_state(os.path.realpath(node)):
        return LifeboatError(f"{title}: the source disk {node} is gone ({exc.strerror}); the image was not saved")
    bad = _first_bad_sector(source, start, n)
    return LifeboatError(
        f"{title} ({node}): read error at byte {bad} of the partition: {exc.strerror}. The disk may be failing: "
        "capture it with --rescue to read around the damage and record what is lost; the image was not saved")


def _first_bad_sector(source, start: int, n: int) -> int:
    buf = memoryview(mmap.mmap(-1, SECTOR))
    for offset in range(start - start % SECTOR, start + n, SECTOR):
        try:
            os.preadv(source.for_run(offset, SECTOR, 0), [buf], offset)
        except OSError:
            return offset
    return start


def rescue_owners(part, mode: CaptureMode, lost: Runs, progress) -> dict:
    """DataStream fields for a partition's unreadable ranges: the ranges, the files that own them, a note.
    Logs the partition's summary line."""
    from lifeboat.fs.owners import owners_of

    if not lost:
        return {}
    owners = owners_of(part.fstype if mode is CaptureMode.USED_BLOCKS else "", part.node, lost)
    fields = {"unreadable": tuple(ByteRange(s, n) for s, n in lost), "unreadable_files": owners.files,
              "unreadable_note": owners.note}
    progress(LogLine(f"{part.title}: {_describe(lost, owners.files, owners.note)}", "warning"))
    return fields


def _describe(ranges: Runs, files: tuple[str, ...], note: str) -> str:
    where = ", ".join(f"{s}+{n}" for s, n in ranges[:4]) + (f" and {len(ranges) - 4} more" if len(ranges) > 4 else "")
    named = ", ".join(files[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else "")
    return (f"{sum(n for _, n in ranges)} bytes unreadable in {len(ranges)} ranges (bytes {where}); "
            f"files: {named or 'none'}{'; ' + note if note else ''}")


def unreadable_lines(manifest: ImageManifest) -> list[str]:
    """One line per partition or logical volume with bytes that could not be read at capture: how many, where
    (bytes from its start), which files. A LUKS container's opened contents count as the partition's."""
    lines = []
    for title, stream in _streams(manifest):
        if stream.unreadable:
            ranges = [(r.offset, r.length) for r in stream.unreadable]
            lines.append(f"{title}: {_describe(ranges, stream.unreadable_files, stream.unreadable_note)}")
    return lines


def _streams(manifest: ImageManifest) -> list[tuple[str, DataStream]]:
    found = []
    holders = [(p.title, p.content) for p in manifest.partitions]
    holders += [(f"logical volume {vg.name}/{lv.name}", lv.content) for vg in manifest.volume_groups for lv in vg.lvs]
    for title, content in holders:
        inner = getattr(content, "inner", None)
        stream = content_stream(content)
        if stream is None and inner is not None:
            title, stream = f"{title}, inside its LUKS container", content_stream(inner)
        if stream is not None:
            found.append((title, stream))
    return found
