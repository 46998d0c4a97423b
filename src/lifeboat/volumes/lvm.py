"""lvm2 on the live system: read volume groups, back up and restore their metadata, activate and
deactivate them, recreate physical volumes. Every command names the devices it may look at
(`--devices`), so another disk's volume group of the same name, or a duplicate of the source's PVs,
never takes part.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence

from lifeboat.errors import LifeboatError
from lifeboat.run import run
from lifeboat.volumes.lvm_model import LV_FIELDS, PV_FIELDS, REPORT_ARGS, VG_FIELDS, VolumeGroup, parse_reports


def _lvm(command: str, devices: Sequence[str], *args: str, check: bool = True, config: str = ""):
    argv = ["lvm", command, "--devices", ",".join(devices)]
    if config:
        argv += ["--config", config]
    return run([*argv, *args], check=check, timeout=300)


def device_mapper() -> bool:
    """Whether the kernel's device-mapper answers (lvm2 loads it when it can): without it no volume can be
    activated, so none can be read or written one by one."""
    return "Driver version:" in run(["lvm", "version"], check=False, timeout=60).stdout


def read_groups(devices: Sequence[str]) -> list[VolumeGroup]:
    """The volume groups whose PVs are among `devices`, as lvm2 reports them (nothing is activated)."""
    vgs = _lvm("vgs", devices, *REPORT_ARGS, "-o", VG_FIELDS).stdout
    pvs = _lvm("pvs", devices, *REPORT_ARGS, "-o", PV_FIELDS).stdout
    lvs = _lvm("lvs", devices, *REPORT_ARGS, "--segments", "-a", "-o", LV_FIELDS).stdout
    return parse_reports(vgs, pvs, lvs)


def backup_metadata(vg: str, devices: Sequence[str]) -> bytes:
    """vgcfgbackup's text of `vg` (the file `vgcfgrestore` reads)."""
    with tempfile.TemporaryDirectory(prefix="lifeboat-lvm-") as tmp:
        path = os.path.join(tmp, f"{vg}.vg")
        _lvm("vgcfgbackup", devices, "-f", path, vg)
        with open(path, "rb") as f:
            return f.read()


def node(vg: str, lv: str) -> str:
    """The device-mapper node of an active LV (lvm2 doubles dashes in the names)."""
    return f"/dev/mapper/{vg.replace('-', '--')}-{lv.replace('-', '--')}"


def activate(vg: str, devices: Sequence[str], *, read_only: bool) -> None:
    """Activate every LV of `vg`; read-only in the kernel (the metadata is not changed) when asked."""
    config = f'activation {{ read_only_volume_list = [ "{vg}" ] }}' if read_only else ""
    _lvm("vgchange", devices, "-ay", "--activationmode", "complete", vg, config=config)


def deactivate(vg: str, devices: Sequence[str]) -> None:
    run(["udevadm", "settle", "--timeout=30"], check=False)  # udev may still hold a node it is probing
    proc = _lvm("vgchange", devices, "-an", vg, check=False)
    if proc.returncode != 0:
        run(["udevadm", "settle", "--timeout=30"], check=False)
        _lvm("vgchange", devices, "-an", vg)


def _lv_states(vg: str, devices: Sequence[str]) -> dict[str, bool]:
    """Visible LV name -> active."""
    return {lv.name: lv.active for g in read_groups(devices) if g.name == vg for lv in g.visible_lvs}


@contextlib.contextmanager
def activated(vg: str, devices: Sequence[str], *, read_only: bool) -> Iterator[bool]:
    """Every LV of `vg` active for the block; afterwards, on error too, the ones this activated are
    deactivated again (what something else had activated is left as it was). Yields whether any LV was
    already active."""
    states = _lv_states(vg, devices)
    before = {name for name, active in states.items() if active}
    if len(before) == len(states):  # nothing to activate (or a group without volumes)
        yield bool(before)
        return
    activate(vg, devices, read_only=read_only)
    try:
        yield bool(before)
    finally:
        if not before:
            deactivate(vg, devices)
        else:
            run(["udevadm", "settle", "--timeout=30"], check=False)
            for name in sorted(set(states) - before):
                _lvm("lvchange", devices, "-an", f"{vg}/{name}")


def groups_elsewhere(exclude: Sequence[str]) -> dict[str, list[str]]:
    """Volume group name -> its PVs, for every PV this machine's lvm2 sees outside `exclude` (device
    nodes, resolved)."""
    skip = {os.path.realpath(d) for d in exclude}
    proc = run(["lvm", "pvs", "--noheadings", "--separator", "|", "-o", "pv_name,vg_name"], check=False, timeout=300)
    found: dict[str, list[str]] = {}
    for line in proc.stdout.splitlines():
        name, _, vg = (x.strip() for x in line.partition("|"))
        if vg and os.path.realpath(name) not in skip:
            found.setdefault(vg, []).append(name)
    return found


def create_pv(device: str, uuid: str, metadata_file: str) -> None:
    """A PV on `device` with the UUID and the data area position recorded in the metadata file."""
    _lvm("pvcreate", [device], "-ff", "-y", "--uuid", uuid, "--restorefile", metadata_file, device)


def restore_metadata(vg: str, devices: Sequence[str], metadata_file: str) -> None:
    _lvm("vgcfgrestore", devices, "-f", metadata_file, vg)


def import_clone(devices: Sequence[str], name: str) -> None:
    """Rename the group on `devices` to `name` with new PV and VG UUIDs (the LVs keep theirs)."""
    _lvm("vgimportclone", devices, "--basevgname", name, *devices)


def resize_pv(device: str) -> None:
    """Let the PV use its whole (larger) partition."""
    _lvm("pvresize", [device], device)


def extend_lv(vg: str, lv: str, extents: int, devices: Sequence[str]) -> None:
    """Set `vg/lv` to `extents` extents (only ever larger)."""
    _lvm("lvextend", devices, "-l", str(extents), f"{vg}/{lv}")


def free_extents(vg: str, devices: Sequence[str]) -> int:
    for group in read_groups(devices):
        if group.name == vg:
            return group.free
    raise LifeboatError(f"volume group {vg} is not on {', '.join(devices)}")
