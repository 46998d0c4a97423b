"""The rescue reader's passes, read by read: how often a bad spot is touched, how far pass 1 skips, and
what the deadline cuts short.

The disk here is a bytes object whose reads fail (EIO) in chosen ranges, put in place of os.preadv:
the outcomes against real kernel I/O errors (a FUSE-backed loop device) are proven in
tests/integration/test_rescue.py, but there every failed read is instant and nobody counts them;
this test counts every read the passes make, which a real device cannot tell us.
"""

from __future__ import annotations

import errno
import os
import time

import pytest

from lifeboat.engine import rescue
from lifeboat.engine.rescue import SECTOR, Reader, RescueOptions

MiB = 1024 * 1024
WINDOW = 4 * MiB


class FailingDisk:
    def __init__(self, size: int, bad: list[tuple[int, int]]):
        self.data = bytes(range(256)) * (size // 256)
        self.bad = bad
        self.reads: list[tuple[int, int, bool]] = []  # (offset, length, ok)

    def preadv(self, fd, buffers, offset):
        (view,) = buffers
        n = len(view)
        ok = not any(s < offset + n and offset < s + length for s, length in self.bad)
        self.reads.append((offset, n, ok))
        if not ok:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        view[:] = self.data[offset:offset + n]
        return n

    def failed(self) -> list[tuple[int, int]]:
        return [(o, n) for o, n, ok in self.reads if not ok]


@pytest.fixture
def disk(monkeypatch):
    def make(size: int, bad: list[tuple[int, int]]) -> FailingDisk:
        fake = FailingDisk(size, bad)
        monkeypatch.setattr(rescue.os, "preadv", fake.preadv)
        monkeypatch.setattr(rescue, "device_state", lambda node: "")  # the disk is there, its sectors are bad
        return fake

    return make


def reader(retries: int = 1, deadline: float | None = None) -> Reader:
    return Reader(lambda offset, length, pos: 0, "/dev/fake", "partition 1 (raw)", RescueOptions(retries=retries),
                  deadline)


def rescue_window(r: Reader, base: int) -> tuple[bytes, list[tuple[int, int]]]:
    """All passes over one 4 MiB window, as stream_rescue runs them: (the window's bytes, unreadable ranges)."""
    runs = [(base, WINDOW)]
    view = memoryview(bytearray(WINDOW))
    pending = r.copy_pass(runs, view, base)
    if not pending:
        return bytes(view), []
    left = r.recover_pieces(runs, pending, view)
    bad = r.recover(runs, left, view) if left else []
    return bytes(view), bad


def test_one_bad_sector_is_read_once_per_pass_and_retried_a_bounded_number_of_times(disk):
    bad = (WINDOW + 5 * 4096 + 3 * SECTOR, SECTOR)  # one sector inside the second window
    fake = disk(2 * WINDOW, [bad])
    r = reader(retries=3)
    data, lost = rescue_window(r, WINDOW)
    assert lost == [bad]  # exactly the sector
    expected = bytearray(fake.data[WINDOW:2 * WINDOW])
    expected[bad[0] - WINDOW:bad[0] - WINDOW + SECTOR] = bytes(SECTOR)
    assert data == bytes(expected)  # every other byte read, the bad one zero
    failed = fake.failed()
    # pass 1: its 1 MiB piece; pieces: that piece again; trim: its 4 KiB block; scrape: the block, then
    # the sector; retry: the sector 3 more times. Nothing else ever fails.
    assert [n for _, n in failed] == [MiB, MiB, 4096, 4096, SECTOR, SECTOR, SECTOR, SECTOR]
    assert sum(1 for o, n in failed if (o, n) == bad) == 1 + 3
    assert r.stats.errors == len(failed)


def test_pass_one_skips_ahead_of_a_dead_region_in_growing_steps(disk):
    size = 64 * WINDOW  # 256 MiB, every byte unreadable
    fake = disk(size, [(0, size)])
    r = reader()
    pending = [r.copy_pass([(w * WINDOW, WINDOW)], memoryview(bytearray(WINDOW)), w * WINDOW) for w in range(64)]
    assert sum(n for p in pending for _, n in p) == size  # all of it left for the later passes
    tried = [o // WINDOW for o, _ in fake.failed()]
    # one failed read per window tried, and the windows tried get further apart (1, 2, 4 ... MiB skipped)
    assert len(tried) <= 12, tried
    gaps = [b - a for a, b in zip(tried, tried[1:])]
    assert gaps == sorted(gaps) and gaps[-1] >= 8, tried


def test_past_the_deadline_the_first_error_ends_the_partition(disk):
    size = 32 * WINDOW
    bad = (10 * WINDOW + 4096, SECTOR)  # one bad sector; everything after it reads fine
    fake = disk(size, [bad])
    r = reader(retries=5, deadline=time.monotonic() - 1)  # the time is already up
    lost = []
    for w in range(32):
        _, bad_here = rescue_window(r, w * WINDOW)
        lost += bad_here
    failed = fake.failed()
    assert len(failed) == 1, failed  # one failed read: no trimming, scraping or retrying past the deadline
    assert all(ok for o, _, ok in fake.reads if o < 10 * WINDOW)  # what came before it was read
    assert not any(o >= 11 * WINDOW for o, _, _ in fake.reads)  # nothing after its window was tried
    # the failing window and the rest of the partition are recorded unreadable, in whole ranges
    assert lost[0][0] == 10 * WINDOW and sum(n for _, n in lost) == 22 * WINDOW
    assert len(lost) <= 22


def test_good_windows_skipped_by_pass_one_are_read_by_the_later_passes(disk):
    """As stream_rescue runs them: pass 1 over every window, then the later passes over the deferred ones."""
    size = 10 * WINDOW
    bad = [(w * WINDOW + 4096, SECTOR) for w in (2, 3, 4, 5)]  # four failing windows in a row: the skip grows
    fake = disk(size, bad)
    r = reader(deadline=time.monotonic() + 600)
    views = {w: memoryview(bytearray(WINDOW)) for w in range(10)}
    deferred = {}
    for w in range(10):
        pending = r.copy_pass([(w * WINDOW, WINDOW)], views[w], w * WINDOW)
        if pending:
            deferred[w] = pending
    assert deferred[6] == [(6 * WINDOW, WINDOW)]  # good, but skipped: 8 MiB past window 5's error
    assert not any(o >= 6 * WINDOW and o < 7 * WINDOW for o, _, _ in fake.reads)  # not even tried in pass 1
    lost = []
    for w, pending in sorted(deferred.items()):
        runs = [(w * WINDOW, WINDOW)]
        left = r.recover_pieces(runs, pending, views[w])
        lost += r.recover(runs, left, views[w]) if left else []
    assert lost == bad
    assert bytes(views[6]) == fake.data[6 * WINDOW:7 * WINDOW]
