"""The EngineBackend's LUKS side: the containers on a disk or in an image, their passphrases checked, the
capture's plan with them. A passphrase lives in memory only (LuksKey, repr hidden) and reaches cryptsetup on
its standard input (lifeboat.volumes.luks): never in argv, the environment, a file, the log or a job file."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from lifeboat.devices import Disk, human_size
from lifeboat.fs.volumes import VolumeKind, probe
from lifeboat.repo.store import Repository
from lifeboat.run import missing_tools
from lifeboat.tui.backend import CapturePlanView, LuksAnswer, LuksContainer
from lifeboat.volumes import luks
from lifeboat.volumes.luks import LuksKey, LuksKeys

log = logging.getLogger("lifeboat.tui")


@dataclass(frozen=True)
class InspectedSource:
    """What plan_capture read, for run_capture: the engine's SourceInfo and the keys that opened it."""

    info: object  # lifeboat.engine.capture.SourceInfo
    keys: LuksKeys = field(repr=False)


def unavailable() -> str:
    """Why no container can be opened on this system, "" when one can."""
    if missing_tools(["cryptsetup"]):
        return "cryptsetup is not installed on this system, so it cannot be opened"
    if not luks.device_mapper():
        return "this system's kernel has no device-mapper, so it cannot be opened"
    return ""


def containers_on(disk: Disk) -> tuple[LuksContainer, ...]:
    found = []
    for part in disk.partitions:
        if part.fstype != "crypto_LUKS":
            continue
        try:
            info = probe(part.path, part.size)
        except OSError as error:
            log.warning("%s: LUKS header not read: %s", part.path, error)
            info = None
        if info is not None and info.kind is VolumeKind.LUKS:
            found.append(LuksContainer(part.number, part.path, info.version, info.uuid, info.label, part.size))
        else:
            found.append(LuksContainer(part.number, part.path, "", part.uuid, part.label, part.size))
    why = unavailable() if found else ""
    return tuple(LuksContainer(c.partition, c.node, c.version, c.uuid, c.label, c.size, why) for c in found)


def check_passphrase(container: LuksContainer, passphrase: str) -> None:
    what = f"on partition {container.partition} ({container.node})"
    luks.test_passphrase(container.node, LuksKey(passphrase), what)


def keys_of(answers: tuple[LuksAnswer, ...]) -> LuksKeys:
    return LuksKeys(tuple((a.partition, LuksKey(a.passphrase)) for a in answers if a.passphrase))


def plan_capture(source: Disk, repo: Repository, repo_path: str, answers: tuple[LuksAnswer, ...]) -> CapturePlanView:
    from lifeboat.engine.capture import inspect_source
    from lifeboat.tui.logbook import log_event

    keys = keys_of(answers)
    info = inspect_source(source.path, log_event, luks_key=keys)  # its steps to the log (no secret in them)
    plaintext = not repo.encrypted and any(p.luks for p in info.partitions)
    return CapturePlanView(source, repo_path, tuple(plan_lines(info, repo_path, repo.encrypted)), plaintext,
                           plan=InspectedSource(info, keys))


def plan_lines(info, repo_path: str, encrypted: bool) -> list[str]:
    """The capture plan as the TUI shows it (the CLI's wording): each partition, an opened container's contents
    by used blocks, a container copied whole with its size and reason, the LVM groups."""
    lines = [f"Capture {info.path} ({info.model or 'disk'}, {human_size(info.size)}) into {repo_path}"]
    for p in info.partitions:
        how = "opened with the passphrase" if p.luks else str(p.kind.mode)
        lines.append(f"  partition {p.entry.number}: {p.fstype or 'unknown'} {human_size(p.size)}, {how}, "
                     f"{human_size(p.to_read)} to read" + (f" ({_tui_words(p.reason)})" if p.reason else ""))
        if p.luks:
            inner = p.luks.inner
            lines += [f"    {p.volume.describe}: opened read-only; its {inner.fstype or 'content'} "
                      f"({human_size(inner.size)}) is imaged by {inner.kind.mode}, and a backup of its header is kept",
                      "    The header backup is sensitive: with one of the container's passphrases it decrypts the data."]
        for group in info.groups:
            if p.entry.number == min(group.partitions.values(), default=-1):
                lines.append(f"    LVM volume group {group.group.name}, UUID {group.group.uuid}:")
                lines += [f"      {v.name}: {v.fstype or 'unknown'} {human_size(v.size)}, {v.kind.mode}, "
                          f"{human_size(v.to_read)} to read" for v in group.volumes]
    lines.append(f"{human_size(info.to_read)} to read in all; the repository is "
                 + ("encrypted." if encrypted else "not encrypted."))
    return lines


def _tui_words(reason: str) -> str:
    """The engine's reason names the command line's option; here the passphrase is asked instead."""
    return reason.replace(" (--luks-passphrase-file)", "")


def image_containers(repo: Repository, image: str) -> tuple[LuksContainer, ...]:
    from lifeboat.engine.luks_plan import opened_containers
    from lifeboat.repo.manifest import load_manifest

    manifest = load_manifest(repo, image)
    sizes = {p.number: p.size for p in manifest.partitions}
    found = sorted(opened_containers(manifest).items())
    why = unavailable() if found else ""  # then not asked: the plan refuses, saying why
    return tuple(LuksContainer(n, "", str(c.version), c.uuid, c.label, sizes.get(n, 0), why) for n, c in found)


def check_image_passphrase(repo: Repository, image: str, partition: int, passphrase: str) -> None:
    """Test the passphrase against the container's header backup kept in the image (cryptsetup reads it from a
    private temporary file; no device-mapper needed)."""
    from lifeboat.engine.luks_plan import opened_containers
    from lifeboat.repo.manifest import load_manifest

    content = opened_containers(load_manifest(repo, image))[partition]
    what = f"of partition {partition} in image {image!r}"
    with luks.header_file(repo.get_chunk(content.header.digest, content.header.length)) as path:
        luks.test_passphrase(path, LuksKey(passphrase), what)


def bootfix_containers(disk: Disk) -> tuple[LuksContainer, ...]:
    """The containers lifeboat.boot.bootfix opens with the one passphrase it takes (`key`)."""
    return containers_on(disk)
