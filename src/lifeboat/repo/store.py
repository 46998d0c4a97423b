"""An image repository: content-addressed, zstd-compressed chunks shared by every image, and one
manifest per image.

    REPO/lifeboat-repo.json          format marker
    REPO/chunks/ab/<sha256>.zst       one chunk; the name is the hash of its *uncompressed* content
    REPO/images/<name>/manifest.json  written last and atomically: no manifest, no image
    REPO/tmp/                         partial writes; anything here is garbage after a crash

A chunk is written to tmp/ and renamed into place, so a chunk file that exists is whole. The repo
knows nothing about disks.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import json
import os
import re
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import zstandard

from lifeboat.errors import ImageCorrupt, ImageNotFound, InvalidName, RepositoryError
from lifeboat.timing import StageTimes

REPO_FORMAT = "lifeboat-repo"
REPO_VERSION = 1
HASH_NAME = "sha256"
_libc = ctypes.CDLL(None, use_errno=True)  # syncfs(2): Python has no wrapper before 3.12
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


def check_image_name(name: str) -> str:
    if "/" in name or "\\" in name or name in (".", ".."):
        raise InvalidName(f"image name {name!r} must not contain path separators")
    if not _NAME_RE.match(name):
        raise InvalidName(
            f"image name {name!r} is not allowed: use letters, digits, '.', '_', '+' or '-' (at most 128, not starting with a dot)"
        )
    return name


def chunk_hash(data) -> str:
    return hashlib.sha256(data).hexdigest()


class _ThreadCodecs(threading.local):
    """One zstd compressor/decompressor per thread: sharing one object across threads crashes."""

    def __init__(self) -> None:
        self.compressors: dict[int, zstandard.ZstdCompressor] = {}
        self.decompressor = zstandard.ZstdDecompressor()

    def compressor(self, level: int) -> zstandard.ZstdCompressor:
        if level not in self.compressors:
            self.compressors[level] = zstandard.ZstdCompressor(compression_params=chunk_parameters(level))
        return self.compressors[level]


def chunk_parameters(level: int) -> zstandard.ZstdCompressionParameters:
    """zstd parameters for one chunk of at most 4 MiB: the window covers the whole chunk.

    At the fast levels (<= 3) the match-finder tables have 64 Ki entries each, between the 32 Ki
    that keep them in the CPU cache and level 3's own (128 Ki hash, 64 Ki chain). Measured on the
    benchmark disk's used blocks (/usr/lib and /usr/share, every 10th chunk, level 3, thread CPU):

        hash/chain log   output/input   compression speed
        15 / 15          0.3073         0.35 GB/s   image 1.007x the reference's (`zstd -3` over the stream)
        16 / 16          0.3033         0.31 GB/s   image about 0.994x
        17 / 16          0.3008         0.29 GB/s   (level 3's defaults) image 0.986x

    The image must not be larger than the reference's; 16/16 is the cheapest that is clearly smaller.
    """
    if level <= 3:
        return zstandard.ZstdCompressionParameters.from_level(
            level, window_log=22, hash_log=16, chain_log=16, write_content_size=True)
    return zstandard.ZstdCompressionParameters.from_level(level, window_log=22, write_content_size=True)


_codecs = _ThreadCodecs()


class Repository:
    def __init__(self, root: Path):
        self.root = root
        self.chunks_dir = root / "chunks"
        self.images_dir = root / "images"
        self.tmp_dir = root / "tmp"
        self.stage_times = StageTimes()  # hash, compress, write, decompress: a pipeline replaces it per partition

    # ------------------------------------------------------------ opening

    @classmethod
    def open(cls, path: str | os.PathLike, create: bool = False) -> Repository:
        root = Path(path).absolute()
        marker = root / "lifeboat-repo.json"
        if not marker.exists():
            if not create:
                raise RepositoryError(f"{root} is not a Lifeboat repository (no lifeboat-repo.json)")
            # a fresh filesystem's lost+found, and the unattended job file on the stick's data partition
            if root.exists() and any(p.name not in ("lost+found", "lifeboat-job.conf") for p in root.iterdir()):
                raise RepositoryError(f"{root} is not empty and not a Lifeboat repository; refusing to create one there")
            root.mkdir(parents=True, exist_ok=True)
            repo = cls(root)
            for d in (repo.chunks_dir, repo.images_dir, repo.tmp_dir):
                d.mkdir(exist_ok=True)
            _atomic_write(marker, json.dumps({"format": REPO_FORMAT, "version": REPO_VERSION, "hash": HASH_NAME}).encode(), repo.tmp_dir)
            return repo
        try:
            meta = json.loads(marker.read_text())
        except (OSError, ValueError) as exc:
            raise RepositoryError(f"{marker}: unreadable ({exc})") from None
        if meta.get("format") != REPO_FORMAT or meta.get("version") != REPO_VERSION:
            raise RepositoryError(f"{root}: repository format {meta.get('format')} v{meta.get('version')} is not supported")
        repo = cls(root)
        for d in (repo.chunks_dir, repo.images_dir, repo.tmp_dir):
            d.mkdir(exist_ok=True)
        return repo

    # ------------------------------------------------------------ chunks

    def chunk_path(self, digest: str) -> Path:
        return self.chunks_dir / digest[:2] / f"{digest}.zst"

    def has_chunk(self, digest: str) -> bool:
        return self.chunk_path(digest).exists()

    def put_chunk(self, data, level: int, digest: str | None = None) -> tuple[str, int]:
        """Store `data` (bytes-like) unless a chunk with its hash exists. Returns (hash, bytes written).

        Hash first, compress only a chunk the repository lacks: a second capture of an unchanged
        disk reads and hashes, nothing more."""
        times = self.stage_times
        if digest is None:
            with times.measure("hash", len(data)):
                digest = chunk_hash(data)
        final = self.chunk_path(digest)
        if final.exists():
            return digest, 0
        with times.measure("compress", len(data)):
            compressed = _codecs.compressor(level).compress(data)
        with times.measure("write", len(compressed)):
            final.parent.mkdir(exist_ok=True)
            _atomic_write(final, compressed, self.tmp_dir, sync=False)
        return digest, len(compressed)

    def get_chunk(self, digest: str, length: int) -> bytes:
        """The chunk's content, checked against its hash and length. Raises ImageCorrupt."""
        compressed = self._compressed(digest)
        try:
            with self.stage_times.measure("decompress", length):
                data = _codecs.decompressor.decompress(compressed, max_output_size=length)
        except zstandard.ZstdError as exc:
            raise ImageCorrupt(f"chunk {digest[:16]} cannot be decompressed ({exc})") from None
        if len(data) != length:
            raise ImageCorrupt(f"chunk {digest[:16]} holds {len(data)} bytes, expected {length}")
        self._check_hash(digest, data)
        return data

    def get_chunk_into(self, digest: str, buffer: memoryview) -> None:
        """Decompress the chunk straight into `buffer` (as long as the chunk), checked against its hash and
        length: no new 4 MiB object per chunk and no copy into an aligned buffer. Raises ImageCorrupt."""
        compressed = self._compressed(digest)
        got, extra = 0, b""
        try:
            with self.stage_times.measure("decompress", len(buffer)), _codecs.decompressor.stream_reader(compressed) as reader:
                while got < len(buffer) and (n := reader.readinto(buffer[got:])):
                    got += n
                extra = reader.read(1)
        except zstandard.ZstdError as exc:
            raise ImageCorrupt(f"chunk {digest[:16]} cannot be decompressed ({exc})") from None
        if got != len(buffer) or extra:
            raise ImageCorrupt(f"chunk {digest[:16]} holds {'more than ' if extra else ''}{got} bytes, expected {len(buffer)}")
        self._check_hash(digest, buffer)

    def _compressed(self, digest: str) -> bytes:
        try:
            with self.stage_times.measure("read chunk"):
                return self.chunk_path(digest).read_bytes()
        except FileNotFoundError:
            raise ImageCorrupt(f"chunk {digest[:16]} is missing") from None

    def _check_hash(self, digest: str, data) -> None:
        with self.stage_times.measure("hash", len(data)):
            matches = chunk_hash(data) == digest
        if not matches:
            raise ImageCorrupt(f"chunk {digest[:16]} does not match its hash")

    def chunk_problem(self, digest: str) -> str | None:
        """A cheap check (no read): why this chunk cannot be used, or None."""
        try:
            size = self.chunk_path(digest).stat().st_size
        except FileNotFoundError:
            return "missing"
        if size < 9:  # smaller than any zstd frame with a content size
            return f"truncated ({size} bytes)"
        return None

    # ------------------------------------------------------------ images

    def image_dir(self, name: str) -> Path:
        return self.images_dir / check_image_name(name)

    def image_names(self) -> list[str]:
        if not self.images_dir.exists():
            return []
        return sorted(p.name for p in self.images_dir.iterdir() if (p / "manifest.json").exists())

    def has_image(self, name: str) -> bool:
        return (self.image_dir(name) / "manifest.json").exists()

    def read_manifest(self, name: str) -> dict:
        path = self.image_dir(name) / "manifest.json"
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            raise ImageNotFound(f"no image named {name!r} in {self.root} (it may be incomplete)") from None
        except ValueError as exc:
            raise ImageCorrupt(f"{path}: manifest is not valid JSON ({exc})") from None

    def write_manifest(self, name: str, manifest: dict) -> None:
        """Make an image complete: every chunk is synced first, then the manifest appears atomically."""
        image_dir = self.image_dir(name)
        image_dir.mkdir(parents=True, exist_ok=True)
        _syncfs(self.root)
        _atomic_write(image_dir / "manifest.json", json.dumps(manifest, indent=1).encode(), self.tmp_dir)
        _fsync_dir(image_dir)

    def delete_image(self, name: str) -> None:
        """Remove an image's manifest (its chunks stay until garbage collection)."""
        path = self.image_dir(name) / "manifest.json"
        path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            path.parent.rmdir()

    def clean_tmp(self) -> None:
        """Remove partial files left by this process, or by processes that no longer exist.

        Another Lifeboat may be capturing into this repository right now: its files stay.
        """
        for p in self.tmp_dir.glob("*.part"):
            pid = p.name.split(".")[-3] if p.name.count(".") >= 3 else ""
            if pid.isdigit() and int(pid) != os.getpid() and os.path.exists(f"/proc/{pid}"):
                continue
            with contextlib.suppress(OSError):
                p.unlink()

    @contextlib.contextmanager
    def shared_use(self, exclusive: bool = False) -> Iterator[None]:
        """Captures hold this shared; prune holds it exclusive, so it never removes a chunk that a
        capture still in progress has written but not yet listed in a manifest."""
        fd = os.open(self.tmp_dir / "repository.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
            except BlockingIOError:
                what = "a capture is writing to it" if exclusive else "it is being pruned"
                raise RepositoryError(f"{self.root} is busy: {what}; try again when it has finished") from None
            yield
        finally:
            os.close(fd)

    def all_chunks(self) -> Iterator[Path]:
        yield from self.chunks_dir.glob("??/*.zst")

    def stored_bytes(self, digests) -> int:
        total = 0
        for d in set(digests):
            with contextlib.suppress(OSError):
                total += self.chunk_path(d).stat().st_size
        return total

    def free_bytes(self) -> int:
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize

    @contextlib.contextmanager
    def writer_lock(self, name: str) -> Iterator[None]:
        """One writer per image name at a time (two captures to one name would mix manifests)."""
        lock_path = self.tmp_dir / f"{check_image_name(name)}.lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RepositoryError(f"image {name!r} is being written by another Lifeboat process") from None
            yield
        finally:
            os.close(fd)
            with contextlib.suppress(OSError):
                lock_path.unlink()


def _atomic_write(final: Path, data: bytes, tmp_dir: Path, sync: bool = True) -> None:
    tmp = tmp_dir / f"{final.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _syncfs(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
