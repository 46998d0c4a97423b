"""What a restore does with the image's opened LUKS containers: each is re-created from its header backup
on its partition (same UUID, cipher and key slots), opened with the passphrase, its contents written and,
on a larger partition, grown. A container holding an LVM physical volume is opened for its volume group,
which lvm_plan plans like a group on plain partitions (the PV is the container's contents). Pure, apart from `check_key`, which asks cryptsetup whether the passphrase
opens the stored headers (before anything is written).
"""

from __future__ import annotations

from dataclasses import dataclass

from lifeboat.devices import human_size
from lifeboat.errors import LifeboatError
from lifeboat.fs.registry import CaptureMode, kind_for
from lifeboat.layout.model import PartitionEntry
from lifeboat.repo.manifest import ImageManifest, LuksContent, LvmPvContent, content_fstype, content_mode
from lifeboat.repo.store import Repository
from lifeboat.volumes import luks
from lifeboat.volumes.luks import LuksKey

LUKS_TOOLS = ["cryptsetup", "udevadm"]


@dataclass(frozen=True)
class ContainerAction:
    partition: int  # the image's partition number
    target_partition: int
    version: int
    uuid: str
    label: str
    cipher: str
    fstype: str  # of the contents
    mode: CaptureMode  # of the contents
    size: int  # bytes of contents today (the partition less the header)
    new_size: int  # bytes of contents tomorrow
    write_bytes: int
    grow: str = ""  # the tool that grows the contents' filesystem, "" when they keep their size
    volume_group: str = ""  # the contents are a PV of this LVM volume group (its own action, lvm_plan)
    pv_uuid: str = ""

    @property
    def grows(self) -> bool:
        return self.new_size > self.size

    @property
    def title(self) -> str:
        return f"LUKS container on partition {self.target_partition}"

    def describe(self) -> str:
        facts = ", ".join(x for x in (self.cipher, f"UUID {self.uuid}", f"label {self.label!r}" if self.label else "")
                          if x)
        return f"LUKS{self.version} container ({facts})"

    def lines(self) -> list[str]:
        """The plan's lines for the container, under its partition (a PV's group follows them, nested)."""
        what = {CaptureMode.USED_BLOCKS: f"{human_size(self.write_bytes)} of data",
                CaptureMode.RAW: f"{human_size(self.write_bytes)} raw",
                CaptureMode.SWAP: "new swap, same UUID", CaptureMode.NONE: "empty"}[self.mode]
        change = (f"grows from {human_size(self.size)} ({self.grow})" if self.grow
                  else "keeps its size" if not self.grows else "cannot be grown; it keeps its size")
        if self.volume_group:
            what, change = f"LVM physical volume of {self.volume_group}, same UUID {self.pv_uuid}", (
                f"{'grows' if self.grows else 'shrinks' if self.new_size < self.size else 'keeps its size'} "
                f"from {human_size(self.size)}: its volume group below")
        return [f"      {self.describe()}: re-created from its header backup (same UUID, cipher and key slots: "
                "the same passphrases and the system's crypttab keep working), opened with the passphrase",
                f"        contents {human_size(self.new_size):>10}  {self.fstype or self.mode:<8} {what}  {change}"]

    def to_json(self) -> dict:
        return {"partition": self.partition, "target_partition": self.target_partition, "version": self.version,
                "uuid": self.uuid, "label": self.label, "cipher": self.cipher, "fstype": self.fstype,
                "mode": str(self.mode), "size": self.size, "new_size": self.new_size, "write_bytes": self.write_bytes,
                "grows": self.grows, "grow_tool": self.grow, "volume_group": self.volume_group or None,
                "pv_uuid": self.pv_uuid or None}


def opened_containers(manifest: ImageManifest) -> dict[int, LuksContent]:
    """Partition number -> its LUKS container, for the containers captured opened (their contents stored)."""
    return {p.number: p.content for p in manifest.partitions
            if isinstance(p.content, LuksContent) and p.content.inner is not None}


def growable(content: LuksContent) -> bool:
    """Whether a larger partition is of use to the container: its contents' filesystem can be grown."""
    return content.inner is not None and content_mode(content.inner) is CaptureMode.USED_BLOCKS and bool(
        kind_for(content_fstype(content.inner)).grow)


def plan_container(number: int, content: LuksContent, source_bytes: int, target: PartitionEntry,
                   sector_size: int) -> ContainerAction:
    """`source_bytes`: the captured partition's size; `target`: its partition on the target. A container
    holding an LVM PV may be smaller: its volume group's plan (lvm_plan.plan_group) says whether it fits."""
    inner = content.inner
    assert inner is not None
    fstype, mode = content_fstype(inner), content_mode(inner)
    size = source_bytes - content.data_offset
    new_size = target.size * sector_size - content.data_offset
    pv = inner if isinstance(inner, LvmPvContent) else None
    if new_size < size and pv is None:
        raise LifeboatError(f"partition {number} (a LUKS container) would be {human_size(target.size * sector_size)}, "
                            f"smaller than its {human_size(source_bytes)}: shrinking a LUKS container is not supported "
                            "yet; nothing was written")
    grow = kind_for(fstype).grow if new_size > size and growable(content) else ""
    return ContainerAction(number, target.number, content.version, content.uuid, content.label, content.cipher,
                           fstype, mode, size, new_size, _inner_bytes(content), grow,
                           pv.vg_name if pv else "", pv.pv_uuid if pv else "")


def pv_offsets(manifest: ImageManifest) -> dict[int, int]:
    """Partition number -> bytes of LUKS header before the LVM physical volume it holds."""
    return {n: c.data_offset for n, c in opened_containers(manifest).items() if isinstance(c.inner, LvmPvContent)}


def _inner_bytes(content: LuksContent) -> int:
    stream = getattr(content.inner, "stream", None)
    return stream.used_bytes if stream else 0


def restore_tools(actions: tuple[ContainerAction, ...]) -> list[str]:
    tools = list(LUKS_TOOLS) if actions else []
    for action in actions:
        tools += kind_for(action.fstype).restore_tools(action.grows)
    return tools


def check_key(repo: Repository, manifest: ImageManifest, actions: tuple[ContainerAction, ...],
              key: LuksKey | None) -> None:
    """Refuse, before anything is written, a restore of opened containers without their passphrase or with
    one that opens none of the stored header's key slots."""
    containers = opened_containers(manifest)
    for action in actions:
        content = containers[action.partition]
        what = f"of partition {action.partition} in image {manifest.name!r} ({action.describe()})"
        if key is None:
            raise LifeboatError(f"partition {action.partition} of image {manifest.name!r} holds the contents of a "
                                f"{action.describe()}: restoring re-creates it and opens it, which needs its "
                                "passphrase (--luks-passphrase-file FILE); nothing was written")
        with luks.header_file(repo.get_chunk(content.header.digest, content.header.length)) as path:
            luks.test_passphrase(path, key, what)
