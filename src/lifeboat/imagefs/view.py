"""An image's address spaces, readable at any offset without restoring anything.

Each partition (and each logical volume) with a stored stream is one address space: its size is the
partition's, its bytes are the block map's runs filled from the chunks, and zero everywhere else.
Reading a range fetches only the chunks whose 4 MiB windows it touches; a small LRU cache keeps the
last few windows decompressed, so a loop-mounted filesystem reading its metadata again costs nothing.
Once a reader has gone through SEQUENTIAL bytes of a space in order (a file read through the mount, a
restore's copy; not a filesystem's metadata lookups), the next PREFETCH windows are fetched and
decompressed on other threads meanwhile, so fetching overlaps the kernel's consumption: at most PREFETCH
windows beyond the end of such a run are fetched without being read; random reads fetch nothing ahead. Windows are fetched outside
the cache's lock, so readers of different windows never wait for each other.
Counters (chunks fetched, bytes, cache hits) let a test assert that one file's read fetched only what
it needed.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from lifeboat.fs.usedmap import Runs, decode_runs, runs_in_window
from lifeboat.repo.manifest import (CHUNK_SIZE, ChunkRef, Content, DataStream, ImageManifest, LuksContent,
                                    PartitionImage, content_fstype)
from lifeboat.repo.store import Repository

CACHE_WINDOWS = 16  # 64 MiB of decompressed windows
PREFETCH = 2  # windows fetched ahead of a sequential reader
SEQUENTIAL = 2 * CHUNK_SIZE  # bytes read in order before reading ahead starts


@dataclass(frozen=True)
class AddressSpace:
    """One readable address space of an image: a partition's or a logical volume's."""

    name: str  # file name in the view: "p2", "lv-vg0-root"
    title: str  # for messages: "partition 2 (ext4)"
    size: int
    fstype: str
    uuid: str
    label: str
    stream: DataStream


def _space(name: str, title: str, size: int, content: Content) -> AddressSpace | None:
    if isinstance(content, LuksContent):  # the opened container's inner content, if it was captured
        return _space(f"{name}-inner", f"{title} inner", size, content.inner) if content.inner else None
    stream = getattr(content, "stream", None)
    if stream is None:
        return None
    return AddressSpace(name, title, size, content_fstype(content), getattr(content, "uuid", ""),
                        getattr(content, "label", ""), stream)


def address_spaces_of(part: PartitionImage) -> list[AddressSpace]:
    space = _space(f"p{part.number}", part.title, part.size, part.content)
    return [space] if space else []


def lv_space_name(vg: str, lv: str) -> str:
    """The view's file name of a logical volume's address space: "lv-vg0-root"."""
    return re.sub(r"[^A-Za-z0-9._+-]", "_", f"lv-{vg}-{lv}")


def address_spaces(manifest: ImageManifest) -> list[AddressSpace]:
    """Every address space of the image that holds stored data, partitions first."""
    spaces = [_space(f"p{p.number}", p.title, p.size, p.content) for p in manifest.partitions]
    for vg in manifest.volume_groups:
        for lv in vg.lvs:
            spaces.append(_space(lv_space_name(vg.name, lv.name), f"logical volume {vg.name}/{lv.name}", lv.size, lv.content))
    return [s for s in spaces if s is not None]


@dataclass
class FetchStats:
    chunks_fetched: int = 0
    bytes_fetched: int = 0  # uncompressed
    cache_hits: int = 0
    reads: int = 0

    def to_json(self) -> dict:
        return {"chunks_fetched": self.chunks_fetched, "bytes_fetched": self.bytes_fetched,
                "cache_hits": self.cache_hits, "reads": self.reads}


class WindowCache:
    """The last `capacity` windows, decompressed and laid out at their offsets (shared by every space).
    A window being fetched is a Future in `_loading`: a second reader of it waits for that one fetch."""

    def __init__(self, repo: Repository, capacity: int = CACHE_WINDOWS):
        self.repo, self.capacity = repo, capacity
        self.stats = FetchStats()
        self._windows: OrderedDict[tuple[str, int], bytes | bytearray] = OrderedDict()
        self._loading: dict[tuple[str, int], Future] = {}
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def window(self, space: str, ref: ChunkRef, runs: Runs) -> bytes | bytearray:
        key = (space, ref.window)
        with self._lock:
            data = self._windows.get(key)
            if data is not None:
                self._windows.move_to_end(key)
                self.stats.cache_hits += 1
                return data
            future, mine = self._claim(key)
        if mine:
            self._load(key, ref, runs, future)
        return future.result()

    def prefetch(self, space: str, items: list[tuple[ChunkRef, Runs]]) -> None:
        """Fetch these windows on the pool unless they are cached or on their way already."""
        for ref, runs in items:
            key = (space, ref.window)
            with self._lock:
                if key in self._windows or key in self._loading:
                    continue
                future, _ = self._claim(key)
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(PREFETCH, thread_name_prefix="lifeboat-prefetch")
            self._pool.submit(self._load, key, ref, runs, future)

    def _claim(self, key: tuple[str, int]) -> tuple[Future, bool]:
        """(the Future of this window's fetch, whether the caller must do it). Called under the lock."""
        future = self._loading.get(key)
        if future is not None:
            return future, False
        future = self._loading[key] = Future()
        return future, True

    def _load(self, key: tuple[str, int], ref: ChunkRef, runs: Runs, future: Future) -> None:
        try:
            chunk = self.repo.get_chunk(ref.digest, ref.length)
            data = _lay_out(chunk, runs, ref.offset)
        except BaseException as exc:  # handed to whoever waits for this window (a prefetch has no one)
            with self._lock:
                del self._loading[key]
            future.set_exception(exc)
            return
        with self._lock:
            self.stats.chunks_fetched += 1
            self.stats.bytes_fetched += len(chunk)
            self._windows[key] = data
            while len(self._windows) > self.capacity:
                self._windows.popitem(last=False)
            del self._loading[key]
        future.set_result(data)


def _lay_out(chunk: bytes, runs: Runs, window_start: int) -> bytes | bytearray:
    """A chunk's concatenated runs put back at their places in a zeroed window. A window that is used from its
    start on (most of a big file's) is the chunk itself: no 4 MiB copy."""
    if len(runs) == 1 and runs[0][0] == window_start:
        return chunk  # its bytes past the chunk's end are zeros: SpaceReader.read pads them
    out = bytearray(CHUNK_SIZE)
    view, pos = memoryview(chunk), 0
    for start, n in runs:
        at = start - window_start
        out[at : at + n] = view[pos : pos + n]
        pos += n
    return out


class SpaceReader:
    """Reads any byte range of one address space."""

    def __init__(self, repo: Repository, space: AddressSpace, cache: WindowCache):
        self.space, self.cache = space, cache
        self._next = -1  # where the last read ended: a read starting there continues the run
        self._run_start = 0  # where the current run of reads in order began
        self.refs = {ref.window: ref for ref in space.stream.chunks}
        runs = decode_runs(repo.get_chunk(space.stream.map.digest, space.stream.map.length))
        self.runs: dict[int, Runs] = {}
        index = 0
        for ref in space.stream.chunks:
            self.runs[ref.window], index = runs_in_window(runs, index, ref.offset, ref.offset + CHUNK_SIZE)

    def read(self, offset: int, size: int) -> bytes:
        end = min(offset + size, self.space.size)
        if offset >= end:
            return b""
        self.cache.stats.reads += 1
        if offset != self._next:
            self._run_start = offset
        elif end - self._run_start >= SEQUENTIAL:
            self._read_ahead(end)
        self._next = end
        parts = []
        pos = offset
        while pos < end:
            window = pos // CHUNK_SIZE
            w_start = window * CHUNK_SIZE
            upto = min(end, w_start + CHUNK_SIZE)
            ref = self.refs.get(window)
            if ref is None:
                parts.append(bytes(upto - pos))
            else:
                data = self.cache.window(self.space.name, ref, self.runs[window])
                piece = data[pos - w_start : upto - w_start]
                parts.append(piece + bytes(upto - pos - len(piece)) if len(piece) < upto - pos else piece)
            pos = upto
        return b"".join(parts)

    def _read_ahead(self, end: int) -> None:
        first = (end - 1) // CHUNK_SIZE + 1
        ahead = [(self.refs[w], self.runs[w]) for w in range(first, first + PREFETCH) if w in self.refs]
        if ahead:
            self.cache.prefetch(self.space.name, ahead)
