"""The image manifest: a typed, frozen, versioned tree, checked once when it is loaded.

    ImageManifest
      source disk, partition table (layout), boot regions, stats, origin, key reference
      partitions: PartitionImage(number, size, content)
      volume_groups: VolumeGroupImage(..., lvs: LogicalVolumeImage(name, uuid, size, content))

A content is one of FilesystemContent (its used blocks), RawContent (every non-zero block),
SwapContent, EmptyContent, LuksContent (header + inner content) or LvmPvContent. Data is stored as a
DataStream: a block map (which byte runs of the address space hold data) and the chunks holding
those runs, one chunk per 4 MiB window of the address space.

Version 1 (Lifeboat's first format: partitions with a bare "mode" string) is upgraded on load.
Nothing outside this module reads manifest JSON by key. Version 2 as JSON (images/NAME/manifest.json):

    {"schema": "lifeboat-image", "version": 2, "name", "created", "finished", "lifeboat", "chunk_size",
     "hash", "compression": {"algorithm", "level"}, "source": {"path", "size", "model", "serial", "sector_size"},
     "layout": DiskLayout.to_json(), "boot_regions": [{"name", "offset", "length", "chunk"}],
     "partitions": [{"number", "size", "content": CONTENT}],
     "volume_groups": [{"name", "uuid", "extent_size", "metadata": {"chunk", "length"},
                        "lvs": [{"name", "uuid", "size", "content": CONTENT}]}],
     "origin": null | {"tool", "version", "path"}, "key_ref": "", "stats": {"read_bytes", "new_chunk_bytes", "new_chunks"}}
    CONTENT: {"kind": "filesystem", "fstype", "uuid", "label", "stream": STREAM}
           | {"kind": "raw", "fstype", "uuid", "label", "reason", "stream": STREAM} | {"kind": "swap", "uuid", "label"}
           | {"kind": "empty"} | {"kind": "lvm-pv", "vg_name", "pv_uuid"}
           | {"kind": "luks", "version", "uuid", "label", "cipher", "header": {"chunk", "length"}, "inner": CONTENT | null,
              "data_offset", "sensitive"}
    STREAM:  {"map": {"chunk", "length", "runs"}, "chunks": [[window, digest, length], ...], "used_bytes",
              "unreadable": [[offset, length], ...], "unreadable_files": [path, ...], "unreadable_note"}
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar, Union

from lifeboat.errors import ImageCorrupt
from lifeboat.fs.registry import CaptureMode
from lifeboat.layout.model import DiskLayout
from lifeboat.repo.checked_json import Fields, checked_digest, checked_int, what
from lifeboat.repo.store import Repository
from lifeboat.repo.summary import ImageSummary, PartitionSummary, VolumeGroupSummary, VolumeSummary

SCHEMA = "lifeboat-image"
SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
CHUNK_SIZE = 4 * 1024 * 1024  # bytes of address space per chunk window
HASH = "sha256"


class ContentKind(StrEnum):
    FILESYSTEM = "filesystem"  # used blocks of a filesystem partclone understands
    RAW = "raw"  # every non-zero block (unknown content, BitLocker, an MD member...)
    SWAP = "swap"  # nothing stored: recreated with its UUID and label
    EMPTY = "empty"  # nothing stored, nothing recreated
    LUKS = "luks"  # a LUKS container: header backup and, when it was opened, its inner content
    LVM_PV = "lvm-pv"  # an LVM physical volume; its volume group is in ImageManifest.volume_groups


# ---------------------------------------------------------------- references to stored data


@dataclass(frozen=True)
class ChunkRef:
    """Stored bytes of one 4 MiB window of an address space: the used runs inside it, concatenated."""

    window: int
    digest: str
    length: int

    @property
    def offset(self) -> int:
        return self.window * CHUNK_SIZE


@dataclass(frozen=True)
class BlobRef:
    """One stored object that is not part of a stream (a LUKS header, LVM metadata)."""

    digest: str
    length: int


@dataclass(frozen=True)
class BlockMapRef:
    """The encoded run list (fs.usedmap.encode_runs) of a stream, stored as a chunk."""

    digest: str
    length: int
    runs: int


@dataclass(frozen=True)
class ByteRange:
    offset: int
    length: int


@dataclass(frozen=True)
class DataStream:
    """One address space (a partition or a logical volume) stored by its block map."""

    map: BlockMapRef
    chunks: tuple[ChunkRef, ...]
    used_bytes: int
    unreadable: tuple[ByteRange, ...] = ()  # a rescue capture's ranges that could not be read
    unreadable_files: tuple[str, ...] = ()  # the files that own them, as the filesystem's tools named them
    unreadable_note: str = ""  # "filesystem metadata (3 blocks)", or why files could not be named

    def digests(self) -> Iterator[str]:
        yield self.map.digest
        yield from (c.digest for c in self.chunks)


# ---------------------------------------------------------------- contents


@dataclass(frozen=True)
class FilesystemContent:
    kind: ClassVar[ContentKind] = ContentKind.FILESYSTEM
    fstype: str
    uuid: str
    label: str
    stream: DataStream


@dataclass(frozen=True)
class RawContent:
    kind: ClassVar[ContentKind] = ContentKind.RAW
    stream: DataStream
    fstype: str = ""  # what blkid called it, if anything
    uuid: str = ""
    label: str = ""
    reason: str = ""  # why it was copied whole ("BitLocker volume", "MD RAID member")


@dataclass(frozen=True)
class SwapContent:
    kind: ClassVar[ContentKind] = ContentKind.SWAP
    uuid: str = ""
    label: str = ""


@dataclass(frozen=True)
class EmptyContent:
    kind: ClassVar[ContentKind] = ContentKind.EMPTY


@dataclass(frozen=True)
class LuksContent:
    kind: ClassVar[ContentKind] = ContentKind.LUKS
    version: int
    uuid: str
    label: str
    cipher: str
    header: BlobRef
    inner: Content | None = None  # None: captured locked (the raw ciphertext is not kept here)
    data_offset: int = 0  # bytes of header before the encrypted data (the inner content starts there)
    sensitive: str = ""  # why the header must be kept like a key: it opens the data with the passphrase


@dataclass(frozen=True)
class LvmPvContent:
    kind: ClassVar[ContentKind] = ContentKind.LVM_PV
    vg_name: str
    pv_uuid: str


Content = Union[FilesystemContent, RawContent, SwapContent, EmptyContent, LuksContent, LvmPvContent]
_MODES = {ContentKind.FILESYSTEM: CaptureMode.USED_BLOCKS, ContentKind.RAW: CaptureMode.RAW,
          ContentKind.SWAP: CaptureMode.SWAP, ContentKind.EMPTY: CaptureMode.NONE}
_BLKID_TYPES = {ContentKind.SWAP: "swap", ContentKind.LUKS: "crypto_LUKS", ContentKind.LVM_PV: "LVM2_member"}
RESTORABLE = frozenset(_MODES)  # kinds this version can write back


def content_fstype(content: Content) -> str:
    """blkid's TYPE for the content ("" when none is known)."""
    return getattr(content, "fstype", "") or _BLKID_TYPES.get(content.kind, "")


def content_mode(content: Content) -> CaptureMode:
    """How the content was captured; NONE for kinds that hold no stream of their own."""
    return _MODES.get(content.kind, CaptureMode.NONE)


def content_stream(content: Content) -> DataStream | None:
    """The data stored for the content itself (None for swap, empty, LUKS and LVM physical volumes)."""
    return getattr(content, "stream", None)


def content_unreadable_bytes(content: Content | None) -> int:
    """Bytes a rescue capture could not read (stored as zeros), a LUKS container's inner content included."""
    if content is None:
        return 0
    stream = content_stream(content)
    if stream is not None:
        return sum(r.length for r in stream.unreadable)
    return content_unreadable_bytes(getattr(content, "inner", None))


def content_used_bytes(content: Content | None) -> int:
    """Bytes of data a restore writes for the content, a LUKS container's inner content included."""
    if content is None:
        return 0
    stream = content_stream(content)
    return stream.used_bytes if stream else content_used_bytes(getattr(content, "inner", None))


def _content_digests(content: Content | None) -> Iterator[str]:
    if content is None:
        return
    stream = content_stream(content)
    if stream:
        yield from stream.digests()
    if isinstance(content, LuksContent):
        yield content.header.digest
        yield from _content_digests(content.inner)


def _note(content: Content) -> str:
    """What the image's listing says of a partition's content: why it was copied whole, or what an opened
    LUKS container held (an LVM PV: its volume group's volumes are listed with the group)."""
    if isinstance(content, RawContent):
        return content.reason
    if isinstance(content, LuksContent) and content.inner is not None:
        inner = content.inner
        what = (f"an LVM physical volume of volume group {inner.vg_name}" if isinstance(inner, LvmPvContent)
                else content_fstype(inner) or str(inner.kind))
        return f"LUKS{content.version} container (UUID {content.uuid}) opened with its passphrase: holds {what}"
    return ""


# ---------------------------------------------------------------- partitions, volumes, the image


class _HoldsContent:
    """What a partition and a logical volume tell alike about the content they hold."""

    content: Content

    @property
    def fstype(self) -> str:
        return content_fstype(self.content)

    @property
    def mode(self) -> CaptureMode:
        return content_mode(self.content)

    @property
    def stream(self) -> DataStream | None:
        return content_stream(self.content)

    @property
    def used_bytes(self) -> int:
        return content_used_bytes(self.content)


@dataclass(frozen=True)
class PartitionImage(_HoldsContent):
    number: int
    size: int  # bytes
    content: Content

    @property
    def uuid(self) -> str:
        return getattr(self.content, "uuid", "")

    @property
    def label(self) -> str:
        return getattr(self.content, "label", "")

    @property
    def title(self) -> str:
        return f"partition {self.number} ({self.fstype or self.mode})"


@dataclass(frozen=True)
class LvSegmentImage:
    start_extent: int
    extents: int
    type: str  # linear | striped
    stripes: int
    devices: str  # lvm2's "/dev/vda2(0)"


@dataclass(frozen=True)
class LogicalVolumeImage(_HoldsContent):
    name: str
    uuid: str
    size: int  # bytes
    content: Content
    extents: int = 0
    tags: tuple[str, ...] = ()
    segments: tuple[LvSegmentImage, ...] = ()


@dataclass(frozen=True)
class PhysicalVolumeImage:
    partition: int  # the number of the partition it is
    uuid: str
    pe_start: int  # bytes before its first extent
    extents: int


@dataclass(frozen=True)
class VolumeGroupImage:
    name: str
    uuid: str
    extent_size: int  # bytes
    metadata: BlobRef  # the volume group's text metadata (vgcfgbackup)
    lvs: tuple[LogicalVolumeImage, ...] = ()
    extents: int = 0
    free: int = 0  # extents
    tags: tuple[str, ...] = ()
    pvs: tuple[PhysicalVolumeImage, ...] = ()


@dataclass(frozen=True)
class BootRegion:
    """Bytes outside every partition that a boot needs: the first sector, the gap before partition 1."""

    name: str  # mbr | post-mbr-gap
    offset: int
    length: int
    digest: str


@dataclass(frozen=True)
class SourceDisk:
    path: str
    size: int
    model: str = ""
    serial: str = ""
    sector_size: int = 512


@dataclass(frozen=True)
class Compression:
    algorithm: str = "zstd"
    level: int = 3


@dataclass(frozen=True)
class Origin:
    """Where an imported image came from (a Clonezilla directory); None for an image Lifeboat captured."""

    tool: str
    version: str = ""
    path: str = ""


@dataclass(frozen=True)
class CaptureStats:
    read_bytes: int = 0
    new_chunk_bytes: int = 0
    new_chunks: int = 0


@dataclass(frozen=True)
class ImageManifest:
    name: str
    created: str  # ISO 8601, UTC
    finished: str
    lifeboat_version: str
    source: SourceDisk
    layout: DiskLayout = field(repr=False)
    boot_regions: tuple[BootRegion, ...] = ()
    partitions: tuple[PartitionImage, ...] = ()
    volume_groups: tuple[VolumeGroupImage, ...] = ()
    compression: Compression = Compression()
    stats: CaptureStats = CaptureStats()
    origin: Origin | None = None
    key_ref: str = ""  # the encrypted repository's key id; "" for a plain repository
    chunk_size: int = CHUNK_SIZE
    hash: str = HASH

    def partition(self, number: int) -> PartitionImage | None:
        return next((p for p in self.partitions if p.number == number), None)

    @property
    def data_bytes(self) -> int:
        return sum(p.used_bytes for p in self.partitions) + sum(
            content_used_bytes(lv.content) for vg in self.volume_groups for lv in vg.lvs)

    def referenced_chunks(self) -> list[str]:
        """Every stored object the image needs (prune keeps them)."""
        digests = [r.digest for r in self.boot_regions]
        for part in self.partitions:
            digests.extend(_content_digests(part.content))
        for vg in self.volume_groups:
            digests.append(vg.metadata.digest)
            for lv in vg.lvs:
                digests.extend(_content_digests(lv.content))
        return digests

    def summary(self) -> ImageSummary:
        parts = tuple(PartitionSummary(p.number, p.fstype or p.mode, p.size, p.used_bytes, _note(p.content),
                                       content_unreadable_bytes(p.content))
                      for p in self.partitions)
        return ImageSummary(
            name=self.name, created=self.created, source_model=self.source.model, source_serial=self.source.serial,
            source_size=self.source.size, table=self.layout.label, partitions=parts, data_bytes=self.data_bytes,
            lifeboat_version=self.lifeboat_version, origin=self.origin.tool if self.origin else "",
            volume_groups=tuple(
                VolumeGroupSummary(vg.name, vg.uuid, tuple(pv.partition for pv in vg.pvs), vg.extents * vg.extent_size,
                                   vg.free * vg.extent_size,
                                   tuple(VolumeSummary(lv.name, lv.fstype or lv.mode, lv.size, lv.used_bytes, lv.uuid,
                                                       content_unreadable_bytes(lv.content))
                                         for lv in vg.lvs))
                for vg in self.volume_groups),
        )

    def to_json(self) -> dict:
        return _manifest_json(self)

    @classmethod
    def from_json(cls, data: object, image: str = "") -> ImageManifest:
        """The manifest in `data` (version 1 or 2), checked. Raises ImageCorrupt naming the image and field."""
        return _parse_manifest(data, image)


# ---------------------------------------------------------------- the repository's images


@dataclass(frozen=True)
class ImageListing:
    name: str
    summary: ImageSummary | None
    problem: str = ""  # why the manifest cannot be read, when summary is None


def load_manifest(repo: Repository, name: str) -> ImageManifest:
    """The manifest of image `name`, checked. Raises ImageNotFound/ImageCorrupt."""
    return ImageManifest.from_json(repo.read_manifest(name), name)


def write_manifest(repo: Repository, manifest: ImageManifest) -> None:
    """Make the image complete (every chunk synced first, then the manifest, atomically)."""
    repo.write_manifest(manifest.name, manifest.to_json())


def list_images(repo: Repository) -> list[ImageListing]:
    out = []
    for name in repo.image_names():
        try:
            out.append(ImageListing(name, load_manifest(repo, name).summary()))
        except Exception as exc:  # noqa: BLE001 - one broken manifest must not hide the others
            out.append(ImageListing(name, None, str(exc)))
    return out


# ---------------------------------------------------------------- JSON: writing


def _stream_json(s: DataStream) -> dict:
    return {
        "map": {"chunk": s.map.digest, "length": s.map.length, "runs": s.map.runs},
        "chunks": [[c.window, c.digest, c.length] for c in s.chunks],
        "used_bytes": s.used_bytes,
        "unreadable": [[r.offset, r.length] for r in s.unreadable],
        **({"unreadable_files": list(s.unreadable_files), "unreadable_note": s.unreadable_note} if s.unreadable else {}),
    }


def _content_json(c: Content) -> dict:
    out: dict = {"kind": str(c.kind)}
    if isinstance(c, FilesystemContent):
        out.update(fstype=c.fstype, uuid=c.uuid, label=c.label, stream=_stream_json(c.stream))
    elif isinstance(c, RawContent):
        out.update(fstype=c.fstype, uuid=c.uuid, label=c.label, reason=c.reason, stream=_stream_json(c.stream))
    elif isinstance(c, SwapContent):
        out.update(uuid=c.uuid, label=c.label)
    elif isinstance(c, LuksContent):
        out.update(version=c.version, uuid=c.uuid, label=c.label, cipher=c.cipher,
                   header={"chunk": c.header.digest, "length": c.header.length},
                   inner=_content_json(c.inner) if c.inner else None, data_offset=c.data_offset,
                   sensitive=c.sensitive)
    elif isinstance(c, LvmPvContent):
        out.update(vg_name=c.vg_name, pv_uuid=c.pv_uuid)
    return out


def _manifest_json(m: ImageManifest) -> dict:
    return {
        "schema": SCHEMA,
        "version": SCHEMA_VERSION,
        "name": m.name,
        "created": m.created,
        "finished": m.finished,
        "lifeboat": m.lifeboat_version,
        "chunk_size": m.chunk_size,
        "hash": m.hash,
        "compression": {"algorithm": m.compression.algorithm, "level": m.compression.level},
        "source": {"path": m.source.path, "size": m.source.size, "model": m.source.model,
                   "serial": m.source.serial, "sector_size": m.source.sector_size},
        "layout": m.layout.to_json(),
        "boot_regions": [{"name": r.name, "offset": r.offset, "length": r.length, "chunk": r.digest}
                         for r in m.boot_regions],
        "partitions": [{"number": p.number, "size": p.size, "content": _content_json(p.content)} for p in m.partitions],
        "volume_groups": [
            {"name": vg.name, "uuid": vg.uuid, "extent_size": vg.extent_size, "extents": vg.extents, "free": vg.free,
             "tags": list(vg.tags), "metadata": {"chunk": vg.metadata.digest, "length": vg.metadata.length},
             "pvs": [{"partition": pv.partition, "uuid": pv.uuid, "pe_start": pv.pe_start, "extents": pv.extents}
                     for pv in vg.pvs],
             "lvs": [{"name": lv.name, "uuid": lv.uuid, "size": lv.size, "extents": lv.extents, "tags": list(lv.tags),
                      "segments": [[g.start_extent, g.extents, g.type, g.stripes, g.devices] for g in lv.segments],
                      "content": _content_json(lv.content)}
                     for lv in vg.lvs]}
            for vg in m.volume_groups
        ],
        "origin": {"tool": m.origin.tool, "version": m.origin.version, "path": m.origin.path} if m.origin else None,
        "key_ref": m.key_ref,
        "stats": {"read_bytes": m.stats.read_bytes, "new_chunk_bytes": m.stats.new_chunk_bytes,
                  "new_chunks": m.stats.new_chunks},
    }


# ---------------------------------------------------------------- JSON: reading and checking

def _chunk_refs(f: Fields, size: int) -> tuple[ChunkRef, ...]:
    refs: list[ChunkRef] = []
    for error, (window, digest, length) in f.tuples("chunks", ("window", "digest", "length")):
        window, length = checked_int(window, 0, error), checked_int(length, 1, error)
        digest = checked_digest(digest, error)
        if refs and window <= refs[-1].window:
            raise error(f"window {window} does not follow window {refs[-1].window} (windows must increase)")
        if window * CHUNK_SIZE >= size:
            raise error(f"window {window} starts at byte {window * CHUNK_SIZE}, beyond the end ({size} bytes)")
        if length > CHUNK_SIZE:
            raise error(f"length {length} is larger than a chunk window ({CHUNK_SIZE})")
        refs.append(ChunkRef(window, digest, length))
    return tuple(refs)


def _stream(f: Fields, size: int) -> DataStream:
    m = f.obj("map")
    block_map = BlockMapRef(m.digest("chunk"), m.int("length"), m.int("runs"))  # 0: nothing stored (an all-zero partition)
    chunks = _chunk_refs(f, size)
    used = f.int("used_bytes")
    if used != sum(c.length for c in chunks):
        raise f.error(f"{used} bytes used, but the chunks hold {sum(c.length for c in chunks)}", "used_bytes")
    unreadable = []
    for error, (offset, length) in f.tuples("unreadable", ("offset", "length"), []):
        offset, length = checked_int(offset, 0, error), checked_int(length, 1, error)
        if offset + length > size:
            raise error(f"range ends at byte {offset + length}, beyond the end ({size} bytes)")
        unreadable.append(ByteRange(offset, length))
    files = tuple(str(name) for name in f.data.get("unreadable_files", ()) if isinstance(name, str))
    return DataStream(block_map, chunks, used, tuple(unreadable), files, f.str("unreadable_note", ""))


def _blob(f: Fields) -> BlobRef:
    return BlobRef(f.digest("chunk"), f.int("length", minimum=1))


def _content(f: Fields, size: int) -> Content:
    kind_text = f.str("kind")
    try:
        kind = ContentKind(kind_text)
    except ValueError:
        raise f.error(f"{kind_text!r} is not one of {', '.join(ContentKind)}", "kind") from None
    if kind is ContentKind.FILESYSTEM:
        return FilesystemContent(f.str("fstype", nonempty=True), f.str("uuid", ""), f.str("label", ""),
                                 _stream(f.obj("stream"), size))
    if kind is ContentKind.RAW:
        return RawContent(_stream(f.obj("stream"), size), f.str("fstype", ""), f.str("uuid", ""), f.str("label", ""),
                          f.str("reason", ""))
    if kind is ContentKind.SWAP:
        return SwapContent(f.str("uuid", ""), f.str("label", ""))
    if kind is ContentKind.LUKS:
        inner = f.obj("inner", None)
        return LuksContent(f.int("version", minimum=1), f.str("uuid", ""), f.str("label", ""), f.str("cipher", ""),
                           _blob(f.obj("header")), _content(inner, size) if inner else None,
                           f.int("data_offset", 0), f.str("sensitive", ""))
    if kind is ContentKind.LVM_PV:
        return LvmPvContent(f.str("vg_name"), f.str("pv_uuid", ""))
    return EmptyContent()


def _partitions(top: Fields, layout: DiskLayout) -> tuple[PartitionImage, ...]:
    entries = {e.number: e for e in layout.data_partitions()}
    parts: list[PartitionImage] = []
    for f in top.objs("partitions"):
        number, size = f.int("number", minimum=1), f.int("size")
        if any(p.number == number for p in parts):
            raise f.error(f"partition {number} appears twice", "number")
        entry = entries.get(number)
        if entry is None:
            raise f.error(f"partition {number} is not in the image's partition table", "number")
        if size != entry.size * layout.sector_size:
            raise f.error(f"{size} bytes, but partition {number} of the table has {entry.size * layout.sector_size}",
                          "size")
        parts.append(PartitionImage(number, size, _content(f.obj("content"), size)))
    return tuple(parts)


def _strings(f: Fields, key: str) -> tuple[str, ...]:
    return tuple(str(x) for x in f.data.get(key, ()) if isinstance(x, str))


def _logical_volume(lv: Fields) -> LogicalVolumeImage:
    segments = tuple(LvSegmentImage(checked_int(start, 0, error), checked_int(count, 1, error), str(kind),
                                    checked_int(stripes, 0, error), str(devices))
                     for error, (start, count, kind, stripes, devices)
                     in lv.tuples("segments", ("start", "extents", "type", "stripes", "devices"), []))
    return LogicalVolumeImage(lv.str("name", nonempty=True), lv.str("uuid", ""), lv.int("size"),
                              _content(lv.obj("content"), lv.int("size")), lv.int("extents", 0), _strings(lv, "tags"),
                              segments)


def _volume_groups(top: Fields, partitions: tuple[PartitionImage, ...]) -> tuple[VolumeGroupImage, ...]:
    groups = []
    numbers = {p.number for p in partitions}
    for f in top.objs("volume_groups", []):
        lvs = tuple(_logical_volume(lv) for lv in f.objs("lvs", []))
        pvs = []
        for pv in f.objs("pvs", []):
            if pv.int("partition", minimum=1) not in numbers:
                raise pv.error(f"partition {pv.int('partition')} is not in the image", "partition")
            pvs.append(PhysicalVolumeImage(pv.int("partition"), pv.str("uuid", ""), pv.int("pe_start"), pv.int("extents")))
        groups.append(VolumeGroupImage(f.str("name", nonempty=True), f.str("uuid", ""), f.int("extent_size", minimum=1),
                                       _blob(f.obj("metadata")), lvs, f.int("extents", 0), f.int("free", 0),
                                       _strings(f, "tags"), tuple(pvs)))
    return tuple(groups)


def _layout(top: Fields) -> DiskLayout:
    raw = top.obj("layout").data
    try:
        layout = DiskLayout.from_json(raw)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise top.error(f"not a partition table ({type(exc).__name__}: {exc})", "layout") from None
    if layout.label not in ("gpt", "dos") or layout.sector_size <= 0:
        raise top.error(f"label {layout.label!r}, sector size {layout.sector_size} is not a table Lifeboat writes",
                        "layout")
    return layout


def _check_header(top: Fields) -> int:
    if top.data.get("schema") != SCHEMA:
        raise ImageCorrupt(f"{top.where}: not a Lifeboat image manifest (schema {top.data.get('schema')!r})")
    version = top.data.get("version")
    if isinstance(version, bool) or version not in READABLE_VERSIONS:
        raise ImageCorrupt(
            f"{top.where}: manifest schema version {version!r} is not supported "
            f"(this Lifeboat reads versions {', '.join(map(str, READABLE_VERSIONS))}); use a newer Lifeboat")
    if top.data.get("chunk_size") != CHUNK_SIZE:
        raise top.error(f"chunk size {what(top.data.get('chunk_size'))} is not {CHUNK_SIZE}", "chunk_size")
    if top.data.get("hash", HASH) != HASH:
        raise top.error(f"hash {what(top.data.get('hash'))} is not {HASH}", "hash")
    return version  # type: ignore[return-value]


def _parse_manifest(data: object, image: str) -> ImageManifest:
    if not isinstance(data, dict):
        raise ImageCorrupt(f"image {image!r}: manifest is malformed: expected an object, found {what(data)}")
    top = Fields(f"image {image or data.get('name', '')!r}", "", data)
    if _check_header(top) == 1:
        top = Fields(top.where, "", _upgrade_v1(top))
    layout = _layout(top)
    partitions = _partitions(top, layout)
    src, comp, stats, origin = top.obj("source"), top.obj("compression", {}), top.obj("stats", {}), top.obj("origin", None)
    return ImageManifest(
        name=top.str("name", nonempty=True),
        created=top.str("created"),
        finished=top.str("finished", ""),
        lifeboat_version=top.str("lifeboat", ""),
        source=SourceDisk(src.str("path"), src.int("size"), src.str("model", ""), src.str("serial", ""),
                          src.int("sector_size", layout.sector_size, minimum=1)),
        layout=layout,
        boot_regions=tuple(BootRegion(r.str("name", nonempty=True), r.int("offset"), r.int("length"), r.digest("chunk"))
                           for r in top.objs("boot_regions")),
        partitions=partitions,
        volume_groups=_volume_groups(top, partitions),
        compression=Compression(comp.str("algorithm", "zstd"), comp.int("level", 3, minimum=-131072)),
        stats=CaptureStats(stats.int("read_bytes", 0), stats.int("new_chunk_bytes", 0), stats.int("new_chunks", 0)),
        origin=Origin(origin.str("tool", nonempty=True), origin.str("version", ""), origin.str("path", ""))
        if origin else None,
        key_ref=top.str("key_ref", ""),
    )


# ---------------------------------------------------------------- version 1

_V1_KINDS = {"used-blocks": ContentKind.FILESYSTEM, "raw": ContentKind.RAW, "swap": ContentKind.SWAP}


def _upgrade_v1(top: Fields) -> dict:
    """A version-1 manifest as version 2: each partition's "mode" and flat fields become a content."""
    upgraded = {**top.data, "version": 2}
    parts = []
    for f in top.objs("partitions"):
        mode = f.str("mode")
        if mode not in _V1_KINDS:
            raise f.error(f"{mode!r} is not one of {', '.join(_V1_KINDS)}", "mode")
        content: dict = {"kind": str(_V1_KINDS[mode]), "uuid": f.data.get("uuid", ""), "label": f.data.get("label", "")}
        if mode != "swap":
            content["fstype"] = f.data.get("fstype", "")
            content["stream"] = {key: f.data[key] for key in ("map", "chunks", "used_bytes") if key in f.data}
        parts.append({"number": f.data.get("number"), "size": f.data.get("size"), "content": content})
    upgraded["partitions"] = parts
    return upgraded
