"""The UEFI loader step of a system that boots through shim: shim + signed GRUB onto its ESP, checked there.

First the installed system's own grub-install --uefi-secure-boot in the chroot (Debian's way: it copies
shim-signed's shimx64.efi and mmx64.efi and grub-efi-amd64-signed's grubx64.efi into \\EFI\\<id>, with a
grub.cfg that finds /boot/grub); when the chroot cannot (no signed packages in it, grub-install fails, or
what it wrote is not signed), the live system's signed copies, with the same grub.cfg written here. What was
on the ESP before is put back when neither gives a signed pair: an unsigned GRUB is never left behind on a
system that booted through shim.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from lifeboat.boot import probe, shim
from lifeboat.boot.model import DONE, FAILED, LinuxSystem, Recorder
from lifeboat.errors import LifeboatError
from lifeboat.run import run

STEP = "shim + signed GRUB for UEFI (Secure Boot)"
KEEP = (shim.SHIM, shim.GRUB, shim.MM, "grub.cfg")
INSTALLED, LIVE = "the installed system's packages", "the live system's signed copies"


def _snapshot(esp_dir: str, rel_dir: str) -> dict[str, bytes | None]:
    """The loader files in `rel_dir` as they are now (None: absent), to put back if no signed pair results."""
    out: dict[str, bytes | None] = {}
    for name in KEEP:
        found = probe.find_ci(esp_dir, f"{rel_dir}/{name}")
        out[name] = Path(found).read_bytes() if found else None
    return out


def _put_back(esp_dir: str, rel_dir: str, before: dict[str, bytes | None]) -> None:
    target = probe.find_ci(esp_dir, rel_dir) or os.path.join(esp_dir, rel_dir)
    for name, data in before.items():
        path = probe.find_ci(target, name) or os.path.join(target, name)
        if data is None:
            if os.path.exists(path):
                os.unlink(path)
        else:
            with open(path, "wb") as f:
                f.write(data)
    os.sync()


def stub_config(system: LinuxSystem) -> str:
    """\\EFI\\<id>\\grub.cfg as Debian's grub-install writes it for the signed GRUB: find /boot by its
    filesystem's UUID and read the system's own /boot/grub/grub.cfg."""
    boot = system.boot or system.root
    prefix = "/grub" if system.boot is not None else "/boot/grub"
    return f"search.fs_uuid {boot.uuid} root\nset prefix=($root)'{prefix}'\nconfigfile $prefix/grub.cfg\n"


def fallback_writes(signed: shim.SignedSet) -> dict[str, str]:
    """What the removable fallback step writes: \\EFI\\BOOT\\BOOTX64.EFI (shim) with GRUB and MokManager."""
    writes = {"EFI/BOOT/BOOTX64.EFI": signed.shim, f"EFI/BOOT/{shim.GRUB}": signed.grub}
    if signed.mm:
        writes[f"EFI/BOOT/{shim.MM}"] = signed.mm
    return writes


def room_problem(esp_dir: str, system: LinuxSystem, signed: shim.SignedSet) -> str:
    """"" when the ESP has room for shim + GRUB in \\EFI\\<id> and in \\EFI\\BOOT, else what it lacks."""
    writes = {f"EFI/{system.efi_id}/{n}": src for n, src in signed.files().items()} | fallback_writes(signed)
    need, free = shim.bytes_needed(esp_dir, writes), shim.free_bytes(esp_dir)
    if need <= free:
        return ""
    esp = system.esp.path if system.esp else "the ESP"
    return (f"the ESP {esp} is too full for shim + signed GRUB: {shim.mib(free)} free, {shim.mib(need)} needed "
            f"(free at least {shim.mib(need - free)} on it, e.g. old loaders under \\EFI)")


def _chroot_install(system: LinuxSystem, root: str, rec: Recorder) -> tuple[shim.SignedSet | None, str]:
    """The installed system's grub-install --uefi-secure-boot. -> (its signed set if it ran, why not)."""
    own = shim.signed_set(root, INSTALLED)
    if own is None:
        return None, "the installed system has no shim-signed / grub-efi-amd64-signed files"
    if not all(os.path.exists(os.path.join(root, p)) for p in ("usr/sbin/grub-install", "bin/sh")):
        return None, "the installed system has no grub-install"
    try:
        run(["chroot", root, "grub-install", "--target=x86_64-efi", f"--efi-directory={system.esp_mountpoint}",
             f"--bootloader-id={system.efi_id}", "--no-nvram", "--uefi-secure-boot"], timeout=600)
    except LifeboatError as err:
        rec.log(f"the installed system's grub-install --uefi-secure-boot failed ({err}); "
                "trying the live system's signed copies", "warning")
        return None, f"its grub-install --uefi-secure-boot failed: {err}"
    return own, ""


def _copy_live(system: LinuxSystem, esp_dir: str, live: shim.SignedSet) -> None:
    rel = f"EFI/{system.efi_id}"
    target = probe.find_ci(esp_dir, rel) or os.path.join(esp_dir, rel)
    os.makedirs(target, exist_ok=True)
    for name, src in live.files().items():
        shutil.copyfile(src, probe.find_ci(target, name) or os.path.join(target, name))
    with open(probe.find_ci(target, "grub.cfg") or os.path.join(target, "grub.cfg"), "w") as f:
        f.write(stub_config(system))
    os.sync()


def install(system: LinuxSystem, root: str, esp_dir: str, rec: Recorder, live_base: str = "/") -> None:
    """The UEFI loader step for a system that boots through shim (`system.shim` says why)."""
    rec.start(STEP, system.shim)
    rel = f"EFI/{system.efi_id}"
    live = shim.signed_set(live_base, LIVE)
    sizing = shim.signed_set(root, INSTALLED) or live
    if sizing is None:
        rec.finish(STEP, FAILED, "neither the installed system nor the live system has shim-signed and "
                                 "grub-efi-amd64-signed: not installing an unsigned GRUB on a system that boots "
                                 "through shim")
        return
    room = room_problem(esp_dir, system, sizing)
    if room:
        rec.finish(STEP, FAILED, room)
        return
    before = _snapshot(esp_dir, rel)
    used, why = _chroot_install(system, root, rec)
    problems = shim.check_dir(esp_dir, rel, used) if used else []
    if used and not problems:
        rec.finish(STEP, DONE, f"with the installed system's grub-install --uefi-secure-boot (chroot); "
                               f"\\EFI\\{system.efi_id}\\{shim.SHIM} and {shim.GRUB} are signed and are "
                               "shim-signed's and grub-efi-amd64-signed's files")
        return
    if problems:
        why = "what its grub-install wrote is not the signed pair: " + "; ".join(problems)
        rec.log(why + "; trying the live system's signed copies", "warning")
    if live is None:
        _put_back(esp_dir, rel, before)
        rec.finish(STEP, FAILED, f"{why}; the live system has no signed shim + GRUB either: the ESP was put back as "
                                 "it was (an unsigned GRUB would not boot with Secure Boot on)")
        return
    try:
        _copy_live(system, esp_dir, live)
    except OSError as err:
        _put_back(esp_dir, rel, before)
        rec.finish(STEP, FAILED, f"{why}; copying the live system's signed shim + GRUB failed: {err}")
        return
    problems = shim.check_dir(esp_dir, rel, live)
    if problems:
        _put_back(esp_dir, rel, before)
        rec.finish(STEP, FAILED, "; ".join(problems) + ": the ESP was put back as it was")
    else:
        rec.finish(STEP, DONE, f"with {LIVE} ({why}); \\EFI\\{system.efi_id}\\{shim.SHIM} and {shim.GRUB} are "
                               "signed, grub.cfg finds /boot/grub")


def check_fallback(esp_dir: str, efi_id: str) -> list[str]:
    """Problems with \\EFI\\BOOT after copying a shim system's loaders there: BOOTX64.EFI must be its shim,
    grubx64.efi beside it its signed GRUB."""
    problems = []
    pairs = (("EFI/BOOT/BOOTX64.EFI", shim.SHIM), (f"EFI/BOOT/{shim.GRUB}", shim.GRUB))
    for dest, name in pairs:
        why = shim.check_signed(probe.find_ci(esp_dir, dest), probe.find_ci(esp_dir, f"EFI/{efi_id}/{name}"))
        if why:
            problems.append(f"\\{dest.replace('/', chr(92))} {why}")
    return problems
