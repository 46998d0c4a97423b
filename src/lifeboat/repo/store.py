"""An image repository: content-addressed, zstd-compressed chunks shared by every image, and one
manifest per image, as objects on a backend (backend.py: a local directory, SFTP, S3, or HTTP read-only).

    lifeboat-repo.json              format marker (and, when encrypted, the wrapped key slots)
    chunks/ab/<id>.zst               one chunk; the id is the hash of its *uncompressed* content
                                     (SHA-256, or HMAC-SHA256 under the repository's key when encrypted)
    images/<name>/manifest.json      written last: no manifest, no image
    images/<name>/manifest.sha256    unencrypted repositories: the manifest's checksum, written just before it
    images/index.json                the image names, for web servers that cannot list directories
    tmp/, locks/                     partial writes and lock objects

Compression, chunk ids, encryption and integrity checks happen here, once, whatever the backend. Every
chunk read is checked against its id (and, encrypted, authenticated); every manifest read is checked against
its checksum (or authenticated). The repo knows nothing about disks.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import zstandard

from lifeboat.errors import ImageCorrupt, ImageNotFound, InvalidName, RepositoryError
from lifeboat.repo import crypto
from lifeboat.repo.backend import Backend, Locked, ObjectMissing
from lifeboat.repo.local import LocalBackend
from lifeboat.timing import StageTimes

REPO_FORMAT = "lifeboat-repo"
REPO_VERSION = 1  # unencrypted; encrypted repositories are version 2 so that older Lifeboats refuse them
ENCRYPTED_VERSION = 2
HASH_NAME = "sha256"
MARKER = "lifeboat-repo.json"
LISTING_AGE = 30.0  # seconds a remote chunk listing serves has_chunk/chunk_problem outside a capture
INDEX = "images/index.json"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
PassphraseSource = Callable[[str], str]  # (what the passphrase is for) -> passphrase


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
        self.probe = zstandard.ZstdCompressor(level=1)
        self.incompressible = zstandard.ZstdCompressor(compression_params=zstandard.ZstdCompressionParameters.from_level(
            INCOMPRESSIBLE_LEVEL, window_log=22, write_content_size=True))

    def compressor(self, level: int) -> zstandard.ZstdCompressor:
        if level not in self.compressors:
            self.compressors[level] = zstandard.ZstdCompressor(compression_params=chunk_parameters(level))
        return self.compressors[level]

    def compress(self, data, level: int) -> bytes:
        """One chunk as one zstd frame. At the fast levels (<= 3) a chunk whose samples do not compress
        (packed or already compressed files) takes level 1 instead: see looks_incompressible()."""
        if level <= 3 and looks_incompressible(data, self.probe):
            return self.incompressible.compress(data)
        return self.compressor(level).compress(data)


PROBE_SLICES, PROBE_BYTES = 4, 16 * 1024  # four 16 KiB samples spread over the chunk
INCOMPRESSIBLE = 0.9  # samples that level 1 shrinks by less than 10%
INCOMPRESSIBLE_LEVEL = 1


def looks_incompressible(data, probe: zstandard.ZstdCompressor) -> bool:
    """Whether four 16 KiB samples of a chunk (start, 1/4, 1/2, 3/4) shrink by less than 10% at level 1.

    Level 3 spends as long on such a chunk as on a compressible one and gains almost nothing over level 1
    there. On the benchmark disk's used blocks (every 10th chunk; thread CPU): 10% of the chunks, 26% of
    the output; level 1 is about 3x faster on them and their output 0.6% larger. The probe (64 KiB at
    level 1) costs about 1% of a chunk's level 3 time. A chunk of mixed content whose samples miss its
    compressible part loses a little ratio, never correctness: every frame decompresses the same way.
    """
    n = len(data)
    if n < 4 * PROBE_SLICES * PROBE_BYTES:
        return False
    view = memoryview(data)
    step = n // PROBE_SLICES
    sample = b"".join(view[i * step : i * step + PROBE_BYTES] for i in range(PROBE_SLICES))
    return len(probe.compress(sample)) > INCOMPRESSIBLE * len(sample)


def chunk_parameters(level: int) -> zstandard.ZstdCompressionParameters:
    """zstd parameters for one chunk of at most 4 MiB: the window covers the whole chunk.

    At the fast levels (<= 3) the double-fast match finder's long-match table has 128 Ki entries
    (level 3's own) and its short-match table 32 Ki (level 3: 64 Ki). Measured on the benchmark disk's
    used blocks (/usr/lib and /usr/share, every 10th chunk, 537 MB, level 3, best of three, thread CPU
    on 2 loaded cores; output against `zstd -3` over the same data as one stream):

        hash/chain log   output vs zstd -3   compression speed
        16 / 16          0.9982              0.35-0.38 GB/s
        17 / 15          0.9950              0.36-0.38 GB/s
        17 / 16          0.9926              0.355 GB/s (level 3's defaults)
        15 / 15          1.0114              0.44 GB/s

    The speeds of the first three are within the noise of a shared machine; 17/15 is as fast as
    16/16 and 0.3% smaller, which pays for the incompressible chunks' level 1 (looks_incompressible):
    both together 0.9969 of `zstd -3` for 3-10% less compression CPU than 16/16 alone (13.1-14.0 s
    against 14.4-14.7 s per 5.31 GB, probe thresholds 0.7-0.95; noisy). On the whole benchmark disk
    the image went from 0.9925x to 0.9910x the reference's (1.6501 GB against 1.6651 GB).
    """
    if level <= 3:
        return zstandard.ZstdCompressionParameters.from_level(
            level, window_log=22, hash_log=17, chain_log=15, write_content_size=True)
    return zstandard.ZstdCompressionParameters.from_level(level, window_log=22, write_content_size=True)


_codecs = _ThreadCodecs()
# Hashing and compressing run on at most one thread per core. A pipeline has more workers than cores (a
# worker waiting for the disk holds no core), and with all of them compressing at once each core switched
# between up to 8 compressors' tables and chunks. Measured on 2 loaded cores, paired runs, user+sys CPU:
# an import of the benchmark's Clonezilla image 31.3/31.9 s -> 30.5/31.0 s, a capture 25.9/22.9 s ->
# 23.6/22.6 s (the CPU of the same work drifts by 10% here with the machine's load).
_CPU_SLOTS = threading.BoundedSemaphore(len(os.sched_getaffinity(0)) or 2)
_unlocked: dict[tuple[str, str], crypto.MasterKey] = {}  # (url, marker's hash) -> key


@dataclass(frozen=True)
class StoredChunk:
    """A chunk object as prune sees it: the same surface as the Path a local repository yields."""

    name: str
    st_size: int
    _object: str
    _repo: Repository

    def stat(self) -> StoredChunk:
        return self

    def unlink(self) -> None:
        self._repo.backend.delete(self._object)
        self._repo._forget_listing(0)


class Repository:
    transfer_workers: int | None = None  # the backend's (backend.py); a Clonezilla directory has none

    def __init__(self, backend: Backend, key: crypto.MasterKey | None = None, meta: dict | None = None):
        self.backend = backend
        self.key = key
        self.meta = meta or {}
        local = isinstance(backend, LocalBackend)
        self.root: Path | str = backend.root if local else backend.url
        # Remote stores answer "which chunks exist" with one listing instead of a request per chunk:
        # loaded once per shared_use() (a prune cannot run meanwhile) and, for the cheap checks, reused for
        # LISTING_AGE seconds. None: ask the backend for each chunk.
        self._listed = not local and backend.can_list
        self.transfer_workers = backend.transfer_workers
        self._in_use = 0
        self._sizes: dict[str, int] | None = None
        self._sizes_at = 0.0
        self._sizes_lock = threading.Lock()
        self.stage_times = StageTimes()  # hash, compress, write, decompress...: a pipeline replaces it per partition
        if local:
            self.chunks_dir, self.images_dir, self.tmp_dir = backend.root / "chunks", backend.root / "images", backend.tmp_dir

    @property
    def encrypted(self) -> bool:
        return self.key is not None

    # ------------------------------------------------------------ opening

    @classmethod
    def open(cls, path: str | os.PathLike, create: bool = False, *, passphrase: PassphraseSource | None = None,
             credentials=None, master_key: crypto.MasterKey | None = None) -> Repository:
        """Open the repository at a directory or URL (location.py); with `create`, an empty place gets a new
        unencrypted repository. An encrypted one asks `passphrase` (default: credentials.passphrase), unless
        `master_key` is its key already unlocked (handed to a helper process such as the mount daemon)."""
        from lifeboat.repo.location import open_backend

        if not create and _holds_clonezilla_images(str(path)):
            from lifeboat.foreign.czrepo import ClonezillaRepository  # imports this module

            return ClonezillaRepository(Path(path))
        backend = open_backend(str(path), credentials=credentials)
        return cls.open_backend(backend, create=create, passphrase=passphrase, master_key=master_key)

    @classmethod
    def open_backend(cls, backend: Backend, create: bool = False, passphrase: PassphraseSource | None = None,
                     master_key: crypto.MasterKey | None = None) -> Repository:
        try:
            raw = backend.read(MARKER)
        except ObjectMissing:
            if not create:
                raise RepositoryError(f"{backend.url} is not a Lifeboat repository (no {MARKER})") from None
            return cls.initialize(backend)
        try:
            meta = json.loads(raw)
        except ValueError as exc:
            raise RepositoryError(f"{backend.url}/{MARKER}: unreadable ({exc})") from None
        version = meta.get("version")
        if meta.get("format") != REPO_FORMAT or version not in (REPO_VERSION, ENCRYPTED_VERSION):
            raise RepositoryError(f"{backend.url}: repository format {meta.get('format')} v{version} is not supported")
        if isinstance(backend, LocalBackend):
            backend.prepare()
        if version == REPO_VERSION:
            repo = cls(backend, None, meta)
            repo._ensure_index()
            return repo
        if meta.get("encryption") != crypto.CIPHER or meta.get("hash") != crypto.ID_HASH:
            raise RepositoryError(f"{backend.url} is encrypted with {meta.get('encryption')} and {meta.get('hash')} ids, "
                                  f"which this Lifeboat does not read (it reads {crypto.CIPHER}, {crypto.ID_HASH})")
        slots = [crypto.KeySlot.from_json(d) for d in meta.get("keys", [])]
        if not slots:
            raise RepositoryError(f"{backend.url} is encrypted but holds no key slot")
        cache = (backend.url, hashlib.sha256(raw).hexdigest())
        key = _unlocked.get(cache) or master_key
        if key is None:
            from lifeboat.repo.credentials import ask_passphrase

            phrase = (passphrase or ask_passphrase)(f"passphrase for {backend.url}")
            key, _slot = crypto.unwrap(slots, phrase, backend.url)
            _unlocked[cache] = key  # a restore reopening its plan's repository asks nothing again
        repo = cls(backend, key, meta)
        repo._ensure_index()
        return repo

    def _ensure_index(self) -> None:
        """Repositories written before images/index.json get one, so a web server can serve them."""
        if not self.backend.read_only and not self.backend.exists(INDEX):
            self._write_index()

    @classmethod
    def initialize(cls, backend: Backend, passphrase: str | None = None, kdf_log_n: int = crypto.KDF_LOG_N) -> Repository:
        """A new repository on an empty place; encrypted when a passphrase is given."""
        if backend.read_only:
            raise RepositoryError(f"{backend.url} is read-only: a repository cannot be created there")
        if backend.exists(MARKER):
            raise RepositoryError(f"{backend.url} is already a Lifeboat repository")
        # a fresh filesystem's lost+found, and the unattended job file on the stick's data partition
        others = [n for n, _ in backend.list("") if n != "lifeboat-job.conf"
                  and not n.startswith(("lost+found/", "tmp/", "locks/"))]
        if others:
            raise RepositoryError(f"{backend.url} is not empty and not a Lifeboat repository; refusing to create one there")
        if isinstance(backend, LocalBackend):
            backend.prepare()
        meta: dict = {"format": REPO_FORMAT, "version": REPO_VERSION, "hash": HASH_NAME}
        key = None
        if passphrase is not None:
            key = crypto.MasterKey.new()
            meta = {"format": REPO_FORMAT, "version": ENCRYPTED_VERSION, "hash": crypto.ID_HASH,
                    "encryption": crypto.CIPHER, "keys": [crypto.wrap(key, passphrase, kdf_log_n).to_json()]}
        backend.write(MARKER, json.dumps(meta, indent=1).encode(), durable=True)
        backend.write(INDEX, b'{"images": []}\n', durable=True)
        return cls(backend, key, meta)

    # ------------------------------------------------------------ key slots

    def key_slots(self) -> list[crypto.KeySlot]:
        return [crypto.KeySlot.from_json(d) for d in self.meta.get("keys", [])]

    def add_key(self, passphrase: str, kdf_log_n: int = crypto.KDF_LOG_N) -> crypto.KeySlot:
        if self.key is None:
            raise RepositoryError(f"{self.root} is not encrypted: it has no key slots")
        slot = crypto.wrap(self.key, passphrase, kdf_log_n)
        self._write_slots([*self.key_slots(), slot])
        return slot

    def remove_key(self, slot_id: str) -> None:
        slots = self.key_slots()
        keep = [s for s in slots if s.id != slot_id]
        if len(keep) == len(slots):
            raise RepositoryError(f"{self.root} has no key slot {slot_id!r} (it has {', '.join(s.id for s in slots)})")
        if not keep:
            raise RepositoryError(f"key slot {slot_id} is the last one: removing it would lock everyone out")
        self._write_slots(keep)

    def _write_slots(self, slots: list[crypto.KeySlot]) -> None:
        meta = {**self.meta, "keys": [s.to_json() for s in slots]}
        self.backend.write(MARKER, json.dumps(meta, indent=1).encode(), durable=True)
        self.meta = meta

    # ------------------------------------------------------------ chunks

    def chunk_object(self, digest: str) -> str:
        return f"chunks/{digest[:2]}/{digest}.zst"

    def chunk_path(self, digest: str) -> Path:
        """The chunk's file (local repositories only)."""
        return self.backend.path(self.chunk_object(digest))

    def chunk_id(self, data) -> str:
        return self.key.chunk_id(data) if self.key else chunk_hash(data)

    def has_chunk(self, digest: str) -> bool:
        return self._size(digest, for_write=False) is not None

    def _chunk_sizes(self, max_age: float) -> dict[str, int]:
        with self._sizes_lock:
            if self._sizes is None or time.monotonic() - self._sizes_at > max_age:
                self._sizes = {n: size for n, size in self.backend.list("chunks/") if n.endswith(".zst")}
                self._sizes_at = time.monotonic()
            return self._sizes

    def _size(self, digest: str, for_write: bool) -> int | None:
        name = self.chunk_object(digest)
        if self._listed and (self._in_use or not for_write):
            return self._chunk_sizes(float("inf") if self._in_use else LISTING_AGE).get(name)
        return self.backend.size(name)

    def put_chunk(self, data, level: int, digest: str | None = None) -> tuple[str, int]:
        """Store `data` (bytes-like) unless a chunk with its id exists. Returns (id, bytes written).

        Hash first, compress only a chunk the repository lacks: a second capture of an unchanged
        disk reads and hashes, nothing more."""
        times = self.stage_times
        if digest is None:
            with _CPU_SLOTS, times.measure("hash", len(data)):
                digest = self.chunk_id(data)
        if self._size(digest, for_write=True) is not None:
            return digest, 0
        with _CPU_SLOTS, times.measure("compress", len(data)):
            blob = _codecs.compress(data, level)
        if self.key:
            with times.measure("encrypt", len(blob)):
                blob = self.key.seal(blob, digest.encode())
        with times.measure("write", len(blob)):
            self.backend.write(self.chunk_object(digest), blob)
        sizes = self._sizes
        if sizes is not None:
            sizes[self.chunk_object(digest)] = len(blob)
        return digest, len(blob)

    def get_chunk(self, digest: str, length: int) -> bytes:
        """The chunk's content, checked against its id and length (and authenticated). Raises ImageCorrupt."""
        what = f"chunk {digest[:16]}"
        blob = self._blob(digest, what)
        try:
            with self.stage_times.measure("decompress", length):
                data = _codecs.decompressor.decompress(blob, max_output_size=length)
        except zstandard.ZstdError as exc:
            raise ImageCorrupt(f"{what} cannot be decompressed ({exc})") from None
        if len(data) != length:
            raise ImageCorrupt(f"{what} holds {len(data)} bytes, expected {length}")
        self._check_id(digest, data, what)
        return data

    def get_chunk_into(self, digest: str, buffer: memoryview) -> None:
        """Decompress the chunk straight into `buffer` (as long as the chunk), checked against its id and
        length (and authenticated): no new 4 MiB object and no copy into an aligned buffer. Raises ImageCorrupt."""
        what = f"chunk {digest[:16]}"
        blob = self._blob(digest, what)
        got, extra = 0, b""
        try:
            with self.stage_times.measure("decompress", len(buffer)), _codecs.decompressor.stream_reader(blob) as reader:
                while got < len(buffer) and (n := reader.readinto(buffer[got:])):
                    got += n
                extra = reader.read(1)
        except zstandard.ZstdError as exc:
            raise ImageCorrupt(f"{what} cannot be decompressed ({exc})") from None
        if got != len(buffer) or extra:
            raise ImageCorrupt(f"{what} holds {'more than ' if extra else ''}{got} bytes, expected {len(buffer)}")
        self._check_id(digest, buffer, what)

    def _blob(self, digest: str, what: str) -> bytes:
        """The chunk's stored bytes, read and (encrypted) authenticated and opened."""
        try:
            with self.stage_times.measure("read chunk"):
                blob = self.backend.read(self.chunk_object(digest))
        except ObjectMissing:
            raise ImageCorrupt(f"{what} is missing") from None
        if self.key:
            with self.stage_times.measure("decrypt", len(blob)):
                blob = self.key.open(blob, digest.encode(), what)
        return blob

    def _check_id(self, digest: str, data, what: str) -> None:
        with self.stage_times.measure("hash", len(data)):
            matches = self.chunk_id(data) == digest
        if not matches:
            raise ImageCorrupt(f"{what} does not match its hash")

    def chunk_problem(self, digest: str) -> str | None:
        """A cheap check (no read): why this chunk cannot be used, or None."""
        size = self._size(digest, for_write=False)
        if size is None:
            return "missing"
        if size < 9 + (crypto.OVERHEAD if self.key else 0):  # smaller than any zstd frame with a content size
            return f"truncated ({size} bytes)"
        return None

    def all_chunks(self) -> Iterator[Path | StoredChunk]:
        if isinstance(self.backend, LocalBackend):
            yield from self.chunks_dir.glob("??/*.zst")
            return
        for name, size in self.backend.list("chunks/"):
            if name.endswith(".zst"):
                yield StoredChunk(name.rsplit("/", 1)[-1], size, name, self)

    def stored_bytes(self, digests) -> int:
        return sum(self._size(d, for_write=False) or 0 for d in set(digests))

    # ------------------------------------------------------------ images

    def image_dir(self, name: str) -> Path:
        return self.images_dir / check_image_name(name)

    def _manifest_object(self, name: str, suffix: str = "json") -> str:
        return f"images/{check_image_name(name)}/manifest.{suffix}"

    def image_names(self) -> list[str]:
        if not self.backend.can_list:
            try:
                return sorted(json.loads(self.backend.read(INDEX)).get("images", []))
            except ObjectMissing:
                raise RepositoryError(f"{self.root} has no images/index.json (it was written by an older Lifeboat): "
                                      "open it once with this Lifeboat where it is stored, which writes one") from None
            except (ValueError, AttributeError):
                raise RepositoryError(f"{self.root}: images/index.json is damaged") from None
        return sorted({n.split("/")[1] for n, _ in self.backend.list("images/") if n.endswith("/manifest.json")})

    def has_image(self, name: str) -> bool:
        return self.backend.exists(self._manifest_object(name))

    def read_manifest(self, name: str) -> dict:
        obj = self._manifest_object(name)
        try:
            raw = self.backend.read(obj)
        except ObjectMissing:
            raise ImageNotFound(f"no image named {name!r} in {self.root} (it may be incomplete)") from None
        if self.key:
            raw = self.key.open(raw, f"manifest/{name}".encode(), f"the manifest of image {name!r}")
        else:
            self._check_manifest_sum(name, raw)
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise ImageCorrupt(f"{self.backend.url}/{obj}: manifest is not valid JSON ({exc})") from None

    def _check_manifest_sum(self, name: str, raw: bytes) -> None:
        try:
            expected = self.backend.read(self._manifest_object(name, "sha256")).decode().split()[0]
        except (ObjectMissing, UnicodeDecodeError, IndexError):
            return  # written by a Lifeboat before checksums
        if hashlib.sha256(raw).hexdigest() != expected:
            raise ImageCorrupt(f"the manifest of image {name!r} does not match its checksum: it was damaged")

    def write_manifest(self, name: str, manifest: dict) -> None:
        """Make an image complete: every chunk is made durable first, then the manifest appears atomically."""
        raw = json.dumps(manifest, indent=1).encode()
        self.backend.sync()
        if self.key:
            raw = self.key.seal(raw, f"manifest/{name}".encode())
        else:
            self.backend.write(self._manifest_object(name, "sha256"), f"{hashlib.sha256(raw).hexdigest()}\n".encode(),
                               durable=True)
        self.backend.write(self._manifest_object(name), raw, durable=True)
        if isinstance(self.backend, LocalBackend):
            self.backend.sync_dir(self._manifest_object(name))
        self._write_index()

    def _write_index(self) -> None:
        """images/index.json from a fresh listing: the later of two writers lists both images."""
        with contextlib.suppress(OSError, RepositoryError):
            names = self.image_names()
            self.backend.write(INDEX, (json.dumps({"images": names}) + "\n").encode(), durable=True)

    def delete_image(self, name: str) -> None:
        """Remove an image's manifest (its chunks stay until garbage collection)."""
        self.backend.delete(self._manifest_object(name))
        self.backend.delete(self._manifest_object(name, "sha256"))
        self._write_index()

    def clean_tmp(self) -> None:
        """Remove partial writes left by this process, or by processes that no longer exist."""
        self.backend.clean_partial()

    @contextlib.contextmanager
    def shared_use(self, exclusive: bool = False) -> Iterator[None]:
        """Captures hold this shared; prune holds it exclusive, so it never removes a chunk that a
        capture still in progress has written but not yet listed in a manifest."""
        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(self.backend.lock("repository", exclusive))
            except Locked as exc:
                what = "a capture is writing to it" if exclusive else "it is being pruned"
                raise RepositoryError(f"{self.root} is busy: {what}; try again when it has finished ({exc})") from None
            self._forget_listing(+1)
            stack.callback(self._forget_listing, -1)
            yield

    def _forget_listing(self, use: int) -> None:
        with self._sizes_lock:
            self._in_use += use
            self._sizes = None

    def free_bytes(self) -> int:
        free = self.backend.free_bytes()
        return free if free is not None else 2 ** 62

    @contextlib.contextmanager
    def writer_lock(self, name: str) -> Iterator[None]:
        """One writer per image name at a time (two captures to one name would mix manifests)."""
        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(self.backend.lock(f"image-{check_image_name(name)}", True))
            except Locked:
                raise RepositoryError(f"image {name!r} is being written by another Lifeboat process") from None
            yield


def _holds_clonezilla_images(path: str) -> bool:
    """A local Clonezilla image directory, or a directory of them (/home/partimag): read by lifeboat.foreign."""
    if "://" in path:
        return False
    root = Path(path)
    if (root / MARKER).exists() or not root.is_dir():
        return False
    if any((root / m).is_file() for m in ("clonezilla-img", "parts", "disk")):
        return True
    return any(d.is_dir() and (d / "clonezilla-img").is_file() for d in root.iterdir())


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
