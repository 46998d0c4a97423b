"""The LUKS containers of a disk being fixed, open for the length of a bootfix (or a restore's bootloader step)
so that a root on LUKS, or the LVM volume groups inside one (Debian's guided encrypted LVM), can be found,
mounted and chrooted into.

The passphrase goes to cryptsetup on its standard input (lifeboat.volumes.luks), never in argv or a log. A
container is opened under the name the installed system's /etc/crypttab gives it when that can be known (found by
a first, read-only look under Lifeboat's own name: the crypttab is inside the container), so that the chroot's
grub-mkconfig and update-initramfs see the names the system boots with. Each container this opened is closed
afterwards, on error too, and that is a step. Without a passphrase each container is a "needs-passphrase" step
(not a failure: the disk's other systems are still fixed); with a wrong one, a failed step naming the partition,
and the caller writes nothing.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from lifeboat.boot.model import DONE, FAILED, NEEDS_PASSPHRASE, NOT_NEEDED, LinuxSystem, Recorder
from lifeboat.boot.probe import LVM_PV, Volume, resolve_spec
from lifeboat.devices import Disk, Partition, filesystem_facts
from lifeboat.errors import LifeboatError
from lifeboat.volumes import luks
from lifeboat.volumes.luks import LuksKey

LUKS = "crypto_LUKS"  # blkid's name of a LUKS container
MAPPER = "/dev/mapper"
OPTION = "--luks-passphrase-file FILE"


@dataclass
class OpenContainers:
    """What opening the disk's containers gave: LVM PVs and filesystems inside them, and what stayed shut."""

    pvs: list[str] = field(default_factory=list)  # /dev/mapper/NAME nodes holding an LVM physical volume
    volumes: list[Volume] = field(default_factory=list)  # /dev/mapper/NAME nodes holding a filesystem
    locked: list[str] = field(default_factory=list)  # partitions left locked: no passphrase given
    failed: bool = False  # a container could not be opened (wrong passphrase...): nothing may be written


def containers(disk: Disk) -> list[Partition]:
    return [p for p in disk.partitions if p.fstype == LUKS]


def unlock_step(part: Partition) -> str:
    return f"unlock {part.path}"


def holder(part: Partition) -> str:
    """The device-mapper name something already opened `part` under ("" when it is not open)."""
    base = os.path.basename(os.path.realpath(part.path))
    try:
        for dm in os.listdir(f"/sys/class/block/{base}/holders"):
            with open(f"/sys/class/block/{dm}/dm/name") as f:
                return f.read().strip()
    except OSError:
        pass
    return ""


def crypttab_names(systems: Sequence[LinuxSystem], disk: Disk, log) -> dict[str, str]:
    """Partition path -> the name an installed system's /etc/crypttab opens that container under (the first
    system's when two disagree); only names that are free on this machine and plain device-mapper names."""
    names: dict[str, str] = {}
    for system in systems:
        for entry in system.crypttab:
            part = resolve_spec(entry.source, disk)
            if not isinstance(part, Partition) or part.fstype != LUKS or part.path in names:
                continue
            if "/" in entry.name or not entry.name or os.path.exists(f"{MAPPER}/{entry.name}"):
                log(f"{part.path}: its /etc/crypttab name {entry.name!r} is in use or not usable here: "
                    f"opening it as {luks.mapper_name(part.path)}", "warning")
                continue
            names[part.path] = entry.name
    return names


def _contents(part: Partition, node: str, name: str, found: OpenContainers) -> None:
    """Sort an opened container's contents: an LVM PV, or a filesystem a root or /boot can be on."""
    try:
        facts = filesystem_facts(node)
    except LifeboatError:
        return
    if facts.fstype == LVM_PV:
        found.pvs.append(node)
    elif facts.fstype:
        found.volumes.append(Volume("", name, node, (part.path,), facts.fstype, facts.uuid, facts.label))


@contextlib.contextmanager
def _open(part: Partition, key: LuksKey, name: str, rec: Recorder, found: OpenContainers) -> Iterator[None]:
    """`part` open under `name` for the block (reported), closed afterwards (reported); a container that was
    already open is used as it is and left open."""
    step = unlock_step(part)
    rec.start(step, part.path)
    existing = holder(part)
    if existing:
        rec.finish(step, NOT_NEEDED, f"already open as {MAPPER}/{existing}: used as it is, and left open")
        _contents(part, f"{MAPPER}/{existing}", existing, found)
        yield
        return
    node = luks.open_container(part.path, key, f"on {part.path}", read_only=False, name=name)
    why = "the name its system's /etc/crypttab gives" if name else "no /etc/crypttab names it"
    rec.finish(step, DONE, f"opened as {node} ({why})")
    _contents(part, node, name or luks.mapper_name(part.path), found)
    try:
        yield
    finally:
        close = f"close LUKS container {part.path}"
        rec.start(close, node)
        try:
            luks.close_container(part.path, name)
        except LifeboatError as err:
            rec.finish(close, FAILED, f"{err}; it may still be open: run cryptsetup close {os.path.basename(node)}")
        else:
            rec.finish(close, DONE, f"{node} closed")


@contextlib.contextmanager
def opened(disk: Disk, key: LuksKey | None, rec: Recorder,
           names: Mapping[str, str] | None = None) -> Iterator[OpenContainers]:
    """The disk's LUKS containers open for the block (under `names`: partition path -> crypttab name, else
    Lifeboat's own name), their contents yielded; closed afterwards. Without `key`, each is a needs-passphrase
    step; a container the key does not open is a failed step naming it, and `failed` tells the caller to stop."""
    found = OpenContainers()
    parts = containers(disk)
    if parts and key is None:
        for part in parts:
            rec.start(unlock_step(part), part.path)
            rec.finish(unlock_step(part), NEEDS_PASSPHRASE,
                       f"LUKS container {part.path} (UUID {part.uuid or '?'}) needs its passphrase ({OPTION}) before "
                       "a system inside it can be found; it was not opened")
            found.locked.append(part.path)
        yield found
        return
    if parts and not luks.device_mapper():
        for part in parts:
            rec.start(unlock_step(part), part.path)
            rec.finish(unlock_step(part), FAILED, f"this system has no device-mapper, so {part.path} cannot be "
                                                  "opened (load dm_crypt, or run Lifeboat from its live system)")
        found.failed = True
        yield found
        return
    with contextlib.ExitStack() as stack:
        for part in parts:
            try:
                stack.enter_context(_open(part, key, (names or {}).get(part.path, ""), rec, found))
            except LifeboatError as err:  # a wrong passphrase names the partition; nothing written
                rec.finish(unlock_step(part), FAILED, str(err))
                found.failed = True
                break
        yield found
