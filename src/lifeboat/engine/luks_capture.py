"""Capture of LUKS containers whose passphrase is given: the container is opened read-only
(`cryptsetup open --readonly`), its contents are captured like a partition (a filesystem by its used
blocks; an LVM physical volume by its volume group, each logical volume by its used blocks, as
lvm_capture does for a PV on a partition), and a backup of its header (luksHeaderBackup: key slots with wrapped keys, no data) is kept
beside them, so a restore re-creates the same container. Without a passphrase, or without cryptsetup or
device-mapper on this system, the container is copied whole, as before, and the reason says why.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from lifeboat.devices import filesystem_facts, human_size
from lifeboat.errors import LifeboatError
from lifeboat.events import LogLine, ProgressSink
from lifeboat.fs.registry import RAW, CaptureMode, FsKind, kind_for
from lifeboat.fs.volumes import VolumeInfo, VolumeKind
from lifeboat.fs.volumes import probe as probe_volume
from lifeboat.layout.model import PartitionEntry
from lifeboat.repo.manifest import BlobRef, Content, LuksContent
from lifeboat.repo.store import Repository
from lifeboat.run import missing_tools
from lifeboat.volumes import luks
from lifeboat.volumes.luks import LuksKey, LuksKeys

LUKS_OPENED = FsKind("crypto_LUKS", CaptureMode.NONE)  # nothing read from the container: its contents are
SENSITIVE = ("the LUKS header backup holds the container's key slots (wrapped keys): with one of its passphrases "
             "it decrypts the container; the contents are stored decrypted in this repository")


@dataclass
class SourceContainer:
    info: VolumeInfo
    key: LuksKey = field(repr=False)
    header: bytes = field(repr=False)
    data_offset: int
    inner: object  # engine.capture.SourcePartition of the opened contents (its node valid while open)
    what: str  # "on partition 2 (/dev/sda2)"


def whole_copy_reason(info: VolumeInfo, size: int, why: str) -> str:
    return f"{info.describe}, copied whole ({human_size(size)}): {why}"


def check_plaintext_allowed(partitions: list, repo: Repository, allowed: bool) -> None:
    """An opened container's contents land decrypted in the repository: refused into an unencrypted one unless
    the user allowed it (--allow-plaintext, lifeboat.allow_plaintext=yes, or a typed confirmation)."""
    opened = [p for p in partitions if getattr(p, "luks", None)]
    if not opened or repo.encrypted or allowed:
        return
    where = ", ".join(f"partition {p.entry.number}" for p in opened)
    raise LifeboatError(f"the LUKS container's contents ({where}) would be stored decrypted in {repo.root}, which is "
                        "not encrypted: capture into an encrypted repository (lifeboat init --encrypt), or allow "
                        "it with --allow-plaintext (unattended: lifeboat.allow_plaintext=yes); nothing was written")


def _unavailable() -> str:
    if missing_tools(["cryptsetup"]):
        return "cryptsetup is not installed on this system, so it cannot be opened"
    if not luks.device_mapper():
        return "this system's kernel has no device-mapper, so it cannot be opened"
    return ""


def inspect_containers(parts: list, keys: LuksKey | LuksKeys | None, progress: ProgressSink,
                       measure: Callable[[object], None]) -> None:
    """Open each LUKS container among `parts` (engine.capture.SourcePartition) read-only with its key (one for
    all, or one per partition: LuksKeys), and map its contents' used blocks; the containers that cannot be
    opened keep their whole copy, `part.reason` saying why. A wrong passphrase raises WrongLuksPassphrase naming
    the partition, before anything is written."""
    containers = [p for p in parts if p.volume and p.volume.kind is VolumeKind.LUKS]
    for part in containers:
        key = keys.for_partition(part.entry.number) if keys else None
        if key is None:
            part.reason = whole_copy_reason(part.volume, part.size, "encrypted data does not compress; give its "
                                            "passphrase (--luks-passphrase-file) to image its contents by used blocks")
            continue
        why = _unavailable()
        if why:
            part.reason = whole_copy_reason(part.volume, part.size, why)
            continue
        what = f"on partition {part.entry.number} ({part.node})"
        luks.test_passphrase(part.node, key, what)
        header, offset = luks.header_backup(part.node), luks.data_offset(part.node)
        with luks.opened(part.node, key, what, read_only=True) as mapped:
            inner = _inner(part, mapped)
            if inner.volume and inner.volume.kind is not VolumeKind.LVM_PV:
                part.reason = whole_copy_reason(part.volume, part.size, f"it holds an {inner.volume.describe}, "
                                                "which Lifeboat does not image inside a LUKS container yet")
                continue
            if not inner.volume:
                measure(inner)
        part.luks = SourceContainer(part.volume, key, header, offset, inner, what)
        part.kind = LUKS_OPENED
        contents = ("LVM physical volume: its volume group's logical volumes are imaged one by one" if inner.volume
                    else f"{inner.fstype or 'content'} ({human_size(inner.size)}) is imaged, "
                         f"{human_size(inner.to_read)} to read")
        progress(LogLine(f"{part.title}: {part.volume.describe}, opened read-only: its {contents}"))


def inner_volumes(parts: list) -> list:
    """The opened contents that are LVM physical volumes (lvm_capture.inspect_groups looks at them too)."""
    return [p.luks.inner for p in parts if p.luks and p.luks.inner.volume]


def copy_ungrouped_whole(parts: list) -> None:
    """A container whose physical volume's group is not imaged volume by volume (a thin pool inside, a PV
    missing) is copied whole, encrypted, as without a passphrase; its reason says why."""
    for part in parts:
        inner = part.luks.inner if part.luks else None
        if inner is not None and inner.volume and inner.pv is None:
            why = inner.reason.split("copied whole: ", 1)[-1] if inner.reason else "its volume group was not found"
            part.reason = whole_copy_reason(part.volume, part.size, why)
            part.luks, part.kind = None, RAW


def _inner(part, mapped: str):
    from lifeboat.engine.capture import SourcePartition  # the partition record, reused for the contents

    with open(mapped, "rb") as f:
        size = f.seek(0, os.SEEK_END)
    facts = filesystem_facts(mapped)
    inner = SourcePartition(PartitionEntry(part.entry.number, 0, size // 512, ""), mapped, facts.fstype,
                            kind_for(facts.fstype), facts.uuid, facts.label,
                            inside=f"LUKS container on partition {part.entry.number}")
    inner.volume = probe_volume(mapped, size)
    return inner


@contextlib.contextmanager
def opened_for_capture(parts: list, *, volumes_only: bool = False) -> Iterator[None]:
    """Every container to image open read-only (again: inspect closed them) for the block; with
    `volumes_only`, those holding an LVM physical volume only."""
    with contextlib.ExitStack() as stack:
        for part in parts:
            if part.luks and (part.luks.inner.volume or not volumes_only):
                part.luks.inner.node = stack.enter_context(
                    luks.opened(part.node, part.luks.key, part.luks.what, read_only=True))
        yield


def capture_container(part, repo: Repository, writer, capture: Callable[[object], Content]) -> LuksContent:
    """Store the header backup and the opened contents of `part` (opened by opened_for_capture)."""
    source: SourceContainer = part.luks
    digest, written = repo.put_chunk(source.header, writer.level)
    writer.stored += written
    inner = capture(source.inner)
    info = source.info
    return LuksContent(int(info.version or 0), info.uuid, info.label, info.cipher, BlobRef(digest, len(source.header)),
                       inner, source.data_offset, SENSITIVE)
