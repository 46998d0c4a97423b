"""Check a whole repository, like restic's check: every manifest parses, every chunk it references is
there (and with read_data, decompresses to its length and hash), and what a crashed job left behind
is counted: partial files in tmp/, image directories without a manifest, chunks no image references.

Leftovers are not damage: a capture that was killed leaves chunks the next capture reuses, and
`prune` removes them. Damage (a missing or corrupt chunk, an unreadable manifest) makes the
repository unhealthy.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from lifeboat.events import Progress, ProgressSink, discard
from lifeboat.engine.pipeline import OrderedPool
from lifeboat.errors import ImageCorrupt, LifeboatError
from lifeboat.repo.manifest import Content, ImageManifest, LuksContent, content_stream, load_manifest
from lifeboat.repo.local import LocalBackend
from lifeboat.repo.store import Repository


@dataclass(frozen=True)
class ChunkUse:
    """One place an image needs a chunk: the image, where in it, and the chunk's plain length."""

    image: str
    where: str
    digest: str
    length: int


@dataclass(frozen=True)
class Leftovers:
    """What interrupted jobs left behind; prune removes all of it."""

    tmp_files: int = 0
    tmp_bytes: int = 0
    stale_locks: int = 0
    empty_image_dirs: tuple[str, ...] = ()
    unreferenced_chunks: int = 0
    unreferenced_bytes: int = 0

    @property
    def any(self) -> bool:
        return bool(self.tmp_files or self.stale_locks or self.empty_image_dirs or self.unreferenced_chunks)


@dataclass
class CheckReport:
    root: str
    read_data: bool
    images: int = 0
    chunks_referenced: int = 0
    chunks_stored: int = 0
    bytes_read: int = 0
    problems: list[str] = field(default_factory=list)
    leftovers: Leftovers = Leftovers()

    @property
    def healthy(self) -> bool:
        return not self.problems

    def to_json(self) -> dict:
        lo = self.leftovers
        return {
            "repo": self.root, "healthy": self.healthy, "read_data": self.read_data, "images": self.images,
            "chunks_referenced": self.chunks_referenced, "chunks_stored": self.chunks_stored,
            "bytes_read": self.bytes_read, "problems": list(self.problems),
            "leftovers": {"tmp_files": lo.tmp_files, "tmp_bytes": lo.tmp_bytes, "stale_locks": lo.stale_locks,
                          "empty_image_dirs": list(lo.empty_image_dirs),
                          "unreferenced_chunks": lo.unreferenced_chunks, "unreferenced_bytes": lo.unreferenced_bytes},
        }


def chunk_uses(name: str, manifest: ImageManifest) -> list[ChunkUse]:
    """Every chunk image `name` needs, with a place a person can find."""
    uses = [ChunkUse(name, f"boot region {r.name}", r.digest, r.length) for r in manifest.boot_regions]
    for part in manifest.partitions:
        uses += _content_uses(name, part.title, part.content)
    for vg in manifest.volume_groups:
        uses.append(ChunkUse(name, f"volume group {vg.name} metadata", vg.metadata.digest, vg.metadata.length))
        for lv in vg.lvs:
            uses += _content_uses(name, f"logical volume {vg.name}/{lv.name}", lv.content)
    return uses


def _content_uses(name: str, title: str, content: Content | None) -> list[ChunkUse]:
    if content is None:
        return []
    uses: list[ChunkUse] = []
    stream = content_stream(content)
    if stream:
        uses.append(ChunkUse(name, f"{title} block map", stream.map.digest, stream.map.length))
        uses += [ChunkUse(name, f"{title} at offset {ref.offset}", ref.digest, ref.length) for ref in stream.chunks]
    if isinstance(content, LuksContent):
        uses.append(ChunkUse(name, f"{title} LUKS header", content.header.digest, content.header.length))
        uses += _content_uses(name, f"{title} (unlocked)", content.inner)
    return uses


def check_repository(repo: Repository, *, read_data: bool = False, progress: ProgressSink = discard,
                     cancel: threading.Event | None = None, workers: int | None = None) -> CheckReport:
    """Check `repo` without changing it. Holds the repository shared, so prune cannot run meanwhile."""
    report = CheckReport(str(repo.root), read_data)
    with repo.shared_use():
        uses = _load_images(repo, report)
        stored = {p.name[:-4]: p for p in repo.all_chunks()}
        report.chunks_stored = len(stored)
        first_use: dict[str, ChunkUse] = {}
        for use in uses:
            known = first_use.setdefault(use.digest, use)
            if known.length != use.length:
                report.problems.append(f"image {use.image!r}, {use.where}: chunk {use.digest[:16]} is listed with "
                                       f"length {use.length} but {known.image!r} lists {known.length}")
        report.chunks_referenced = len(first_use)
        for digest, use in first_use.items():
            problem = repo.chunk_problem(digest)
            if problem:
                report.problems.append(f"image {use.image!r}, {use.where}: chunk {digest[:16]} {problem}")
        if read_data:
            _read_all(repo, [u for d, u in first_use.items() if d in stored], report, progress, cancel, workers)
        report.leftovers = _leftovers(repo, stored, set(first_use))
    return report


def _load_images(repo: Repository, report: CheckReport) -> list[ChunkUse]:
    uses: list[ChunkUse] = []
    for name in repo.image_names():
        report.images += 1
        try:
            uses += chunk_uses(name, load_manifest(repo, name))
        except LifeboatError as exc:
            report.problems.append(f"image {name!r}: {exc}")
        except (KeyError, TypeError, ValueError) as exc:
            report.problems.append(f"image {name!r}: manifest is malformed ({exc})")
    return uses


def _read_one(repo: Repository, use: ChunkUse) -> str:
    try:
        repo.get_chunk(use.digest, use.length)
    except ImageCorrupt as exc:
        return str(exc)
    except OSError as exc:
        return f"chunk {use.digest[:16]} cannot be read ({exc.strerror})"
    return ""


def _read_all(repo: Repository, uses: list[ChunkUse], report: CheckReport, progress: ProgressSink,
              cancel: threading.Event | None, workers: int | None) -> None:
    total = sum(u.length for u in uses)

    def on_result(use: ChunkUse, problem: str) -> None:
        report.bytes_read += use.length
        if problem:
            report.problems.append(f"image {use.image!r}, {use.where}: {problem}")
        progress(Progress("check", "chunks", report.bytes_read, total, report.bytes_read, total))

    with OrderedPool(on_result, workers=workers, cancel=cancel) as pool:
        for use in uses:
            pool.submit(use, _read_one, repo, use)


def _leftovers(repo: Repository, stored: dict[str, Path], referenced: set[str]) -> Leftovers:
    unused = [p for d, p in stored.items() if d not in referenced]
    unused_bytes = 0
    for p in unused:
        with contextlib.suppress(OSError):
            unused_bytes += p.stat().st_size
    if not isinstance(repo.backend, LocalBackend):  # partial files and locks of remote stores are theirs to expire
        return Leftovers(unreferenced_chunks=len(unused), unreferenced_bytes=unused_bytes)
    tmp_files = tmp_bytes = stale_locks = 0
    for p in repo.tmp_dir.iterdir():
        if p.name.endswith(".part") and not _writer_alive(p):
            tmp_files += 1
            with contextlib.suppress(OSError):
                tmp_bytes += p.stat().st_size
        elif p.name.endswith(".lock") and p.name != "repository.lock" and not lock_held(p):
            stale_locks += 1
    return Leftovers(tmp_files, tmp_bytes, stale_locks, _unfinished_images(repo), len(unused), unused_bytes)


def _unfinished_images(repo: Repository) -> tuple[str, ...]:
    """Image directories without a manifest: a capture was killed between making it and the manifest."""
    return tuple(sorted(p.name for p in repo.images_dir.iterdir() if p.is_dir() and not (p / "manifest.json").exists()))


def _writer_alive(part: Path) -> bool:
    """A .part file is `<name>.<pid>.<random>.part`: alive while that process runs (not this one)."""
    fields = part.name.split(".")
    pid = fields[-3] if len(fields) >= 4 else ""
    return pid.isdigit() and int(pid) != os.getpid() and os.path.exists(f"/proc/{pid}")


def lock_held(path: Path) -> bool:
    """Whether another process holds this lock file's flock right now."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def remove_leftovers(repo: Repository) -> int:
    """Remove what crashed jobs left in tmp/ and images/ (not chunks: prune decides those). Returns the count."""
    if not isinstance(repo.backend, LocalBackend):
        return 0
    removed = 0
    for p in list(repo.tmp_dir.iterdir()):
        stale = (p.name.endswith(".part") and not _writer_alive(p)) or (
            p.name.endswith(".lock") and p.name != "repository.lock" and not lock_held(p))
        if stale:
            with contextlib.suppress(OSError):
                p.unlink()
                removed += 1
    for name in _unfinished_images(repo):
        with contextlib.suppress(OSError):
            for stray in (repo.images_dir / name).iterdir():  # a checksum written just before the kill
                stray.unlink()
            (repo.images_dir / name).rmdir()
            removed += 1
    return removed
