"""Re-read every chunk of an image and check it against its hash; report where any damage is."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from lifeboat.engine.rescue import unreadable_lines
from lifeboat.events import Progress, ProgressSink, discard
from lifeboat.engine.pipeline import OrderedPool
from lifeboat.errors import ImageCorrupt
from lifeboat.fs.usedmap import decode_runs
from lifeboat.engine.luks_plan import opened_containers
from lifeboat.repo.manifest import ImageManifest, content_stream, load_manifest
from lifeboat.repo.store import Repository


@dataclass
class VerifyReport:
    image: str
    chunks: int = 0
    bytes: int = 0
    problems: list[str] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)  # bytes unreadable at capture (a rescue image), not damage

    @property
    def ok(self) -> bool:
        return not self.problems


def _check(repo: Repository, digest: str, length: int) -> str:
    try:
        repo.get_chunk(digest, length)
    except ImageCorrupt as exc:
        return str(exc)
    return ""


def _work_list(manifest: ImageManifest) -> list[tuple[str, str, str, int]]:
    """(item, where, digest, length) for every chunk the image needs; item names the progress bar."""
    items = [("boot regions", f"boot region {r.name} (offset {r.offset})", r.digest, r.length)
             for r in manifest.boot_regions]
    streams = [(part.title, part.stream) for part in manifest.partitions]
    for vg in manifest.volume_groups:  # an LVM group's metadata, and its logical volumes like partitions
        items.append((f"volume group {vg.name}", f"volume group {vg.name} metadata", vg.metadata.digest,
                      vg.metadata.length))
        streams += [(f"logical volume {vg.name}/{lv.name} ({lv.fstype or lv.mode})", lv.stream) for lv in vg.lvs]
    for number, container in opened_containers(manifest).items():  # a LUKS header backup, its contents
        title = f"contents of the LUKS container on partition {number}"
        items.append((title, f"partition {number} LUKS header backup", container.header.digest, container.header.length))
        streams.append((title, content_stream(container.inner)))
    for title, stream in streams:
        if stream is None:
            continue
        items.append((title, f"{title} block map", stream.map.digest, stream.map.length))
        for ref in stream.chunks:
            items.append((title, f"{title} at offset {ref.offset}", ref.digest, ref.length))
    return items


def verify(repo: Repository, name: str, *, progress: ProgressSink = discard, cancel: threading.Event | None = None,
           workers: int | None = None) -> VerifyReport:
    manifest = load_manifest(repo, name)
    report = VerifyReport(name, incomplete=unreadable_lines(manifest))
    items = _work_list(manifest)
    total = sum(length for *_, length in items)
    item_totals: dict[str, int] = {}
    for item, _, _, length in items:
        item_totals[item] = item_totals.get(item, 0) + length
    item_done: dict[str, int] = {}

    def on_result(tag: tuple[str, str, int], problem: str) -> None:
        item, where, length = tag
        report.chunks += 1
        report.bytes += length
        item_done[item] = item_done.get(item, 0) + length
        if problem:
            report.problems.append(f"{where}: {problem}")
        progress(Progress("verify", item, item_done[item], item_totals[item], report.bytes, total))

    with OrderedPool(on_result, workers=workers, cancel=cancel) as pool:
        for item, where, digest, length in items:
            pool.submit((item, where, length), _check, repo, digest, length)
    for part in manifest.partitions:
        stream = part.stream
        if stream and not any(p.startswith(f"partition {part.number} ") for p in report.problems):
            runs = decode_runs(repo.get_chunk(stream.map.digest, stream.map.length))
            mapped = sum(n for _, n in runs)
            stored = sum(ref.length for ref in stream.chunks)
            if mapped != stored or mapped != stream.used_bytes:
                report.problems.append(
                    f"partition {part.number}: block map covers {mapped} bytes but chunks hold {stored}"
                )
    return report
