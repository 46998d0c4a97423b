"""The image manifest: its schema, validation, and the summary front ends show."""

from __future__ import annotations

from dataclasses import dataclass

from lifeboat.errors import ImageCorrupt
from lifeboat.layout.model import DiskLayout
from lifeboat.repo.store import Repository

SCHEMA = "lifeboat-image"
SCHEMA_VERSION = 1
CHUNK_SIZE = 4 * 1024 * 1024  # bytes of partition address space per chunk window


def load_manifest(repo: Repository, name: str) -> dict:
    """The manifest of image `name`, checked for schema and shape. Raises ImageNotFound/ImageCorrupt."""
    manifest = repo.read_manifest(name)
    where = f"image {name!r}"
    if manifest.get("schema") != SCHEMA:
        raise ImageCorrupt(f"{where}: not a Lifeboat image manifest (schema {manifest.get('schema')!r})")
    if manifest.get("version") != SCHEMA_VERSION:
        raise ImageCorrupt(
            f"{where}: manifest schema version {manifest.get('version')!r} is not supported "
            f"(this Lifeboat reads version {SCHEMA_VERSION}); use a newer Lifeboat"
        )
    try:
        DiskLayout.from_json(manifest["layout"])
        for part in manifest["partitions"]:
            if part["mode"] in ("used-blocks", "raw"):
                for window, digest, length in part["chunks"]:
                    if not (isinstance(window, int) and isinstance(length, int) and len(digest) == 64):
                        raise ValueError(f"bad chunk reference in partition {part['number']}")
        if manifest.get("chunk_size") != CHUNK_SIZE:
            raise ValueError(f"chunk size {manifest.get('chunk_size')} is not {CHUNK_SIZE}")
    except (KeyError, TypeError, ValueError) as exc:
        raise ImageCorrupt(f"{where}: manifest is malformed ({exc})") from None
    return manifest


def referenced_chunks(manifest: dict) -> list[str]:
    digests = [r["chunk"] for r in manifest["boot_regions"]]
    for part in manifest["partitions"]:
        if "map" in part:
            digests.append(part["map"]["chunk"])
        digests.extend(ref[1] for ref in part.get("chunks", ()))
    return digests


@dataclass(frozen=True)
class ImageSummary:
    name: str
    created: str
    source_model: str
    source_serial: str
    source_size: int
    table: str
    partitions: tuple[tuple[int, str, int, int], ...]  # (number, fstype, size, used bytes)
    data_bytes: int  # bytes the image restores

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "created": self.created,
            "source_model": self.source_model,
            "source_serial": self.source_serial,
            "source_size": self.source_size,
            "table": self.table,
            "partitions": [
                {"number": n, "fstype": f, "size": s, "used_bytes": u} for n, f, s, u in self.partitions
            ],
            "data_bytes": self.data_bytes,
        }


def summarize(manifest: dict) -> ImageSummary:
    parts = tuple(
        (p["number"], p["fstype"] or p["mode"], p["size"], p.get("used_bytes", 0)) for p in manifest["partitions"]
    )
    return ImageSummary(
        name=manifest["name"],
        created=manifest["created"],
        source_model=manifest["source"].get("model", ""),
        source_serial=manifest["source"].get("serial", ""),
        source_size=manifest["source"]["size"],
        table=manifest["layout"]["label"],
        partitions=parts,
        data_bytes=sum(p[3] for p in parts),
    )


def list_images(repo: Repository) -> list[tuple[str, ImageSummary | None, str]]:
    """(name, summary or None, problem) for every image in the repository."""
    out = []
    for name in repo.image_names():
        try:
            out.append((name, summarize(load_manifest(repo, name)), ""))
        except Exception as exc:  # noqa: BLE001 - one broken manifest must not hide the others
            out.append((name, None, str(exc)))
    return out


def unreadable_lines(manifest: dict) -> list[str]:
    """One line per partition with bytes that could not be read at capture: how many, where, which files."""
    lines = []
    for part in manifest["partitions"]:
        ranges = part.get("unreadable") or []
        if not ranges:
            continue
        title = f"partition {part['number']} ({part['fstype'] or part['mode']})"
        where = ", ".join(f"{s}+{n}" for s, n in ranges[:4]) + (f" and {len(ranges) - 4} more" if len(ranges) > 4 else "")
        files = part.get("unreadable_files") or []
        named = ", ".join(files[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else "")
        note = part.get("unreadable_note", "")
        lines.append(f"{title}: {sum(n for _, n in ranges)} bytes unreadable in {len(ranges)} ranges (bytes {where}); "
                     f"files: {named or 'none'}{'; ' + note if note else ''}")
    return lines
