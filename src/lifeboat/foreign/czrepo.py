"""A directory of Clonezilla images opened as a read-only repository.

Each image is read into the same typed ImageManifest a native image has (Origin "clonezilla"); its
data streams name their chunks by locators (a hash of image, partition and window) instead of by
content. get_chunk(locator) decodes the partition's partclone image in order, every checksum
verified, and hands out the window's used bytes: plan, restore and verify read it like any other
repository. Nothing is ever written here; `lifeboat import` writes a native image elsewhere.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from lifeboat import __version__
from lifeboat.errors import ImageCorrupt, ImageNotFound, RepositoryError
from lifeboat.foreign.clonezilla import (ClonezillaImage, CzPartition, CzVolume, CzVolumeGroup, PartSource, image_dirs,
                                         read_image)
from lifeboat.foreign.partclone import PartcloneImage, windows, window_sizes
from lifeboat.foreign.pieces import DecompressedStream
from lifeboat.fs.usedmap import Runs, encode_runs, merge_runs
from lifeboat.repo.manifest import (
    CHUNK_SIZE,
    BlobRef,
    BlockMapRef,
    BootRegion,
    ChunkRef,
    Content,
    DataStream,
    EmptyContent,
    FilesystemContent,
    ImageManifest,
    LogicalVolumeImage,
    LvmPvContent,
    LvSegmentImage,
    Origin,
    PartitionImage,
    PhysicalVolumeImage,
    RawContent,
    SourceDisk,
    SwapContent,
    VolumeGroupImage,
)
from lifeboat.repo.store import Repository

AHEAD = 6  # windows decoded ahead of the highest one asked for
SPARE_WINDOWS = 32  # full-size window buffers kept for reuse


class WindowBuffers:
    """Window buffers of a full window's capacity (CHUNK_SIZE) given back after use and handed out again:
    no new 4 MiB buffer, zero-filled page by page by the kernel, per window. Decoding the benchmark's
    Clonezilla image alone faulted 180 thousand pages without reuse, 19 thousand with it (0.3-0.5 s of CPU).
    A window of at least half that size (the benchmark's 238 partial windows: 0.92 GB of its 5.3) gets a
    spare buffer resized in place: CPython's bytearray keeps its allocation when it shrinks by less than
    half and grows back within it. Smaller windows, and windows nobody gives back, are plain bytearrays
    left to the garbage collector."""

    def __init__(self) -> None:
        self._spare: list[bytearray] = []  # list.pop/append: atomic under the GIL

    def take(self, size: int) -> bytearray:
        if CHUNK_SIZE // 2 <= size <= CHUNK_SIZE:
            with contextlib.suppress(IndexError):
                buffer = self._spare.pop()
                if len(buffer) > size:
                    del buffer[size:]
                elif len(buffer) < size:
                    buffer += _ZEROS[: size - len(buffer)]
                return buffer
        return bytearray(size)

    def give_back(self, data) -> None:
        """`data` (a window from take()) is no longer used by anyone."""
        if (type(data) is bytearray and data.__sizeof__() - _EMPTY_SIZE == _FULL_ALLOCATION
                and len(self._spare) < SPARE_WINDOWS):
            self._spare.append(data)


_EMPTY_SIZE = bytearray().__sizeof__()  # a bytearray's __sizeof__ is this plus its allocation
_FULL_ALLOCATION = bytearray(CHUNK_SIZE).__sizeof__() - _EMPTY_SIZE  # CHUNK_SIZE and the trailing NUL
_ZEROS = memoryview(bytes(CHUNK_SIZE))  # to grow a buffer back (its content is overwritten anyway)


def _locator(image: str, what: str) -> str:
    return hashlib.sha256(f"clonezilla\0{image}\0{what}".encode()).hexdigest()


class PartitionDecoder:
    """One partition's image, decoded in order and handed out by window: a partclone image (its used
    blocks), or a partclone.dd image (every byte of the partition, no header)."""

    def __init__(self, part: CzPartition | CzVolume, image: str, size: int, what: str = "",
                 buffers: WindowBuffers | None = None):
        self.part, self.size = part, size
        self.buffers = buffers or WindowBuffers()
        self.where = f"Clonezilla image {image}: {what or f'partition {part.number}'} ({part.device})"
        self.cond = threading.Condition()
        self.generation = 0  # which decoding thread is current; 0: none started yet
        self.ready: dict[int, bytes] = {}
        self.position = self.wanted = -1  # last window decoded, highest window asked for
        self.error: ImageCorrupt | None = None  # the damage met; later windows cannot be read
        self.done = False
        if part.source is PartSource.DD:
            self.runs: Runs = [(0, size)]
            self.used_bytes = size
        else:
            with DecompressedStream(part.pieces, self.where) as stream:
                header = PartcloneImage(stream, self.where)
                self.runs, self.used_bytes = header.runs, header.header.used_bytes
            end = self.runs[-1][0] + self.runs[-1][1] if self.runs else 0
            if end > size:
                raise ImageCorrupt(f"{self.where}: partclone's used blocks end at byte {end}, past the partition "
                                   f"({size} bytes in the table)")
        self.extra: tuple[int, bytes] | None = None  # (offset, bytes) added after partclone's last block
        if part.source is PartSource.PARTCLONE and part.fstype == "ntfs":
            self._add_ntfs_backup_boot_sector()
        self.sizes = window_sizes(self.runs, CHUNK_SIZE)

    def _add_ntfs_backup_boot_sector(self) -> None:
        """NTFS keeps a copy of its boot sector in the sector after the volume, outside every cluster, so
        partclone leaves it out (Clonezilla's restore has `ntfsfix -d` write it again). The copy is the
        boot sector itself: it is added to the stream, and the restored partition is whole."""
        with DecompressedStream(self.part.pieces, self.where) as stream:
            first = next(windows(PartcloneImage(stream, self.where), CHUNK_SIZE), (1, b""))
        if first[0] != 0 or not self.runs or self.runs[0][0] != 0 or first[1][3:11] != b"NTFS    ":
            return
        boot = first[1][:512]
        sector, total = int.from_bytes(boot[11:13], "little"), int.from_bytes(boot[40:48], "little")
        offset = total * sector
        if sector < 512 or offset + sector > self.size or offset < self.runs[-1][0] + self.runs[-1][1]:
            return
        self.extra = (offset, boot[:512] + bytes(sector - 512))
        self.runs = merge_runs(self.runs, [(offset, sector)])
        self.used_bytes += sector

    def _windows(self, stream: DecompressedStream) -> Iterator[tuple[int, bytes]]:
        if self.part.source is PartSource.DD:
            return _raw_windows(stream, self.size, self.where)
        gen = windows(PartcloneImage(stream, self.where), CHUNK_SIZE, self.buffers.take)
        return _with_extra(gen, self.extra[0] // CHUNK_SIZE, self.extra[1]) if self.extra else gen

    def window(self, index: int) -> bytes:
        """Window `index`'s bytes. A thread decodes ahead of the readers (up to AHEAD windows past the
        highest one asked for); asking again for a window already handed out starts over."""
        with self.cond:
            if index in self.ready:
                return self._take(index)
            if self.error is not None and index > self.position + 1:
                raise self._after_damage()
            if self.generation == 0 or index <= self.position or self.error is not None:
                self._restart()
            while index not in self.ready:
                if index > self.wanted:  # (again after a restart, which resets it)
                    self.wanted = index
                    self.cond.notify_all()
                if self.error is not None:
                    raise self.error if index == self.position + 1 else self._after_damage()
                if self.done:
                    raise ImageCorrupt(f"{self.where}: window {index} is not in the image")
                self.cond.wait()
            return self._take(index)

    def _after_damage(self) -> ImageCorrupt:
        return ImageCorrupt(f"{self.where}: not checked, it lies after the damage reported before")

    def _take(self, index: int) -> bytes:
        data = self.ready.pop(index)
        self.cond.notify_all()
        return data

    def _restart(self) -> None:
        self.generation += 1
        self.ready.clear()
        self.position = self.wanted = -1
        self.error, self.done = None, False
        threading.Thread(target=self._produce, args=(self.generation,), daemon=True,
                         name=f"clonezilla-{self.part.device}").start()

    def _produce(self, generation: int) -> None:
        stream = None
        try:
            stream = DecompressedStream(self.part.pieces, self.where)
            for index, data in self._windows(stream):
                with self.cond:
                    while self.generation == generation and index > self.wanted + AHEAD:
                        self.cond.wait()
                    if self.generation != generation:
                        return
                    self.ready[index], self.position = data, index
                    self.cond.notify_all()
            with self.cond:
                if self.generation == generation:
                    self.done = True
                    self.cond.notify_all()
        except ImageCorrupt as exc:
            with self.cond:
                if self.generation == generation:
                    self.error = exc
                    self.cond.notify_all()
        finally:
            if stream is not None:
                stream.close()

    def close(self) -> None:
        """Stop decoding (a later window() starts over)."""
        with self.cond:
            self.generation += 1
            self.ready.clear()
            self.position = -1
            self.cond.notify_all()


class ClonezillaRepository(Repository):
    """`root` is a directory of Clonezilla image directories, or one image directory itself."""

    def __init__(self, root: Path):  # noqa: super().__init__ wants a backend: there is none, nothing is stored
        self.root = Path(root).absolute()
        self.backend, self.key, self.meta = None, None, {}
        self._images: dict[str, tuple[ImageManifest, ClonezillaImage]] = {}
        self._chunks: dict[str, Callable[[], bytes]] = {}
        self._lock = threading.Lock()
        self.buffers = WindowBuffers()

    # ------------------------------------------------------------ images

    def image_names(self) -> list[str]:
        return [p.name for p in image_dirs(self.root)]

    def has_image(self, name: str) -> bool:
        return name in self.image_names()

    def image_path(self, name: str) -> Path:
        for p in image_dirs(self.root):
            if p.name == name:
                return p
        raise ImageNotFound(f"no Clonezilla image named {name!r} in {self.root}")

    def clonezilla_image(self, name: str) -> ClonezillaImage:
        return self._load(name)[1]

    def manifest(self, name: str) -> ImageManifest:
        return self._load(name)[0]

    def read_manifest(self, name: str) -> dict:
        return self._load(name)[0].to_json()

    def _load(self, name: str) -> tuple[ImageManifest, ClonezillaImage]:
        with self._lock:
            if name not in self._images:
                image = read_image(self.image_path(name))
                self._images[name] = (self._manifest(image), image)
            return self._images[name]

    def _manifest(self, image: ClonezillaImage) -> ImageManifest:
        layout = image.layout
        parts = []
        for p in image.partitions:
            entry = layout.partition(p.number)
            if entry.is_extended:
                continue
            parts.append(PartitionImage(p.number, entry.size * layout.sector_size, self._content(image, p)))
        regions = []
        for r in image.boot_regions:
            digest = _locator(image.path, f"boot:{r.name}")
            self._chunks[digest] = _file_reader(r.path, r.length)
            regions.append(BootRegion(r.name, r.offset, r.length, digest))
        return ImageManifest(
            name=image.name, created=image.created, finished=image.created, lifeboat_version=__version__,
            source=SourceDisk(path=f"/dev/{image.disk}", size=layout.size_bytes, sector_size=layout.sector_size),
            layout=layout, boot_regions=tuple(regions), partitions=tuple(parts),
            origin=Origin("clonezilla", image.version, image.path),
            volume_groups=tuple(self._volume_group(image, g) for g in image.volume_groups),
        )

    def _volume_group(self, image: ClonezillaImage, cz: CzVolumeGroup) -> VolumeGroupImage:
        """The group as a native capture records it: lvm_<VG>.conf is its metadata blob, as is."""
        group = cz.group
        digest = _locator(image.path, f"lvm:{group.name}")
        length = os.path.getsize(cz.metadata)
        self._chunks[digest] = _file_reader(cz.metadata, length)
        lvs = []
        for lv, volume in zip(group.visible_lvs, cz.volumes):
            content = self._content(image, volume, (f"lv:{group.name}/{lv.name}", lv.size,
                                                    f"logical volume {group.name}/{lv.name}"))
            lvs.append(LogicalVolumeImage(
                lv.name, lv.uuid, lv.size, content, lv.extents, lv.tags,
                tuple(LvSegmentImage(s.start_extent, s.extents, s.type, s.stripes, s.devices) for s in lv.segments)))
        pvs = tuple(PhysicalVolumeImage(number, pv.uuid, pv.pe_start, pv.extents)
                    for number, pv in zip(cz.partitions, group.pvs))
        return VolumeGroupImage(group.name, group.uuid, group.extent_size, BlobRef(digest, length), tuple(lvs),
                                group.extents, group.free, group.tags, pvs)

    def _content(self, image: ClonezillaImage, p: CzPartition | CzVolume,
                 volume: tuple[str, int, str] | None = None) -> Content:
        """`volume`: (locator key, size, title) of a logical volume; None for a partition."""
        if p.source is PartSource.SWAP:
            return SwapContent(p.uuid, p.label)
        if p.source is PartSource.NOT_SAVED:
            return EmptyContent()
        if p.source is PartSource.LVM_PV:
            return LvmPvContent(next(g.group.name for g in image.volume_groups if p.number in g.partitions), p.uuid)
        if volume is None:
            entry = image.layout.partition(p.number)
            volume = (str(p.number), entry.size * image.layout.sector_size, "")
        stream = self._stream(image, p, *volume)
        if p.source is PartSource.DD:
            return RawContent(stream, p.fstype, p.uuid, p.label, reason="saved by Clonezilla with partclone.dd")
        return FilesystemContent(p.fstype, p.uuid, p.label, stream)

    def _stream(self, image: ClonezillaImage, p: CzPartition | CzVolume, key: str, size: int, what: str) -> DataStream:
        decoder = PartitionDecoder(p, image.name, size, what, self.buffers)
        blob = encode_runs(decoder.runs)
        map_digest = _locator(image.path, f"{key}:map")
        self._chunks[map_digest] = lambda: blob
        chunks = []
        for window, size in decoder.sizes:
            digest = _locator(image.path, f"{key}:{window}")
            self._chunks[digest] = _window_reader(decoder, window)
            chunks.append(ChunkRef(window, digest, size))
        return DataStream(BlockMapRef(map_digest, len(blob), len(decoder.runs)), tuple(chunks), decoder.used_bytes)

    # ------------------------------------------------------------ chunks

    def _reader(self, digest: str) -> Callable[[], bytes] | None:
        """The reader of a locator; a fresh instance (restore opens the repository again) reads the
        images first."""
        if digest not in self._chunks:
            for name in self.image_names():
                with contextlib.suppress(ImageCorrupt):
                    self._load(name)
        return self._chunks.get(digest)

    def has_chunk(self, digest: str) -> bool:
        return self._reader(digest) is not None

    def get_chunk(self, digest: str, length: int) -> bytes:
        reader = self._reader(digest)
        if reader is None:
            raise ImageCorrupt(f"chunk {digest[:16]} is not part of any Clonezilla image read here")
        data = reader()
        if len(data) != length:
            raise ImageCorrupt(f"chunk {digest[:16]} holds {len(data)} bytes, expected {length}")
        return data

    def get_chunk_into(self, digest: str, buffer: memoryview) -> None:
        """What restore calls: the chunk copied into the caller's aligned buffer."""
        data = self.get_chunk(digest, len(buffer))
        buffer[:] = data
        self.release(data)

    def release(self, data) -> None:
        """The caller of get_chunk() is done with `data` (and keeps no reference to it): its buffer
        may hold a later window."""
        self.buffers.give_back(data)

    def chunk_problem(self, digest: str) -> str | None:
        return None if self._reader(digest) is not None else "missing"

    def stored_bytes(self, digests) -> int:
        return sum(image.stored_bytes for _, image in self._images.values())

    # ------------------------------------------------------------ read-only

    def _read_only(self, *_args, **_kwargs):
        raise RepositoryError(
            f"{self.root} holds Clonezilla images and is read-only here; "
            "use `lifeboat import` to turn an image into a Lifeboat image"
        )

    put_chunk = write_manifest = delete_image = _read_only

    def clean_tmp(self) -> None:
        pass

    @contextlib.contextmanager
    def shared_use(self, exclusive: bool = False) -> Iterator[None]:
        if exclusive:
            self._read_only()
        yield

    @contextlib.contextmanager
    def writer_lock(self, name: str) -> Iterator[None]:
        self._read_only()
        yield

    def all_chunks(self) -> Iterator[Path]:
        return iter(())


def _with_extra(gen: Iterator[tuple[int, bytes]], window: int, data: bytes) -> Iterator[tuple[int, bytes]]:
    """`gen`, with `data` appended to window `window` (after every other byte the window holds)."""
    for index, chunk in gen:
        if index == window:
            chunk, window = chunk + data, -1
        yield index, chunk
    if window >= 0:
        yield window, data


def _raw_windows(stream: DecompressedStream, size: int, where: str) -> Iterator[tuple[int, bytes]]:
    for index in range(-(-size // CHUNK_SIZE)):
        want = min(CHUNK_SIZE, size - index * CHUNK_SIZE)
        data = stream.read(want)
        if len(data) != want:
            raise ImageCorrupt(f"{where}: dd image ends at byte {stream.position}, the partition has {size}: "
                               "the image is truncated")
        yield index, data
    if stream.read(1):
        raise ImageCorrupt(f"{where}: dd image is longer than the partition ({size} bytes)")


def _file_reader(path: str, length: int) -> Callable[[], bytes]:
    def read() -> bytes:
        try:
            with open(path, "rb") as f:
                return f.read(length)
        except OSError as exc:
            raise ImageCorrupt(f"{path}: cannot be read ({exc.strerror})") from None

    return read


def _window_reader(decoder: PartitionDecoder, window: int) -> Callable[[], bytes]:
    return lambda: decoder.window(window)


def is_clonezilla_root(path: str | os.PathLike) -> bool:
    return bool(image_dirs(path))
