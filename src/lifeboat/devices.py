"""Disk discovery: the only importer of pyudev.

Turns udev records into frozen Disk/Partition dataclasses, says which disk we booted from, and
watches for hotplug. Nothing here writes to a disk.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyudev

from lifeboat.health import DiskHealth

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


def _block_mounts() -> list[tuple[int, str, bool]]:
    """(st_rdev, mount point, read-write) for every mounted block device, from /proc/self/mountinfo."""
    found = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                major, minor = (int(x) for x in fields[2].split(":"))
                if major:
                    found.append((os.makedev(major, minor), _unescape(fields[4]), "rw" in fields[5].split(",")))
    except OSError:
        pass
    return found


def _mounts_by_devnum() -> dict[int, list[str]]:
    """st_rdev of a mounted block device -> its mount points, swaps too."""
    found: dict[int, list[str]] = {}
    for devnum, point, _ in _block_mounts():
        found.setdefault(devnum, []).append(point)
    try:
        with open("/proc/swaps") as f:
            next(f, None)
            for line in f:
                dev = line.split()[0]
                try:
                    found.setdefault(os.stat(dev).st_rdev, []).append("[swap]")
                except OSError:
                    pass
    except OSError:
        pass
    return found


def writable_mounts() -> dict[int, str]:
    """st_rdev of each block device mounted read-write -> one of its mount points."""
    found: dict[int, str] = {}
    for devnum, point, writable in _block_mounts():
        if writable:
            found.setdefault(devnum, point)
    return found


def _unescape(path: str) -> str:
    return path.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


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


def _disk_from_udev(dev: pyudev.Device, mounts: dict[int, list[str]], boot: set[int]) -> Disk:
    sector_count = _sysattr_int(dev, "size")
    partitions = []
    context = dev.context
    for child in context.list_devices(subsystem="block", DEVTYPE="partition", parent=dev):
        number = _sysattr_int(child, "partition")
        partitions.append(
            Partition(
                path=child.device_node or f"/dev/{child.sys_name}",
                number=number,
                start=_sysattr_int(child, "start") * 512,
                size=_sysattr_int(child, "size") * 512,
                fstype=_prop(child, "ID_FS_TYPE"),
                label=_prop(child, "ID_FS_LABEL"),
                uuid=_prop(child, "ID_FS_UUID"),
                partuuid=_prop(child, "ID_PART_ENTRY_UUID"),
                mountpoints=tuple(mounts.get(child.device_number, ())),
            )
        )
    partitions.sort(key=lambda p: p.number)
    all_mounts = tuple(mounts.get(dev.device_number, ())) + tuple(m for p in partitions for m in p.mountpoints)
    is_boot = dev.device_number in boot
    readonly = _sysattr_int(dev, "ro") == 1
    disk = Disk(
        path=dev.device_node or f"/dev/{dev.sys_name}",
        name=dev.sys_name,
        size=sector_count * 512,
        model=_model(dev),
        serial=_prop(dev, "ID_SERIAL_SHORT", "ID_SERIAL") if not dev.sys_name.startswith("loop") else "",
        transport=_transport(dev),
        removable=_sysattr_int(dev, "removable") == 1,
        readonly=readonly,
        table=_prop(dev, "ID_PART_TABLE_TYPE"),
        partitions=tuple(partitions),
        is_boot_medium=is_boot,
        mountpoints=all_mounts,
        backing_file=_backing_file(dev),
    )
    return _with_safety(disk, dev)


def _with_safety(disk: Disk, dev: pyudev.Device) -> Disk:
    from dataclasses import replace

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
    from lifeboat import locks

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
    st = os.stat(path)
    if not stat.S_ISBLK(st.st_mode):
        from lifeboat.errors import LifeboatError

        raise LifeboatError(f"{path} is not a block device")
    context = pyudev.Context()
    dev = pyudev.Devices.from_device_number(context, "block", st.st_rdev)
    if dev.device_type == "partition":
        from lifeboat.errors import LifeboatError

        raise LifeboatError(f"{path} is a partition; give the whole disk ({dev.find_parent('block', 'disk').device_node})")
    return _disk_from_udev(dev, _mounts_by_devnum(), boot_medium_devnums())


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

