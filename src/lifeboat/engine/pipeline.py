"""A bounded, ordered pipeline over a thread pool.

The producer (the calling thread) schedules; workers read, hash, compress, decompress and write. zstandard,
hashlib and os.pread/pwrite release the GIL, so the workers keep every core busy. At most `depth`
items are in flight, which bounds memory to depth × chunk size.
"""

from __future__ import annotations

import mmap
import os
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from lifeboat.errors import Cancelled


def default_workers() -> int:
    """Twice the cores plus four: a worker waiting for the disk (a read, or a direct write through a
    loop device's kernel thread) holds no core, so more of them keep more I/O in flight while the
    others keep every core busy. On 2 shared cores (load 11-16), a second capture of the benchmark
    disk (read + hash) took 33 s and 43 s with 8 workers against 39 s and 47 s with 4, alternating;
    a first capture 108 s and 112 s against 122 s and 170 s, for the same CPU (6.0-6.1 s/GB against
    5.9-6.7). Memory: about 2 × workers chunk buffers of 4 MiB."""
    return max(6, min(16, 2 * (os.cpu_count() or 2) + 4))


class OrderedPool:
    """submit() work; `on_result(tag, value)` is called in the submitting thread, in submission order."""

    def __init__(self, on_result: Callable[[Any, Any], None], workers: int | None = None, depth: int | None = None,
                 cancel: threading.Event | None = None):
        self.workers = workers or default_workers()
        self.depth = depth or self.workers * 2 + 2
        self.on_result = on_result
        self.cancel = cancel
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="lifeboat")
        self._pending: deque[tuple[Any, Future]] = deque()

    def submit(self, tag: Any, fn: Callable, *args) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled()
        while len(self._pending) >= self.depth:
            self._finish_one()
        self._pending.append((tag, self._pool.submit(fn, *args)))

    def _finish_one(self) -> None:
        tag, future = self._pending.popleft()
        self.on_result(tag, future.result())

    def drain(self) -> None:
        while self._pending:
            self._finish_one()

    def __enter__(self) -> OrderedPool:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self.drain()
            finally:
                self._pool.shutdown(wait=True)
            return
        for _, future in self._pending:
            future.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)


class BufferRing:
    """Reusable buffers for an OrderedPool of the given depth: one per item in flight.

    Buffer i is handed out just before item i is submitted. By then submit(i-1) has waited until at
    most `depth` items were pending, so item i-1-depth and every earlier one are finished. A ring of
    depth+2 buffers therefore never hands out a buffer whose item is still being worked on.
    """

    def __init__(self, depth: int, size: int):
        # anonymous mmaps are page-aligned, as O_DIRECT reads need
        self._buffers = [memoryview(mmap.mmap(-1, size)) for _ in range(depth + 2)]
        self._next = 0

    def next(self) -> memoryview:
        buf = self._buffers[self._next]
        self._next = (self._next + 1) % len(self._buffers)
        return buf


def direct_io_ok(offset: int, length: int, buffer_pos: int) -> bool:
    """Whether a transfer may use O_DIRECT: device offset, length and buffer position on 512-byte bounds."""
    return offset % 512 == 0 and length % 512 == 0 and buffer_pos % 512 == 0
