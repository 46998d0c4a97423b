"""The partclone reader on small images made by Debian's real partclone from an ext4 file built with
`mkfs.ext4 -d` (no root, no loop device), plus a hand-made version-0001 image (no partclone that
writes 0001 is packaged any more: the image is written here from partclone's documented layout)."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib

import pytest

from lifeboat.errors import ImageCorrupt
from lifeboat.foreign.partclone import PartcloneImage, windows
from lifeboat.foreign.pieces import Compression, DecompressedStream, compression_of, find_pieces

WINDOW = 4 * 1024 * 1024
COMPRESSORS = {
    Compression.GZIP: ["gzip", "-c"],
    Compression.ZSTD: ["zstd", "-q", "-c"],
    Compression.XZ: ["xz", "-c", "-T1", "-0"],
    Compression.BZIP2: ["bzip2", "-c"],
    Compression.LZ4: ["lz4", "-q", "-c"],
    Compression.LZO: ["lzop", "-c"],
    Compression.NONE: ["cat"],
}


@pytest.fixture(scope="module")
def ext4(tmp_path_factory) -> str:
    tmp = tmp_path_factory.mktemp("pcl")
    src = tmp / "src"
    src.mkdir()
    (src / "random.bin").write_bytes(os.urandom(1_000_000))
    (src / "count.txt").write_text("".join(f"{i}\n" for i in range(50_000)))
    fs = tmp / "fs.img"
    with open(fs, "wb") as f:
        f.truncate(16 * 1024 * 1024)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(src), str(fs)], check=True)
    return str(fs)


@pytest.fixture(scope="module")
def default_image(ext4, tmp_path_factory) -> str:
    return clone(ext4, str(tmp_path_factory.mktemp("pcl-default") / "img"))


def copy_of(image: str, tmp_path) -> str:
    return str(shutil.copy(image, tmp_path / "img"))


def clone(fs: str, out: str, *options: str) -> str:
    subprocess.run(["partclone.ext4", "-c", *options, "-s", fs, "-o", out, "-L", out + ".log"],
                   check=True, capture_output=True)
    return out


def expected_windows(fs: str, runs) -> dict[int, bytes]:
    with open(fs, "rb") as f:
        data = f.read()
    out: dict[int, bytes] = {}
    for start, n in runs:
        pos = start
        while pos < start + n:
            w = pos // WINDOW
            stop = min(start + n, (w + 1) * WINDOW)
            out[w] = out.get(w, b"") + data[pos:stop]
            pos = stop
    return out


def read_all(path: str, compression: Compression = Compression.NONE, base: str | None = None):
    pieces = find_pieces(base or path, compression)
    with DecompressedStream(pieces, "sda1") as stream:
        image = PartcloneImage(stream, "sda1")
        return image, dict(windows(image, WINDOW))


def used_ranges_match(fs: str, image, got) -> None:
    assert got == expected_windows(fs, image.runs)
    assert sum(n for _, n in image.runs) == image.header.used_bytes


@pytest.mark.parametrize("options", [(), ("-a0",), ("-k", "7"), ("-K",)], ids=["default", "nocrc", "k7", "noreseed"])
def test_real_partclone_images_read_back_exactly(ext4, tmp_path, options):
    image, got = read_all(clone(ext4, str(tmp_path / "img"), *options))
    assert image.header.image_version == 2 and image.header.fs == "EXTFS"
    assert image.header.block_size * image.header.total_blocks == os.path.getsize(ext4)
    used_ranges_match(ext4, image, got)


@pytest.mark.parametrize("compression", list(COMPRESSORS), ids=lambda c: c.value)
def test_split_compressed_pieces_are_joined(ext4, default_image, tmp_path, compression):
    raw = default_image
    base = str(tmp_path / f"sda1.ext4-ptcl-img.{compression.value}")
    packed = subprocess.run([*COMPRESSORS[compression], raw], check=True, capture_output=True).stdout
    subprocess.run(["split", "-b", "256K", "-", base + "."], input=packed, check=True)
    assert len(find_pieces(base, compression).pieces) == -(-len(packed) // (256 << 10))
    image, got = read_all(base, compression)
    used_ranges_match(ext4, image, got)


def test_flipped_byte_is_a_checksum_mismatch_at_a_block(ext4, default_image, tmp_path):
    path = copy_of(default_image, tmp_path)
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0x40]))
    with pytest.raises(ImageCorrupt, match=r"sda1: checksum mismatch in used blocks \d+–\d+ \(partition byte \d+"):
        read_all(path)


def test_flipped_byte_in_compressed_piece_names_the_piece(ext4, default_image, tmp_path):
    raw = default_image
    base = str(tmp_path / "sda1.ext4-ptcl-img.gz")
    packed = bytearray(subprocess.run(["gzip", "-c", raw], check=True, capture_output=True).stdout)
    packed[len(packed) * 2 // 3] ^= 0xFF
    subprocess.run(["split", "-b", "256K", "-", base + "."], input=bytes(packed), check=True)
    with pytest.raises(ImageCorrupt, match=r"sda1: (gz data is damaged at .*ptcl-img\.gz\.a[a-z] near byte|checksum)"):
        read_all(base, Compression.GZIP)


def test_truncated_image_names_the_offset(ext4, default_image, tmp_path):
    path = copy_of(default_image, tmp_path)
    os.truncate(path, os.path.getsize(path) - 5000)
    with pytest.raises(ImageCorrupt, match=r"sda1: partclone block data is cut short at decompressed offset \d+"):
        read_all(path)


def test_missing_and_truncated_split_pieces(ext4, default_image, tmp_path):
    raw = default_image
    base = str(tmp_path / "sda1.ext4-ptcl-img.zst")
    packed = subprocess.run(["zstd", "-q", "-c", "-1", raw], check=True, capture_output=True).stdout
    subprocess.run(["split", "-b", "256K", "-", base + "."], input=packed, check=True)
    os.truncate(base + ".ab", 1000)
    with pytest.raises(ImageCorrupt, match=r"ptcl-img\.zst\.ab: split piece is truncated \(1000 bytes"):
        find_pieces(base, Compression.ZSTD)
    os.unlink(base + ".ab")
    with pytest.raises(ImageCorrupt, match=r"ptcl-img\.zst\.ab: split piece is missing"):
        find_pieces(base, Compression.ZSTD)


def test_truncated_last_piece_is_reported(ext4, default_image, tmp_path):
    raw = default_image
    base = str(tmp_path / "sda1.ext4-ptcl-img.xz")
    packed = subprocess.run(["xz", "-c", "-0", raw], check=True, capture_output=True).stdout
    (tmp_path / "sda1.ext4-ptcl-img.xz.aa").write_bytes(packed[: len(packed) - 100])
    with pytest.raises(ImageCorrupt, match=r"sda1: xz data ends early \(decompressed offset \d+\): "
                                           r".*xz\.aa is truncated or damaged"):
        read_all(base, Compression.XZ)


def test_unknown_compressor_and_version(tmp_path):
    with pytest.raises(ImageCorrupt, match=r"sda1.ext4-ptcl-img.zip: compression 'zip' is not one Lifeboat reads"):
        compression_of("zip", "sda1.ext4-ptcl-img.zip")
    head = bytearray(b"partclone-image\0" + b"0.9.9".ljust(14, b"\0") + b"0003" + b"\0" * 76)
    path = tmp_path / "v3"
    path.write_bytes(bytes(head))
    with pytest.raises(ImageCorrupt, match=r"sda1: partclone image version '0003' is not one Lifeboat reads"):
        read_all(str(path))
    path.write_bytes(b"PK\3\4" + b"\0" * 200)
    with pytest.raises(ImageCorrupt, match="sda1: not a partclone image"):
        read_all(str(path))


def _v1_crc(block: bytes, state: int) -> int:
    return zlib.crc32(block[:1] * len(block), state)


def test_version_0001_image(tmp_path):
    """A 0001 image as partclone before 0.3.0 wrote it: byte bitmap, BiTmAgIc, a CRC after every block
    from the buggy routine, never reseeded."""
    bs, total = 4096, 2048
    used = [0, 1, 2, 100, 101, 1500, 2047]
    blocks = {i: os.urandom(bs) for i in used}
    head = (b"partclone-image" + b"EXTFS".ljust(15, b"\0") + b"0001" + b"\0\0"
            + struct.pack("<iQQQ", bs, bs * total, total, len(used)) + b"\0" * 4096)
    bitmap = bytes(1 if i in blocks else 0 for i in range(total)) + b"BiTmAgIc"
    body, state = b"", 0
    for i in used:
        state = _v1_crc(blocks[i], state)
        body += blocks[i] + struct.pack("<I", state ^ 0xFFFFFFFF)
    path = tmp_path / "v1"
    path.write_bytes(head + bitmap + body)
    image, got = read_all(str(path))
    assert image.header.image_version == 1
    assert image.runs == [(0, 3 * bs), (100 * bs, 2 * bs), (1500 * bs, bs), (2047 * bs, bs)]
    assert got == {0: b"".join(blocks[i] for i in used[:5]), 1: blocks[1500] + blocks[2047]}


def test_padding_bits_after_the_last_block_are_not_blocks():
    from lifeboat.foreign.partclone import BitmapMode, bitmap_runs, count_used

    bitmap = bytes([0xFF, 0b1110_0001])  # 10 blocks; bits 13-15 are padding, set as a real image had them
    assert count_used(bitmap, BitmapMode.BIT, 10) == 9
    assert bitmap_runs(bitmap, BitmapMode.BIT, 10, 4096) == [(0, 9 * 4096)]


def test_strips_longer_than_a_window_and_damage_in_the_second_strip(ext4, tmp_path):
    """Checksum strips of 1500 blocks, windows of 1 MiB: a strip spans windows, every byte still comes
    back in order, and a flipped byte in the second strip names exactly that strip's blocks."""
    from lifeboat.foreign.partclone import V2_HEADER_SIZE, window_sizes

    path = clone(ext4, str(tmp_path / "img"), "-k", "1500")
    small = 1 << 20

    def read(p: str):
        with DecompressedStream(find_pieces(p, Compression.NONE), "sda1") as stream:
            image = PartcloneImage(stream, "sda1")
            return image, list(windows(image, small))

    image, got = read(path)
    h = image.header
    strip = h.blocks_per_checksum * h.block_size
    assert h.blocks_per_checksum == 1500 and strip > small and h.used_blocks > 1500
    with open(ext4, "rb") as f:
        data = f.read()
    assert b"".join(d for _, d in got) == b"".join(data[s: s + n] for s, n in image.runs)
    assert [i for i, _ in got] == [w for w, _ in window_sizes(image.runs, small)]
    (tmp_path / "d").mkdir()
    damaged = copy_of(path, tmp_path / "d")
    second = V2_HEADER_SIZE + (h.total_blocks + 7) // 8 + 4 + strip + 4
    with open(damaged, "r+b") as f:
        f.seek(second + 1234)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0x01]))
    last = min(2999, h.used_blocks - 1)
    handed_out = []
    with pytest.raises(ImageCorrupt, match=f"sda1: checksum mismatch in used blocks 1500–{last} "):
        with DecompressedStream(find_pieces(damaged, Compression.NONE), "sda1") as stream:
            handed_out.extend(len(d) for _, d in windows(PartcloneImage(stream, "sda1"), small))
    assert sum(handed_out) <= strip  # nothing of the damaged strip was handed out before its check


def test_joined_pieces_read_back_exactly_with_direct_reads_and_without(tmp_path, monkeypatch):
    """Pieces longer and shorter than a direct read, none aligned, read in odd sizes: the same bytes as
    the files joined; once with O_DIRECT refused at open (a FUSE filesystem) and once refused at the read."""
    import errno
    import random

    from lifeboat.foreign import pieces as pieces_mod

    monkeypatch.setattr(pieces_mod, "BLOCK_SIZE", 64 * 1024)
    rng = random.Random(7)
    sizes = [200_001, 200_001, 3_333]
    data = bytes(rng.getrandbits(8) for _ in range(sum(sizes)))
    pos = 0
    for suffix, size in zip(("aa", "ab", "ac"), sizes):
        (tmp_path / f"img.{suffix}").write_bytes(data[pos: pos + size])
        pos += size
    real_open, real_readv = os.open, os.readv

    def read_all() -> bytes:
        joined = pieces_mod.JoinedPieces(find_pieces(str(tmp_path / "img"), Compression.NONE))
        out, step = bytearray(), 1
        while chunk := (joined.read(step) if step % 2 else _readinto(joined, step)):
            out += chunk
            step = step * 7 % 100_003 + 1
        joined.close()
        return bytes(out)

    assert read_all() == data

    def open_no_direct(path, flags, *args):
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *args)

    monkeypatch.setattr(pieces_mod.os, "open", open_no_direct)
    assert read_all() == data
    monkeypatch.setattr(pieces_mod.os, "open", real_open)
    direct_fds = set()

    def open_tracking(path, flags, *args):
        fd = real_open(path, flags, *args)
        if flags & os.O_DIRECT:
            direct_fds.add(fd)
        return fd

    def readv_refusing_direct(fd, buffers):
        if fd in direct_fds:
            direct_fds.discard(fd)
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_readv(fd, buffers)

    monkeypatch.setattr(pieces_mod.os, "open", open_tracking)
    monkeypatch.setattr(pieces_mod.os, "readv", readv_refusing_direct)
    assert read_all() == data


def _readinto(joined, n: int) -> bytes:
    buf = bytearray(n)
    got = joined.readinto(memoryview(buf))
    return bytes(buf[:got])


def test_window_buffers_are_handed_out_again_only_when_given_back():
    from lifeboat.foreign.czrepo import WindowBuffers
    from lifeboat.repo.manifest import CHUNK_SIZE

    buffers = WindowBuffers()
    first = buffers.take(CHUNK_SIZE)
    assert buffers.take(CHUNK_SIZE) is not first  # still in use: a new one
    buffers.give_back(first)
    assert buffers.take(CHUNK_SIZE) is first
    small = buffers.take(4096)
    buffers.give_back(small)  # not a full window: never reused
    assert len(buffers.take(CHUNK_SIZE)) == CHUNK_SIZE and buffers.take(4096) is not small
    buffers.give_back(bytes(CHUNK_SIZE))  # not one of its buffers
    assert type(buffers.take(CHUNK_SIZE)) is bytearray


def test_window_buffers_serve_partial_windows_of_at_least_half_a_chunk():
    from lifeboat.foreign.czrepo import WindowBuffers
    from lifeboat.repo.manifest import CHUNK_SIZE

    buffers = WindowBuffers()
    full = buffers.take(CHUNK_SIZE)
    buffers.give_back(full)
    partial = buffers.take(CHUNK_SIZE - 3 * 4096)  # a window with three free blocks
    assert partial is full and len(partial) == CHUNK_SIZE - 3 * 4096
    buffers.give_back(partial)  # still a full window's allocation
    again = buffers.take(CHUNK_SIZE)
    assert again is full and len(again) == CHUNK_SIZE
    buffers.give_back(again)
    assert buffers.take(CHUNK_SIZE // 2 - 4096) is not full  # less than half: a buffer of its own
    tiny = buffers.take(CHUNK_SIZE // 2)
    assert tiny is full and len(tiny) == CHUNK_SIZE // 2
    buffers.give_back(tiny)
    assert buffers.take(CHUNK_SIZE) is full
