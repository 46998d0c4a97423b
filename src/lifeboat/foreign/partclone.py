"""partclone's image format, read from a decompressed byte stream.

Layout (partclone's IMAGE_FORMATS.md and src/partclone.c, read, not copied):

  header   version 0001: 4160 bytes (magic, fs, "0001", block size, sizes, 4096 unused bytes)
           version 0002: 110 bytes (magic, partclone version, "0002", endianness 0xC0DE, fs, sizes,
                         block size, feature size, binary version, cpu bits, checksum mode and size,
                         blocks per checksum, reseed flag, bitmap mode, CRC32 of the 106 bytes before)
  bitmap   0001: one byte per block, then "BiTmAgIc"; 0002: one bit per block (LSB first), then its
           CRC32; bitmap mode NONE (partclone.dd): no bitmap, every block is used
  blocks   the used blocks in order; after every `blocks per checksum` of them (and after the last,
           partial group) a checksum of those blocks; reseeded after each checksum unless the header
           says not to. 0001: one block per checksum, never reseeded, computed by partclone's old
           CRC routine that read only the block's first byte.

partclone's CRC32 is the IEEE polynomial with seed 0xFFFFFFFF and no final inversion, which is
zlib's crc32 of the same bytes with its bits inverted; it is computed by ISA-L (lifeboat.foreign.crc32).
"""

from __future__ import annotations

import re
import struct
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from enum import IntEnum
from typing import Protocol

from lifeboat.errors import ImageCorrupt
from lifeboat.foreign.crc32 import crc32

MAGIC = b"partclone-image"
V1_HEADER_SIZE = 4160
V2_HEADER_SIZE = 110
V1_BITMAP_MAGIC = b"BiTmAgIc"
ENDIAN_LITTLE = 0xC0DE
_SET_BYTES = re.compile(rb"\xff+|[\x01-\xfe]")
Runs = list[tuple[int, int]]


class ChecksumMode(IntEnum):
    NONE = 0x00
    CRC32 = 0x20
    XXH64 = 0x30
    XXH128 = 0x31
    CRC32_0001 = 0xFF


class BitmapMode(IntEnum):
    NONE = 0x00
    BIT = 0x01
    BYTE = 0x08


class ByteSource(Protocol):
    """A decompressed stream: read(n) returns n bytes, fewer only at its end."""

    position: int

    def read(self, n: int) -> bytes: ...

    def readinto(self, buffer: memoryview) -> int: ...


def pc_crc(data: bytes | memoryview, state: int = 0) -> int:
    """partclone's CRC32 of `data`, continuing from `state` (a zlib crc32 value, 0 to start)."""
    return crc32(data, state) ^ 0xFFFFFFFF


@dataclass(frozen=True)
class PartcloneHeader:
    image_version: int  # 1 or 2
    partclone_version: str  # "" for 0001
    fs: str  # partclone's filesystem name: EXTFS, XFS, NTFS, FAT, raw, …
    device_size: int  # bytes
    total_blocks: int
    used_blocks: int  # as the bitmap counts them
    block_size: int
    checksum_mode: ChecksumMode
    checksum_size: int
    blocks_per_checksum: int
    reseed: bool
    bitmap_mode: BitmapMode

    @property
    def used_bytes(self) -> int:
        return self.used_blocks * self.block_size


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("ascii", errors="replace").strip()


def parse_header(head: bytes, where: str) -> PartcloneHeader:
    """The header from the first 110 (0002) or 4160 (0001) bytes; `where` prefixes errors."""
    if len(head) < V2_HEADER_SIZE or not head.startswith(MAGIC):
        raise ImageCorrupt(f"{where}: not a partclone image (no 'partclone-image' signature at byte 0)")
    version = head[30:34]
    if version == b"0001":
        return _parse_v1(head, where)
    if version != b"0002":
        raise ImageCorrupt(
            f"{where}: partclone image version {version.decode('ascii', 'replace')!r} is not one Lifeboat "
            "reads (it reads 0001 and 0002)"
        )
    (stored_crc,) = struct.unpack_from("<I", head, 106)
    if pc_crc(head[:106]) != stored_crc:
        raise ImageCorrupt(f"{where}: partclone header checksum does not match (header damaged)")
    (endian,) = struct.unpack_from("<H", head, 34)
    if endian != ENDIAN_LITTLE:
        raise ImageCorrupt(f"{where}: partclone image written on a big-endian machine; Lifeboat cannot read it")
    device_size, total, _sb_used, used, block_size = struct.unpack_from("<QQQQI", head, 52)
    cs_mode, cs_size, per_cs, reseed, bm_mode = struct.unpack_from("<HHIBB", head, 96)
    try:
        checksum_mode, bitmap_mode = ChecksumMode(cs_mode), BitmapMode(bm_mode)
    except ValueError:
        raise ImageCorrupt(f"{where}: unknown checksum mode {cs_mode} or bitmap mode {bm_mode}") from None
    header = PartcloneHeader(2, _text(head[16:30]), _text(head[36:52]), device_size, total, used, block_size,
                             checksum_mode, cs_size, per_cs, bool(reseed), bitmap_mode)
    _check_header(header, where)
    return header


def _parse_v1(head: bytes, where: str) -> PartcloneHeader:
    if len(head) < V1_HEADER_SIZE:
        raise ImageCorrupt(f"{where}: partclone 0001 header is cut short ({len(head)} of {V1_HEADER_SIZE} bytes)")
    block_size, device_size, total, used = struct.unpack_from("<iQQQ", head, 36)
    header = PartcloneHeader(1, "", _text(head[15:30]), device_size, total, used, block_size,
                             ChecksumMode.CRC32_0001, 4, 1, False, BitmapMode.BYTE)
    _check_header(header, where)
    return header


def _check_header(h: PartcloneHeader, where: str) -> None:
    if h.block_size <= 0 or h.block_size > 1 << 24 or h.block_size & (h.block_size - 1):
        raise ImageCorrupt(f"{where}: partclone header has an impossible block size {h.block_size}")
    if h.used_blocks > h.total_blocks:
        raise ImageCorrupt(f"{where}: partclone header counts {h.used_blocks} used of {h.total_blocks} blocks")
    if h.checksum_mode in (ChecksumMode.XXH64, ChecksumMode.XXH128):
        raise ImageCorrupt(f"{where}: partclone checksum {h.checksum_mode.name} is not one Lifeboat verifies")
    expected = {ChecksumMode.NONE: 0, ChecksumMode.CRC32: 4, ChecksumMode.CRC32_0001: 4}[h.checksum_mode]
    if h.checksum_size != expected or (h.checksum_mode is not ChecksumMode.NONE and h.blocks_per_checksum < 1):
        raise ImageCorrupt(f"{where}: partclone header's checksum size/grouping does not fit its checksum mode")


def bitmap_runs(bitmap: bytes, mode: BitmapMode, total: int, block_size: int) -> Runs:
    """Used ranges in bytes from the partition's start, merged."""
    blocks: list[tuple[int, int]] = []
    if mode is BitmapMode.NONE:
        blocks = [(0, total)] if total else []
    elif mode is BitmapMode.BYTE:
        pos = 0
        for run in bitmap[:total].split(b"\0"):
            if run:
                blocks.append((pos, len(run)))
            pos += len(run) + 1
    else:
        blocks = _bit_runs(bitmap, total)
    return [(start * block_size, n * block_size) for start, n in blocks]


def _bit_runs(bitmap: bytes, total: int) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for m in _SET_BYTES.finditer(bitmap):
        start, end = m.span()
        if bitmap[start] == 0xFF:
            spans = [(start * 8, (end - start) * 8)]
        else:
            spans = [(start * 8 + bit, 1) for bit in range(8) if bitmap[start] >> bit & 1]
        for s, n in spans:
            if runs and runs[-1][0] + runs[-1][1] == s:
                runs[-1] = (runs[-1][0], runs[-1][1] + n)
            else:
                runs.append((s, n))
    # bits past the last block are padding
    while runs and runs[-1][0] + runs[-1][1] > total:
        s, n = runs.pop()
        if s < total:
            runs.append((s, total - s))
    return runs


def count_used(bitmap: bytes, mode: BitmapMode, total: int) -> int:
    if mode is BitmapMode.NONE:
        return total
    if mode is BitmapMode.BYTE:
        return total - bitmap[:total].count(0)
    return (int.from_bytes(bitmap, "little") & ((1 << total) - 1)).bit_count()  # padding bits past the end: not blocks


def _crc_0001(data: memoryview, state: int, block_size: int) -> int:
    """partclone 0001's CRC routine: it read the block's first byte `block_size` times."""
    return zlib.crc32(bytes(data[:1]) * block_size, state)


class PartcloneImage:
    """One partclone image on a ByteSource: header and used-block map at once, then the data."""

    def __init__(self, source: ByteSource, where: str):
        self.source, self.where = source, where
        head = source.read(V2_HEADER_SIZE)
        if head[30:34] == b"0001":
            head += source.read(V1_HEADER_SIZE - V2_HEADER_SIZE)
        self.header = parse_header(head, where)
        self.bitmap = self._read_bitmap()
        self.runs = bitmap_runs(self.bitmap, self.header.bitmap_mode, self.header.total_blocks,
                                self.header.block_size)
        self._blocks_read = 0

    def _read_bitmap(self) -> bytes:
        h = self.header
        if h.bitmap_mode is BitmapMode.NONE:
            bitmap = b""
        elif h.bitmap_mode is BitmapMode.BYTE:
            bitmap = self._exact(h.total_blocks + len(V1_BITMAP_MAGIC), "bitmap")
            if bitmap[h.total_blocks:] != V1_BITMAP_MAGIC:
                raise ImageCorrupt(f"{self.where}: partclone bitmap has no 'BiTmAgIc' end mark (bitmap damaged)")
            bitmap = bitmap[: h.total_blocks]
        else:
            raw = self._exact((h.total_blocks + 7) // 8 + 4, "bitmap")
            bitmap, (stored,) = raw[:-4], struct.unpack("<I", raw[-4:])
            if pc_crc(bitmap) != stored:
                raise ImageCorrupt(f"{self.where}: partclone bitmap checksum does not match (bitmap damaged)")
        # The bitmap decides which blocks follow, as in partclone's restore (update_used_blocks_count, which
        # counts the first total_blocks bits only: a real image had a padding bit set after them).
        self.header = replace(h, used_blocks=count_used(bitmap, h.bitmap_mode, h.total_blocks))
        return bitmap

    def _exact(self, n: int, what: str) -> bytes:
        data = self.source.read(n)
        if len(data) != n:
            raise ImageCorrupt(
                f"{self.where}: partclone {what} is cut short at decompressed offset {self.source.position} "
                f"({len(data)} of {n} bytes): the image is truncated"
            )
        return data

    def exact_into(self, view: memoryview, what: str) -> None:
        """Decompress straight into `view`, which must be filled: no intermediate buffer."""
        got = self.source.readinto(view)
        if got != len(view):
            raise ImageCorrupt(
                f"{self.where}: partclone {what} is cut short at decompressed offset {self.source.position} "
                f"({got} of {len(view)} bytes): the image is truncated"
            )

    def blocks(self, max_blocks: int = 1024) -> Iterator[memoryview]:
        """The used blocks' data in order, up to `max_blocks` blocks per piece (views into the read
        buffer, no copy), every checksum verified before its blocks are handed out."""
        h = self.header
        if h.checksum_mode is ChecksumMode.NONE:
            left = h.used_blocks
            while left:
                n = min(left, max_blocks)
                yield memoryview(self._exact(n * h.block_size, "block data"))
                self._blocks_read += n
                left -= n
            return
        if h.checksum_mode is ChecksumMode.CRC32 and h.reseed:
            yield from self._blocks_overlapped(max_blocks)
            return
        state = 0
        for raw, counts in self._groups(max_blocks):
            pos = 0
            for count in counts:
                size = count * h.block_size
                state = self._verify(raw, pos, count, state)
                yield raw[pos: pos + size]
                pos += size + h.checksum_size

    def _groups(self, max_blocks: int) -> Iterator[tuple[memoryview, list[int]]]:
        """The block data as read: groups of strips, each strip's checksum after it; (buffer, blocks per strip)."""
        h = self.header
        per = h.blocks_per_checksum
        group = max(1, max_blocks // per)
        left = h.used_blocks
        while left:
            strips = min(group, -(-left // per))
            counts = [min(per, left - i * per) for i in range(strips)]
            raw = memoryview(self._exact(sum(counts) * h.block_size + strips * h.checksum_size, "block data"))
            left -= sum(counts)
            yield raw, counts

    def _blocks_overlapped(self, max_blocks: int) -> Iterator[memoryview]:
        """Reseeded CRC32 strips are independent: a group's checksums are computed on another thread
        while the next group is decompressed (ISA-L through ctypes and zstd release the GIL: two cores)."""
        pending = None
        with ThreadPoolExecutor(1, thread_name_prefix="lifeboat-crc") as pool:
            for raw, counts in self._groups(max_blocks):
                crcs = pool.submit(self._strip_crcs, raw, counts)
                if pending:
                    yield from self._checked(*pending)
                pending = (raw, counts, crcs)
            if pending:
                yield from self._checked(*pending)

    def _strip_crcs(self, raw: memoryview, counts: list[int]) -> list[int]:
        out, pos, h = [], 0, self.header
        for count in counts:
            size = count * h.block_size
            out.append(pc_crc(raw[pos: pos + size]))
            pos += size + h.checksum_size
        return out

    def _checked(self, raw: memoryview, counts: list[int], crcs: Future) -> Iterator[memoryview]:
        pos, h = 0, self.header
        for count, crc in zip(counts, crcs.result()):
            size = count * h.block_size
            if crc != struct.unpack_from("<I", raw, pos + size)[0]:
                self._mismatch(count)
            self._blocks_read += count
            yield raw[pos: pos + size]
            pos += size + h.checksum_size

    def _verify(self, raw: memoryview, pos: int, count: int, state: int) -> int:
        """Check the strip of `count` blocks at `pos` against the checksum after it; the next state."""
        h = self.header
        size = count * h.block_size
        strip = raw[pos: pos + size]
        if h.checksum_mode is ChecksumMode.CRC32_0001:
            state = _crc_0001(strip, state, h.block_size)
        else:
            state = crc32(strip, state)
        (stored,) = struct.unpack_from("<I", raw, pos + size)
        if state ^ 0xFFFFFFFF != stored:
            self._mismatch(count)
        self._blocks_read += count
        return 0 if h.reseed else state

    def _mismatch(self, count: int) -> None:
        raise self.mismatch(self._blocks_read, count)

    def mismatch(self, first: int, count: int) -> ImageCorrupt:
        """The error for a checksum that does not match the `count` used blocks from the `first`-th."""
        offset = self._partition_offset(first)
        return ImageCorrupt(
            f"{self.where}: checksum mismatch in used blocks {first}–{first + count - 1} (partition byte "
            f"{offset}, block {offset // self.header.block_size}); the image data is damaged"
        )

    def _partition_offset(self, used_index: int) -> int:
        """Byte offset in the partition of the `used_index`-th used block."""
        bs = self.header.block_size
        for start, n in self.runs:
            if used_index < n // bs:
                return start + used_index * bs
            used_index -= n // bs
        return self.header.total_blocks * bs

    def finish(self) -> None:
        """After the last block: the stream must end here."""
        extra = self.source.read(1)
        if extra:
            raise ImageCorrupt(f"{self.where}: data continues after the last partclone block (image damaged)")


def windows(image: PartcloneImage, window: int,
            alloc: Callable[[int], bytearray] = bytearray) -> Iterator[tuple[int, bytearray]]:
    """(window index, used bytes of that window concatenated) for every window of `window` bytes of
    the partition that holds used blocks, in order: the shape of a native image's chunks. Every
    checksum is verified before a byte it covers is handed out. `alloc(size)` gives each window's
    buffer (a bytearray of that size, its content overwritten)."""
    bs = image.header.block_size
    if window % bs:
        raise ValueError(f"window {window} is not a multiple of the block size {bs}")
    h = image.header
    if h.checksum_mode is ChecksumMode.NONE or (h.checksum_mode is ChecksumMode.CRC32 and h.reseed):
        return _direct_windows(image, window_sizes(image.runs, window), alloc)
    return _copied_windows(image, window, alloc)


def _copied_windows(image: PartcloneImage, window: int, alloc: Callable[[int], bytearray]) -> Iterator[tuple[int, bytearray]]:
    """windows() for chained or 0001 checksums: every byte is copied once, from the decompressed
    buffer into the window's."""
    bs = image.header.block_size
    stream = image.blocks(max(1, window // bs))
    piece = memoryview(b"")
    for index, size in window_sizes(image.runs, window):
        out, filled = alloc(size), 0
        while filled < size:
            if not piece:
                piece = next(stream, None)
                if piece is None:
                    raise ImageCorrupt(f"{image.where}: block data ends before the bitmap's last used block")
            take = min(len(piece), size - filled)
            out[filled: filled + take] = piece[:take]
            piece, filled = piece[take:], filled + take
        yield index, out
    if piece or next(stream, None) is not None:
        raise ImageCorrupt(f"{image.where}: more block data than the bitmap lists")
    image.finish()


def _direct_windows(image: PartcloneImage, sizes: list[tuple[int, int]],
                    alloc: Callable[[int], bytearray]) -> Iterator[tuple[int, bytearray]]:
    """windows() for reseeded CRC32 strips (what partclone 0.3 writes) or none: the stream is
    decompressed straight into each window's buffer, the 4-byte checksums read on their own, so no byte
    is copied. Each strip's CRC is computed on a helper thread (ctypes releases the GIL) while the next
    window is decompressed; a window is handed out once every strip touching it has been checked."""
    decoder = _StripDecoder(image)
    held: deque[tuple[int, bytearray, int]] = deque()  # filled windows, and how many strips must be checked first
    with ThreadPoolExecutor(1, thread_name_prefix="lifeboat-crc") as pool:
        decoder.pool = pool
        for index, size in sizes:
            out = alloc(size)
            decoder.fill(memoryview(out))
            held.append((index, out, decoder.strips_touched()))
            # the windows before this one, once their strips are all read: their checks had a window's time
            while len(held) > 1 and held[0][2] <= decoder.submitted:
                index0, out0, need = held.popleft()
                decoder.checked_through(need)
                yield index0, out0
        decoder.finish()
        for index, out, need in held:
            decoder.checked_through(need)
            yield index, out
    image.finish()


class _StripDecoder:
    """The block data as strips of `blocks per checksum` blocks, each followed by its CRC32."""

    def __init__(self, image: PartcloneImage):
        h = image.header
        self.image, self.pool = image, None
        self.checksums = h.checksum_mode is ChecksumMode.CRC32
        self.strip = h.blocks_per_checksum * h.block_size if self.checksums else h.used_bytes
        self.left = h.used_bytes  # data bytes not read yet
        self.strip_left = min(self.strip, self.left)
        self.parts: list[memoryview] = []  # the current strip's pieces so far
        self.submitted = 0  # strips whose check was submitted
        self.futures: deque[Future] = deque()
        self.done = 0  # strips checked

    def fill(self, view: memoryview) -> None:
        pos = 0
        while pos < len(view):
            if not self.left:
                raise ImageCorrupt(f"{self.image.where}: block data ends before the bitmap's last used block")
            take = min(self.strip_left, len(view) - pos)
            piece = view[pos: pos + take]
            self.image.exact_into(piece, "block data")
            if self.checksums:  # (unchecked data is one endless strip: keeping its pieces would keep every window)
                self.parts.append(piece)
            pos, self.strip_left, self.left = pos + take, self.strip_left - take, self.left - take
            if not self.strip_left:
                self._end_strip()

    def _end_strip(self) -> None:
        if self.checksums:
            stored = struct.unpack("<I", self.image._exact(4, "block checksum"))[0]
            self.futures.append(self.pool.submit(self._check, self.submitted, self.parts, stored))
        self.submitted += 1
        self.parts = []
        self.strip_left = min(self.strip, self.left)

    def _check(self, index: int, parts: list[memoryview], stored: int) -> None:
        crc = 0
        for part in parts:
            crc = crc32(part, crc)
        if crc ^ 0xFFFFFFFF != stored:
            h = self.image.header
            first = index * h.blocks_per_checksum
            count = sum(len(p) for p in parts) // h.block_size
            raise self.image.mismatch(first, count)

    def strips_touched(self) -> int:
        """How many strips must be checked before the bytes filled so far may be handed out."""
        if not self.checksums:
            return 0
        return self.submitted + (1 if self.parts else 0)

    def checked_through(self, need: int) -> None:
        """Wait until the first `need` strips (all submitted) are checked, raising the damage met."""
        while self.done < need:
            self.futures.popleft().result()
            self.done += 1

    def finish(self) -> None:
        if self.left:
            raise ImageCorrupt(f"{self.image.where}: block data ends before the bitmap's last used block")


def window_sizes(runs: Runs, window: int) -> list[tuple[int, int]]:
    sizes: dict[int, int] = {}
    for start, n in runs:
        pos, end = start, start + n
        while pos < end:
            w = pos // window
            stop = min(end, (w + 1) * window)
            sizes[w] = sizes.get(w, 0) + stop - pos
            pos = stop
    return sorted(sizes.items())
