"""Disk discovery: the only importer of pyudev.

Turns udev records into frozen Disk/Partition dataclasses, says which disk we booted from, and
watches for hotplug. Nothing here writes to a disk.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import pyudev

from lifeboat import locks
from lifeboat.errors import LifeboatError
from lifeboat.health import DiskHealth
from lifeboat.layout.model import GPT_BIOS_BOOT, GPT_ESP, MBR_ESP, DiskLayout
from lifeboat.layout.write import partition_node
from lifeboat.mounts import mount_table, swap_devices
from lifeboat.run import run

# Where a Debian live system mounts the medium it booted from.
LIVE_MEDIUM_MOUNTS = ("/run/live/medium", "/lib/live/mount/medium")
# Written into the live ISO by live-build/build-iso; LIVE_MEDIUM_UUID= names the ISO's volume UUID.
LIVE_RELEASE_FILE = "/etc/lifeboat-release"
# Set to a directory to show only loop devices backed by files in it (the `make run` sandbox).
SANDBOX_ENV = "LIFEBOAT_SANDBOX"


@dataclass(frozen=True)
class Partition:
    path: str
    number: int
    start: int  # bytes from the start of the disk
    size: int  # bytes
    fstype: str = ""
    label: str = ""
    uuid: str = ""
    partuuid: str = ""
    mountpoints: tuple[str, ...] = ()
    type: str = ""  # partition type: GPT type GUID or MBR type id, as in layout.PartitionEntry
    partlabel: str = ""  # GPT partition name

    @property
    def is_esp(self) -> bool:
        return self.type.upper() in (GPT_ESP, MBR_ESP.upper()) or (
            self.fstype == "vfat" and self.partlabel.lower() in ("esp", "efi")
        )

    @property
    def is_bios_boot(self) -> bool:
        return self.type.upper() == GPT_BIOS_BOOT


@dataclass(frozen=True)
class FsFacts:
    """What the filesystem inside a partition says about itself (blkid's probe or udev's copy of it)."""

    fstype: str = ""
    uuid: str = ""
    label: str = ""


@dataclass(frozen=True)
class Disk:
    path: str  # /dev/sda
    name: str  # sda
    size: int  # bytes
    model: str = ""
    serial: str = ""
    transport: str = ""  # usb, ata, nvme, virtio, loop...
    removable: bool = False
    readonly: bool = False
    table: str = ""  # gpt | dos | ""
    partitions: tuple[Partition, ...] = ()
    is_boot_medium: bool = False
    mountpoints: tuple[str, ...] = ()  # of the whole disk and its partitions
    backing_file: str = ""  # loop devices only
    unsafe_reason: str = ""  # why this disk must not be written ("" when it may be)
    health: DiskHealth | None = None  # SMART, when asked for (lifeboat.health.read_health); None: not asked
    incomplete_restore: str = ""  # a restore's in-progress marker on sector 0, described, when asked for

    @property
    def esps(self) -> list[Partition]:
        return [p for p in self.partitions if p.is_esp]

    @property
    def bios_boot(self) -> Partition | None:
        return next((p for p in self.partitions if p.is_bios_boot), None)

    def partition(self, number: int) -> Partition | None:
        return next((p for p in self.partitions if p.number == number), None)

    @property
    def description(self) -> str:
        label = self.model or self.transport or "disk"
        return f"{self.path} {label} {human_size(self.size)}"

    def to_json(self) -> dict:
        return {
            "path": self.path,
            "name": self.name,
            "size": self.size,
            "model": self.model,
            "serial": self.serial,
            "transport": self.transport,
            "removable": self.removable,
            "readonly": self.readonly,
            "table": self.table,
            "boot_medium": self.is_boot_medium,
            "unsafe_reason": self.unsafe_reason,
            "health": self.health.to_json() if self.health else None,
            "backing_file": self.backing_file,
            "partitions": [
                {
                    "path": p.path,
                    "number": p.number,
                    "start": p.start,
                    "size": p.size,
                    "fstype": p.fstype,
                    "label": p.label,
                    "uuid": p.uuid,
                    "partuuid": p.partuuid,
                    "mountpoints": list(p.mountpoints),
                    "type": p.type,
                    "partlabel": p.partlabel,
                }
                for p in self.partitions
            ],
        }


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


# ---------------------------------------------------------------- mounts and holders


def _mounts_by_devnum() -> dict[int, list[str]]:
    """st_rdev of a mounted block device -> its mount points, swaps too."""
    found: dict[int, list[str]] = {}
    for mount in mount_table():
        if mount.devnum:
            found.setdefault(mount.devnum, []).append(mount.point)
    for devnum in swap_devices():
        found.setdefault(devnum, []).append("[swap]")
    return found


def writable_mounts() -> dict[int, str]:
    """st_rdev of each block device mounted read-write -> one of its mount points."""
    found: dict[int, str] = {}
    for mount in mount_table():
        if mount.devnum and mount.writable:
            found.setdefault(mount.devnum, mount.point)
    return found


def _holders(sys_path: str) -> list[str]:
    try:
        return sorted(os.listdir(os.path.join(sys_path, "holders")))
    except OSError:
        return []


def boot_medium_devnums() -> set[int]:
    """Device numbers of the whole disks Lifeboat runs from: the live medium, or the disk under `/`."""
    mounts = _mounts_by_devnum()
    wanted = set(LIVE_MEDIUM_MOUNTS) | {"/"}
    numbers = {devnum for devnum, points in mounts.items() if wanted & set(points)}
    context = pyudev.Context()
    disks: set[int] = set()
    for devnum in numbers:
        try:
            dev = pyudev.Devices.from_device_number(context, "block", devnum)
        except Exception:  # noqa: BLE001 - not a udev block device (overlay, nfs...)
            continue
        whole = dev.find_parent("block", "disk") if dev.device_type == "partition" else dev
        if whole is not None:
            disks.add(whole.device_number)
        # a loop device backed by a file on the boot medium (squashfs) leads to that medium's disk
    # Booted with `toram`, live-boot unmounts the medium: find it by the ISO's volume UUID instead.
    medium_uuid = live_medium_uuid()
    if medium_uuid:
        for dev in context.list_devices(subsystem="block", ID_FS_UUID=medium_uuid):
            whole = dev.find_parent("block", "disk") if dev.device_type == "partition" else dev
            if whole is not None:
                disks.add(whole.device_number)
    return disks


def live_medium_uuid(release_file: str = LIVE_RELEASE_FILE) -> str:
    """The volume UUID of the live ISO we booted from, recorded in the image by live-build/build-iso."""
    try:
        with open(release_file) as f:
            for line in f:
                key, _, value = line.partition("=")
                if key.strip() == "LIVE_MEDIUM_UUID":
                    return value.strip()
    except OSError:
        pass
    return ""


# ---------------------------------------------------------------- listing


def _prop(dev: pyudev.Device, *names: str) -> str:
    for name in names:
        value = dev.properties.get(name)
        if value:
            return value.replace("\\x20", " ").strip()
    return ""


def _sysattr_int(dev: pyudev.Device, name: str, default: int = 0) -> int:
    try:
        return int(dev.attributes.asstring(name))
    except (KeyError, ValueError, UnicodeDecodeError):
        return default


def _transport(dev: pyudev.Device) -> str:
    if dev.sys_name.startswith("loop"):
        return "loop"
    if dev.sys_name.startswith("nvme"):
        return "nvme"
    if dev.sys_name.startswith("vd"):
        return "virtio"
    return _prop(dev, "ID_BUS", "ID_PATH_TAG")


def _model(dev: pyudev.Device) -> str:
    if dev.sys_name.startswith("loop"):
        return "Loop disk"
    model = _prop(dev, "ID_MODEL_FROM_DATABASE", "ID_MODEL")
    if not model:
        try:  # SCSI/SATA/NVMe expose it in sysfs even when udev has no rule for it
            model = Path(dev.sys_path, "device", "model").read_text().strip()
        except OSError:
            model = ""
    return model or {"virtio": "Virtio disk", "nvme": "NVMe disk"}.get(_transport(dev), "")


def _backing_file(dev: pyudev.Device) -> str:
    try:
        return Path(dev.sys_path, "loop", "backing_file").read_text().strip()
    except OSError:
        return ""


def filesystem_facts(node: str, *, offset: int | None = None, size: int | None = None) -> FsFacts:
    """Ask the filesystem itself (blkid's low-level probe, no cache): the one reader of a partition's type,
    UUID and label when udev's copy will not do (capture, boot, a partition udev has no record of).
    With `offset`/`size` (bytes), `node` is the whole disk and the partition is probed where the table puts
    it: the kernel here drops partition nodes whenever udev re-reads a disk.
    Raises LifeboatError naming the partition when it is gone or cannot be probed."""
    if not os.path.exists(node):
        raise LifeboatError(f"{node} disappeared while it was being inspected (was the disk removed?)")
    window = ["--offset", str(offset), "--size", str(size)] if offset is not None and size is not None else []
    proc = run(["blkid", "-p", "-o", "export", *window, node], check=False)
    if proc.returncode not in (0, 2):  # 2: nothing recognised, which is an answer too
        raise LifeboatError(f"{node}: blkid could not probe it ({proc.stderr.strip() or proc.returncode})")
    found = {}
    for line in proc.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            found[key] = value
    return FsFacts(fstype=found.get("TYPE", ""), uuid=found.get("UUID", ""), label=found.get("LABEL", ""))


def _udev_fs_facts(dev: pyudev.Device, node: str) -> FsFacts:
    """The filesystem facts udev recorded for a partition; blkid's when udev has none (a udevd that started
    just before the device appeared, or one that has not yet seen the mkfs that followed)."""
    facts = FsFacts(_prop(dev, "ID_FS_TYPE"), _prop(dev, "ID_FS_UUID"), _prop(dev, "ID_FS_LABEL"))
    if facts.fstype or not os.path.exists(node):
        return facts
    try:
        return filesystem_facts(node)
    except LifeboatError:  # a listing shows what it can; the job that uses the partition reports the error
        return facts


def _partition_from_udev(child: pyudev.Device, mounts: dict[int, list[str]]) -> Partition:
    node = child.device_node or f"/dev/{child.sys_name}"
    facts = _udev_fs_facts(child, node)
    return Partition(
        path=node,
        number=_sysattr_int(child, "partition"),
        start=_sysattr_int(child, "start") * 512,
        size=_sysattr_int(child, "size") * 512,
        fstype=facts.fstype,
        label=facts.label,
        uuid=facts.uuid,
        partuuid=_prop(child, "ID_PART_ENTRY_UUID"),
        mountpoints=tuple(mounts.get(child.device_number, ())),
        type=_prop(child, "ID_PART_ENTRY_TYPE"),
        partlabel=_prop(child, "ID_PART_ENTRY_NAME"),
    )


def _disk_from_udev(dev: pyudev.Device, mounts: dict[int, list[str]], boot: set[int]) -> Disk:
    sector_count = _sysattr_int(dev, "size")
    partitions = [_partition_from_udev(child, mounts)
                  for child in dev.context.list_devices(subsystem="block", DEVTYPE="partition", parent=dev)]
    partitions.sort(key=lambda p: p.number)
    all_mounts = tuple(mounts.get(dev.device_number, ())) + tuple(m for p in partitions for m in p.mountpoints)
    disk = Disk(
        path=dev.device_node or f"/dev/{dev.sys_name}",
        name=dev.sys_name,
        size=sector_count * 512,
        model=_model(dev),
        serial=_prop(dev, "ID_SERIAL_SHORT", "ID_SERIAL") if not dev.sys_name.startswith("loop") else "",
        transport=_transport(dev),
        removable=_sysattr_int(dev, "removable") == 1,
        readonly=_sysattr_int(dev, "ro") == 1,
        table=_prop(dev, "ID_PART_TABLE_TYPE"),
        partitions=tuple(partitions),
        is_boot_medium=dev.device_number in boot,
        mountpoints=all_mounts,
        backing_file=_backing_file(dev),
    )
    return _with_safety(disk, dev)


def _with_safety(disk: Disk, dev: pyudev.Device) -> Disk:
    """The one mounted/in-use check: why `disk` must not be written, in `unsafe_reason` ("" when it may be)."""
    reason = ""
    if disk.is_boot_medium:
        reason = "Lifeboat runs from this disk"
    elif disk.mountpoints:
        reason = f"mounted at {', '.join(disk.mountpoints[:2])}"
    elif disk.readonly:
        reason = "read-only"
    elif disk.size == 0:
        reason = "no medium"
    else:
        held = _holders(dev.sys_path) + [h for p in disk.partitions for h in _holders(_part_sys_path(dev, p))]
        if held:
            reason = f"in use by {', '.join(held[:2])}"
    if not reason and locks.capture_in_progress(disk.path):
        reason = "a capture from this disk is in progress"
    return replace(disk, unsafe_reason=reason)


def _part_sys_path(dev: pyudev.Device, part: Partition) -> str:
    return os.path.join(dev.sys_path, os.path.basename(part.path))


def _wanted(dev: pyudev.Device, include_loop: bool, sandbox: str) -> bool:
    name = dev.sys_name
    if name.startswith(("ram", "zram", "dm-", "md", "sr", "fd", "nbd")):
        return False
    if name.startswith("loop"):
        backing = _backing_file(dev)
        if not backing:
            return False
        if sandbox:
            return os.path.realpath(backing).startswith(os.path.realpath(sandbox) + os.sep)
        return include_loop
    return not sandbox


def list_disks(include_loop: bool = False, sandbox: str | None = None) -> list[Disk]:
    """Every whole disk worth showing, sorted by name. Loop devices only when asked (or in a sandbox)."""
    sandbox = sandbox if sandbox is not None else os.environ.get(SANDBOX_ENV, "")
    context = pyudev.Context()
    mounts = _mounts_by_devnum()
    boot = boot_medium_devnums()
    disks = [
        _disk_from_udev(dev, mounts, boot)
        for dev in context.list_devices(subsystem="block", DEVTYPE="disk")
        if _wanted(dev, include_loop, sandbox)
    ]
    return sorted(disks, key=lambda d: (len(d.name), d.name))


def disk_info(path: str) -> Disk:
    """The Disk record of one block device given by path (any disk, loop devices included)."""
    try:
        st = os.stat(path)
    except OSError as err:
        raise LifeboatError(f"{path}: {err.strerror}") from None
    if not stat.S_ISBLK(st.st_mode):
        raise LifeboatError(f"{path} is not a block device")
    context = pyudev.Context()
    dev = pyudev.Devices.from_device_number(context, "block", st.st_rdev)
    if dev.device_type == "partition":
        raise LifeboatError(f"{path} is a partition; give the whole disk ({dev.find_parent('block', 'disk').device_node})")
    return _disk_from_udev(dev, _mounts_by_devnum(), boot_medium_devnums())


def _partuuid(layout: DiskLayout, number: int, guid: str) -> str:
    """The PARTUUID an fstab names a partition by: its GPT GUID, or on MBR the disk signature and number."""
    if layout.label == "dos":
        return f"{int(layout.disk_id, 16):08x}-{number:02x}" if layout.disk_id else ""
    return guid.lower()


def with_layout(disk: Disk, layout: DiskLayout) -> Disk:
    """`disk` with its partitions as `layout` says (a table just written, or just read), each one's
    filesystem facts probed on the disk. Mount points and the safety verdict stay as udev and the mount
    table gave them."""
    mounts = {p.number: p.mountpoints for p in disk.partitions}
    factor = layout.sector_size
    partitions = []
    for entry in layout.data_partitions():
        node = partition_node(disk.path, entry.number)
        facts = (filesystem_facts(node) if os.path.exists(node) else  # dropped by a udev re-read: probe in place
                 filesystem_facts(disk.path, offset=entry.start * factor, size=entry.size * factor))
        partitions.append(Partition(
            path=node, number=entry.number, start=entry.start * factor, size=entry.size * factor,
            fstype=facts.fstype, label=facts.label, uuid=facts.uuid, partuuid=_partuuid(layout, entry.number, entry.uuid),
            mountpoints=mounts.get(entry.number, ()), type=entry.type, partlabel=entry.name,
        ))
    return replace(disk, table=layout.label, partitions=tuple(partitions))


# ---------------------------------------------------------------- hotplug


@dataclass
class DiskMonitor:
    """Calls `on_change()` (from a background thread) whenever a disk appears, vanishes or changes."""

    on_change: Callable[[], None]
    _observer: object | None = field(default=None, init=False)

    def start(self) -> None:
        context = pyudev.Context()
        monitor = pyudev.Monitor.from_netlink(context)
        monitor.filter_by("block")

        def handle(device: pyudev.Device) -> None:
            if device.action in ("add", "remove", "change"):
                self.on_change()

        observer = pyudev.MonitorObserver(monitor, callback=handle)
        observer.daemon = True
        observer.start()
        self._observer = observer

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer = None

