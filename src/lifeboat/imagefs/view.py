"""An image's address spaces, readable at any offset without restoring anything.

Each partition (and each logical volume) with a stored stream is one address space: its size is the
partition's, its bytes are the block map's runs filled from the chunks, and zero everywhere else.
Reading a range fetches only the chunks whose 4 MiB windows it touches; a small LRU cache keeps the
last few windows decompressed, so a loop-mounted filesystem reading its metadata again costs nothing.
Counters (chunks fetched, bytes, cache hits) let a test assert that one file's read fetched only what
it needed.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass

from lifeboat.fs.usedmap import Runs, decode_runs, runs_in_window
from lifeboat.repo.manifest import (CHUNK_SIZE, ChunkRef, Content, DataStream, ImageManifest, LuksContent,
                                    PartitionImage, content_fstype)
from lifeboat.repo.store import Repository

CACHE_WINDOWS = 16  # 64 MiB of decompressed windows


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


def address_spaces(manifest: ImageManifest) -> list[AddressSpace]:
    """Every address space of the image that holds stored data, partitions first."""
    spaces = [_space(f"p{p.number}", p.title, p.size, p.content) for p in manifest.partitions]
    for vg in manifest.volume_groups:
        for lv in vg.lvs:
            name = re.sub(r"[^A-Za-z0-9._+-]", "_", f"lv-{vg.name}-{lv.name}")
            spaces.append(_space(name, f"logical volume {vg.name}/{lv.name}", lv.size, lv.content))
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
    """The last `capacity` windows, decompressed and laid out at their offsets (shared by every space)."""

    def __init__(self, repo: Repository, capacity: int = CACHE_WINDOWS):
        self.repo, self.capacity = repo, capacity
        self.stats = FetchStats()
        self._windows: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def window(self, space: str, ref: ChunkRef, runs: Runs) -> bytes:
        key = (space, ref.window)
        with self._lock:
            data = self._windows.get(key)
            if data is not None:
                self._windows.move_to_end(key)
                self.stats.cache_hits += 1
                return data
            chunk = self.repo.get_chunk(ref.digest, ref.length)
            self.stats.chunks_fetched += 1
            self.stats.bytes_fetched += len(chunk)
            data = _lay_out(chunk, runs, ref.offset)
            self._windows[key] = data
            if len(self._windows) > self.capacity:
                self._windows.popitem(last=False)
            return data


def _lay_out(chunk: bytes, runs: Runs, window_start: int) -> bytes:
    """A chunk's concatenated runs put back at their places in a zeroed window."""
    out = bytearray(CHUNK_SIZE)
    pos = 0
    for start, n in runs:
        at = start - window_start
        out[at : at + n] = chunk[pos : pos + n]
        pos += n
    return bytes(out)


class SpaceReader:
    """Reads any byte range of one address space."""

    def __init__(self, repo: Repository, space: AddressSpace, cache: WindowCache):
        self.space, self.cache = space, cache
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
                parts.append(data[pos - w_start : upto - w_start])
            pos = upto
        return b"".join(parts)
