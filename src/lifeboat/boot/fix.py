"""bootfix: make the installed systems on a disk boot again, and say honestly what was done.

For each GRUB-booted Linux root: mount it (and its /boot and ESP as its restored fstab says), bind-mount
/dev /proc /sys /run, run the system's own grub-install for every firmware it was set up for and its
update-grub in a chroot; when the chroot cannot run them, use the live system's GRUB. Then the removable
fallback \\EFI\\BOOT\\BOOTX64.EFI, and under UEFI the firmware boot entry. Every "done" is checked: boot
code in the MBR, core.img where boot.img looks for it, loader files on the ESP, the NVRAM entry listed.
"""

from __future__ import annotations

import os
import shutil

from lifeboat import locks, secureboot
from lifeboat.boot import detect, efi, luks_roots, lvm_roots, probe, shim, signed
from lifeboat.boot.model import (DONE, FAILED, NEEDS_PASSPHRASE, NOT_NEEDED, LinuxSystem, Recorder, StepOutcome,
                                 WindowsLoader)
from lifeboat.devices import Disk, Partition, disk_info, with_layout
from lifeboat.events import LogLine, Outcome, ProgressSink, discard
from lifeboat.errors import LifeboatError, UnsafeTarget
from lifeboat.layout.model import DiskLayout
from lifeboat.layout.read import read_layout
from lifeboat.layout.write import ensure_partitions
from lifeboat.mounts import MountStack
from lifeboat.run import run
from lifeboat.volumes.luks import LuksKey

NO_SYSTEM = "no GRUB-booted Linux root and no Windows boot manager found on this disk"
# What "nothing found" means: bootfix was asked to repair something, the restore's step only to keep it bootable.
NOT_FOUND = {FAILED: NO_SYSTEM, NOT_NEEDED: f"{NO_SYSTEM}: a data disk needs no bootloader"}


def target_disk(disk_path: str, layout: DiskLayout | None = None) -> Disk:
    """The disk to work on, from `devices` and the given layout (the one a restore just wrote) or, for
    bootfix, the table read now. Refused when devices says it must not be written (mounted, in use...)."""
    disk = disk_info(disk_path)
    if disk.unsafe_reason:
        raise UnsafeTarget(f"refusing to write to {disk.path}: {disk.unsafe_reason}")
    if layout is None:
        layout = read_layout(disk_path)
        ensure_partitions(disk_path, layout)
    return with_layout(disk, layout)


def bootfix(disk_path: str, progress: ProgressSink = discard, key: LuksKey | None = None) -> list[StepOutcome]:
    """Reinstall the bootloaders of the systems on `disk_path`. A disk without any is a failure here: the
    user asked for a repair and nothing could be repaired. `key` opens the disk's LUKS containers (the TUI asks
    for it, the CLI reads --luks-passphrase-file); without it each is a needs-passphrase step."""
    rec = Recorder(progress)
    rec.start("detect", disk_path)
    try:
        disk_info(disk_path)  # a missing path or a plain file is refused before anything is opened
    except LifeboatError as err:
        rec.finish("detect", FAILED, str(err))
        return rec.outcomes
    with locks.holding_disk(disk_path):  # grub-install closing the disk must not make udev drop its partitions
        try:
            disk = target_disk(disk_path)
        except LifeboatError as err:
            rec.finish("detect", FAILED, str(err))
            return rec.outcomes
        return _fix(disk, rec, no_system=FAILED, key=key)


def after_restore(disk_path: str, layout: DiskLayout, progress: ProgressSink = discard,
                  key: LuksKey | None = None) -> list[StepOutcome]:
    """The restore's bootloader step on the disk it has just written with `layout` (the caller holds the
    disk): the same as bootfix, except that a disk with no system on it needs no bootloader (not-needed).
    `key`: the restore's LUKS passphrase, when it was given one.

    The restore reports each returned outcome itself (as "bootloader: <step>"), so only log lines are
    passed on here; step events would be reported twice."""
    rec = Recorder(lambda event: progress(event) if isinstance(event, LogLine) else None)
    try:
        disk = target_disk(disk_path, layout)
    except LifeboatError as err:
        rec.finish("detect", FAILED, str(err))
        return rec.outcomes
    return _fix(disk, rec, no_system=NOT_NEEDED, key=key)


def _fix(disk: Disk, rec: Recorder, no_system: Outcome, key: LuksKey | None = None) -> list[StepOutcome]:
    """Detect and fix, with the disk's LUKS containers open and its LVM volume groups (on partitions or inside
    the containers) active throughout; each deactivated and closed afterwards, reported."""
    names = _crypttab_names(disk, key, rec)
    if names is None:  # a container the passphrase does not open: nothing is written
        return rec.outcomes
    with luks_roots.opened(disk, key, rec, names) as sealed, lvm_roots.opened(disk, rec, sealed.pvs) as groups:
        if sealed.failed:
            return rec.outcomes
        found = detect.find_systems(disk, rec.log, [*sealed.volumes, *groups.volumes])
        found.unreadable[:0] = groups.unreadable
        _fix_found(disk, found, rec, no_system, sealed.locked)
    return rec.outcomes


def _crypttab_names(disk: Disk, key: LuksKey | None, rec: Recorder) -> dict[str, str] | None:
    """A first, read-only look into the disk's LUKS containers (opened under Lifeboat's names, closed again):
    the names the installed systems' /etc/crypttab give them. None when one could not be opened (its failed
    step reported)."""
    if key is None or not luks_roots.containers(disk):
        return {}
    look = Recorder(lambda event: rec.progress(event) if isinstance(event, LogLine) else None)
    with luks_roots.opened(disk, key, look) as sealed, lvm_roots.opened(disk, look, sealed.pvs) as groups:
        found = None if sealed.failed else detect.find_systems(disk, lambda *_: None,  # said again in pass 2
                                                               [*sealed.volumes, *groups.volumes])
    failed = [o for o in look.outcomes if o.outcome == FAILED]
    for o in failed:
        rec.start(o.step)
        rec.finish(o.step, o.outcome, o.detail)
    if found is None or failed:
        return None
    return luks_roots.crypttab_names(found.linux, disk, rec.log)


def _fix_found(disk: Disk, found: detect.Findings, rec: Recorder, no_system: Outcome,
               locked: list[str] | None = None) -> None:
    if found.unreadable and not (found.linux or found.windows):
        rec.finish("detect", FAILED, "could not look into " + "; ".join(found.unreadable))
        return
    names = ([f"{s.name} on {s.where}" for s in found.linux]
             + [f"Windows boot manager on {w.esp.path}" for w in found.windows])
    if not names and locked:  # the system may well be inside: not a failure, the passphrase is missing
        rec.finish("detect", NEEDS_PASSPHRASE, f"no system outside the locked LUKS container(s) {', '.join(locked)}; "
                                               f"give the passphrase ({luks_roots.OPTION}) to look inside")
        return
    if not names:
        rec.finish("detect", no_system, NOT_FOUND[no_system])
        return
    if found.unreadable:
        names.append("could not look into " + "; ".join(found.unreadable))
    if locked:
        names.append("not looked into (no passphrase): " + ", ".join(locked))
    rec.finish("detect", DONE, "; ".join(names))
    refused = detect.shared_boots(found.linux)
    for system in found.linux:
        if system.where in refused:
            rec.start(f"mount {system.root.path}", system.name)
            rec.finish(f"mount {system.root.path}", FAILED, refused[system.where])
        else:
            _fix_linux(disk, system, rec, windows_present=bool(found.windows))
    if found.windows and not found.linux:
        for loader in found.windows:
            _fix_windows(disk, loader, rec)


# ---- Linux ----------------------------------------------------------------------------------------------
def _chroot_has(root: str, *rel: str) -> bool:
    return all(os.path.exists(os.path.join(root, r.lstrip("/"))) for r in rel)


def _fix_linux(disk: Disk, system: LinuxSystem, rec: Recorder, windows_present: bool) -> None:
    tag = system.root.path
    with MountStack() as m:
        root = m.tempdir("lifeboat-bootfix-")
        try:
            rec.start(f"mount {tag}", system.name)
            m.mount(system.root.path, root, fstype=system.root.fstype, options=system.root_options)
            if system.boot is not None:
                m.mount(system.boot.path, os.path.join(root, "boot"), fstype=system.boot.fstype,
                        options=f"subvol={system.boot_subvol}" if system.boot_subvol else None)
            esp_dir = None
            if system.esp is not None:
                esp_dir = os.path.join(root, system.esp_mountpoint.lstrip("/"))
                m.mount(system.esp.path, esp_dir, fstype="vfat")
            for d in ("dev", "proc", "sys", "run"):
                if os.path.isdir(os.path.join(root, d)):
                    m.mount(f"/{d}", os.path.join(root, d), bind=True)
            system.shim = shim.shim_evidence(root, esp_dir, system.efi_id) if esp_dir else ""
            rec.finish(f"mount {tag}", DONE,
                       f"root {system.where}" + (f", ESP {system.esp.path} at {system.esp_mountpoint}"
                                                     if system.esp else ""))
        except LifeboatError as err:
            rec.finish(f"mount {tag}", FAILED, str(err))
            return
        _grub_bios(disk, system, root, rec)
        if system.shim and esp_dir:
            signed.install(system, root, esp_dir, rec)
        else:
            _grub_efi(disk, system, root, esp_dir, rec)
        _update_grub(system, root, rec)
        if esp_dir:
            _removable_fallback(system, root, esp_dir, rec, windows_present)
            _nvram_linux(disk, system, esp_dir, rec)
        else:
            rec.finish("NVRAM entry", NOT_NEEDED, "no ESP on this disk: BIOS boot only")


def _install(system: LinuxSystem, root: str, target: str, chroot_args: list[str], live_args: list[str],
             rec: Recorder) -> tuple[bool, str]:
    """Run the system's own grub-install in the chroot; fall back to the live system's. -> (ok, how)."""
    why = ""
    if _chroot_has(root, "usr/sbin/grub-install", f"usr/lib/grub/{target}", "bin/sh"):
        try:
            run(["chroot", root, "grub-install", f"--target={target}", *chroot_args])
            return True, "the installed system's grub-install (chroot)"
        except LifeboatError as err:
            why = f"the installed system's grub-install failed ({err})"
            rec.log(why + "; trying the live system's GRUB", "warning")
    else:
        why = f"the installed system has no grub-install for {target}"
    try:
        run(["grub-install", f"--target={target}", *live_args])
        return True, f"the live system's grub-install ({why})"
    except LifeboatError as err:
        return False, f"{why}; the live system's grub-install failed too: {err}"


def _grub_bios(disk: Disk, system: LinuxSystem, root: str, rec: Recorder) -> None:
    step = "GRUB for BIOS (i386-pc)"
    rec.start(step, disk.path)
    if not system.bios:
        rec.finish(step, NOT_NEEDED, system.why_not_bios or "not set up for BIOS")
        return
    ok, how = _install(system, root, "i386-pc", [disk.path],
                       [f"--boot-directory={root}/boot", disk.path], rec)
    if not ok:
        rec.finish(step, FAILED, how)
        return
    run(["sync"], check=False)
    state = probe.mbr_boot_code_state(probe.read_sectors(disk.path, 0))
    core_ok, core_detail = probe.bios_core_present(disk)
    if state != "grub" or not core_ok:
        rec.finish(step, FAILED, f"after grub-install the MBR boot code is {state!r}; {core_detail}")
    else:
        rec.finish(step, DONE, f"with {how}; MBR holds GRUB's boot code; {core_detail}")


def _grub_efi(disk: Disk, system: LinuxSystem, root: str, esp_dir: str | None, rec: Recorder) -> None:
    step = "GRUB for UEFI (x86_64-efi)"
    rec.start(step, disk.path)
    if not system.efi or esp_dir is None:
        rec.finish(step, NOT_NEEDED, "no ESP on this disk")
        return
    common = [f"--bootloader-id={system.efi_id}", "--no-nvram"]
    ok, how = _install(system, root, "x86_64-efi", [f"--efi-directory={system.esp_mountpoint}", *common],
                       [f"--efi-directory={esp_dir}", f"--boot-directory={root}/boot", *common], rec)
    if not ok:
        rec.finish(step, FAILED, how)
        return
    loader = _linux_loader(system, esp_dir)
    if loader is None:
        rec.finish(step, FAILED, f"grub-install ran but no loader is in \\EFI\\{system.efi_id} on the ESP")
    else:
        rec.finish(step, DONE, f"with {how}; {loader} is on the ESP" + unsigned_warning())


def unsigned_warning() -> str:
    """What an unsigned GRUB means on this machine: nothing when it did not boot with Secure Boot on."""
    if secureboot.state() != secureboot.SecureBoot.ON:
        return ""
    return (f"; {shim.Chain.UNSIGNED}: this machine has Secure Boot on and the installed system has no shim "
            "(install shim-signed and grub-efi-amd64-signed in it, or turn Secure Boot off in the firmware)")


def _linux_loader(system: LinuxSystem, esp_dir: str) -> str | None:
    """The ESP path (\\EFI\\debian\\shimx64.efi or grubx64.efi) firmware should start, if it is there."""
    for name in ("shimx64.efi", "grubx64.efi"):
        found = probe.find_ci(esp_dir, f"EFI/{system.efi_id}/{name}")
        if found and probe.is_pe_file(found):
            return "\\" + os.path.relpath(found, esp_dir).replace("/", "\\")
    return None


def _update_grub(system: LinuxSystem, root: str, rec: Recorder) -> None:
    step = "update-grub"
    rec.start(step, system.name)
    for tool in ("usr/sbin/update-grub", "usr/sbin/grub-mkconfig"):
        if _chroot_has(root, tool, "bin/sh"):
            argv = ["chroot", root, "/" + tool] + ([] if tool.endswith("update-grub") else ["-o", "/boot/grub/grub.cfg"])
            try:
                run(argv, timeout=600)
            except LifeboatError as err:
                rec.finish(step, FAILED, str(err))
                return
            cfg = os.path.join(root, "boot/grub/grub.cfg")
            if os.path.isfile(cfg) and os.path.getsize(cfg) > 0:
                rec.finish(step, DONE, f"/{tool} in the chroot wrote /boot/grub/grub.cfg")
            else:
                rec.finish(step, FAILED, f"/{tool} ran but /boot/grub/grub.cfg is missing or empty")
            return
    if os.path.isfile(os.path.join(root, "boot/grub/grub.cfg")):
        rec.finish(step, NOT_NEEDED, "the installed system has no update-grub; its /boot/grub/grub.cfg is kept")
    else:
        rec.finish(step, FAILED, "no update-grub in the installed system and no /boot/grub/grub.cfg")


FALLBACK = "EFI/BOOT/BOOTX64.EFI"


def _removable_fallback(system: LinuxSystem, root: str, esp_dir: str, rec: Recorder, windows_present: bool) -> None:
    step = "removable fallback \\EFI\\BOOT\\BOOTX64.EFI"
    rec.start(step)
    existing = probe.find_ci(esp_dir, FALLBACK)
    if windows_present and existing and probe.is_pe_file(existing):
        rec.finish(step, NOT_NEEDED, "kept the existing fallback loader: Windows is on this disk too")
        return
    loader = _linux_loader(system, esp_dir)
    if loader is None:
        rec.finish(step, FAILED, f"no GRUB loader in \\EFI\\{system.efi_id} to copy")
        return
    if system.shim and not loader.lower().endswith(shim.SHIM):
        rec.finish(step, FAILED, f"the system boots through shim but \\EFI\\{system.efi_id} has no signed shim: "
                                 f"not copying an unsigned {loader} as the fallback")
        return
    src_dir = os.path.dirname(os.path.join(esp_dir, loader.lstrip("\\").replace("\\", "/")))
    boot_dir = probe.find_ci(esp_dir, "EFI/BOOT") or os.path.join(esp_dir, "EFI", "BOOT")
    try:
        os.makedirs(boot_dir, exist_ok=True)
        names = os.listdir(src_dir)
        first = "shimx64.efi" if any(n.lower() == "shimx64.efi" for n in names) else "grubx64.efi"
        for name in names:
            low = name.lower()
            if low == first:
                shutil.copyfile(os.path.join(src_dir, name), os.path.join(boot_dir, "BOOTX64.EFI"))
            elif low == "grub.cfg" or (first == "shimx64.efi" and low in ("grubx64.efi", "mmx64.efi")):
                shutil.copyfile(os.path.join(src_dir, name), os.path.join(boot_dir, name))
        os.sync()
    except OSError as err:
        rec.finish(step, FAILED, f"copying the loader failed: {err}")
        return
    check = probe.find_ci(esp_dir, FALLBACK)
    problems = signed.check_fallback(esp_dir, system.efi_id) if system.shim else []
    if problems:
        rec.finish(step, FAILED, "; ".join(problems))
    elif system.shim and check:
        rec.finish(step, DONE, f"copied {loader} with grubx64.efi and mmx64.efi beside it ({shim.Chain.SHIM}: "
                               "signed, firmware with empty NVRAM boots this)")
    elif check and probe.is_pe_file(check):
        rec.finish(step, DONE, f"copied {loader} (firmware with empty NVRAM boots this)" + unsigned_warning())
    else:
        rec.finish(step, FAILED, "\\EFI\\BOOT\\BOOTX64.EFI is not a valid loader after copying")


def _nvram(disk: Disk, esp: Partition, label: str, loader: str, rec: Recorder) -> None:
    step = "NVRAM entry"
    rec.start(step, f"{label}: {loader}")
    if not efi.booted_under_uefi():
        rec.finish(step, NOT_NEEDED, "booted under BIOS: there is no firmware boot list to write; UEFI firmware "
                                     "with empty NVRAM finds \\EFI\\BOOT\\BOOTX64.EFI")
        return
    try:
        efi.create_entry(disk.path, esp.number, label, loader)
        entry = efi.entry_for(loader, efi.list_entries(), esp.partuuid)
    except LifeboatError as err:
        rec.finish(step, FAILED, str(err))
        return
    if entry is None:
        rec.finish(step, FAILED, f"efibootmgr ran but no entry for {loader} is listed")
    else:
        rec.finish(step, DONE, f"Boot{entry.num} \"{entry.label}\" -> {loader} on {esp.path}")


def _nvram_linux(disk: Disk, system: LinuxSystem, esp_dir: str, rec: Recorder) -> None:
    loader = _linux_loader(system, esp_dir)
    if loader is None or system.esp is None:
        rec.start("NVRAM entry")
        rec.finish("NVRAM entry", FAILED, "no GRUB loader on the ESP to point an entry at")
        return
    if system.shim and not loader.lower().endswith(shim.SHIM):
        rec.start("NVRAM entry")
        rec.finish("NVRAM entry", FAILED, f"the system boots through shim but {loader} is not shim: no entry written")
        return
    _nvram(disk, system.esp, system.efi_id.capitalize() if system.efi_id != "debian" else "debian", loader, rec)


# ---- Windows ------------------------------------------------------------------------------------------
def _fix_windows(disk: Disk, win: WindowsLoader, rec: Recorder) -> None:
    """Windows-only disk: no GRUB. Restore kept boot code, signature, GUIDs and offsets (so the BCD's
    references hold); here: the removable fallback if it is missing, and the firmware entry."""
    step = "removable fallback \\EFI\\BOOT\\BOOTX64.EFI"
    rec.start(step, "Windows")
    with MountStack() as m:
        esp_dir = m.tempdir("lifeboat-bootfix-")
        try:
            m.mount(win.esp.path, esp_dir, fstype="vfat")
        except LifeboatError as err:
            rec.finish(step, FAILED, f"cannot mount the ESP: {err}")
            return
        existing = probe.find_ci(esp_dir, FALLBACK)
        if existing and probe.is_pe_file(existing):
            rec.finish(step, NOT_NEEDED, "already present")
        else:
            src = probe.find_ci(esp_dir, detect.WINDOWS_LOADER)
            try:
                boot_dir = probe.find_ci(esp_dir, "EFI/Boot") or os.path.join(esp_dir, "EFI", "Boot")
                os.makedirs(boot_dir, exist_ok=True)
                shutil.copyfile(src, os.path.join(boot_dir, "bootx64.efi"))
                os.sync()
                ok = probe.is_pe_file(os.path.join(boot_dir, "bootx64.efi"))
                rec.finish(step, DONE if ok else FAILED,
                           "copied \\EFI\\Microsoft\\Boot\\bootmgfw.efi" if ok else "copy is not a valid loader")
            except OSError as err:
                rec.finish(step, FAILED, str(err))
    _nvram(disk, win.esp, "Windows Boot Manager", win.path, rec)


def exit_code(outcomes: list[StepOutcome]) -> int:
    return 1 if not outcomes or any(o.outcome == FAILED for o in outcomes) else 0

