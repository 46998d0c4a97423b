"""In the live ISO under QEMU, a capture of a LUKS2 container and a restore, both driven through the TUI over
the serial console; the restored disk then boots alone.

The live kernel is started directly with the serial-console entry's parameters (console=ttyS0 last: Lifeboat
runs there, 80x24), the ISO attached as the CD it runs from, plus three disks: a repository disk (GPT, one
ext4 partition, the repository in its `lifeboat/` directory, holding an image of the GPT fixture disk
captured on the host), a disk whose partition is a LUKS2 container (made on the host: tui_luks.py) and a
blank NVMe target a little bigger than the fixture. QEMU's serial port is its stdio, run under pexpect;
every byte goes into a pyte screen, and each step waits for screen text:

    Home → o (the picker finds the repository on the unmounted partition)
    → c → the LUKS disk → name → repository → level → the container's passphrase, a wrong one first (masked,
      said, asked again) → the plan → `plaintext` typed → "Done" → s: the shell checks the log → exit
    → r → the image → the target (highlighted by its serial) → the plan → the target's name typed → progress
      → "Done" → Ctrl+P, y

The capture's checks are in tui_luks.py (the image read on the host after power-off; the passphrase in no
file, no log line and no byte of the serial output). The LUKS part adds about 55 s to the test (paired runs
here: 130 s → 187 s wall, 123 s → 179 s CPU).

The result must be "Done" (every step, the bootloader step's GRUB for BIOS and UEFI included). The guest
powers itself off; the target file is then booted alone under SeaBIOS and OVMF (empty NVRAM) to the
fixture's marker. TCG only; every QEMU bounded by timeouts and killed by PID.
"""

from __future__ import annotations

import re
import tempfile
import time
from pathlib import Path

import pexpect
import pytest

import bootdisk
import bootvm
import qemu
import tui_luks
from iso_helpers import BOOT_TIMEOUT, LIVE_APPEND, blank_disk, gpt_disk_holding, partition_file
from serial_tui import SerialTerminal

pytestmark = qemu.vm_marks("needs root (loop mounts for the repository disk)")

IMAGE = "fixture-gpt"
REPO_LABEL = "LBTUIREPO"
TARGET_SERIAL = "LBTUITARGET"
APPEND = f"{LIVE_APPEND} console=tty0 console=ttyS0,115200"
HOME = "Disks (3)"
TUI_TIMEOUT = 180  # Textual's first screen and each step under TCG on a loaded machine
JOB_TIMEOUT = 600  # restore (100 MiB disk) + the bootloader step


def repository_disk(path: Path, source: Path, size_mib: int = 192) -> Path:
    """A GPT disk with one ext4 partition labelled REPO_LABEL; the repository is its `lifeboat/` directory
    (one of the places the TUI's picker looks). The filesystem is filled as a file of its own, then copied
    into place: no partition loop devices."""
    part = partition_file(path, size_mib)
    bootdisk.sh("mkfs.ext4", "-q", "-F", "-L", REPO_LABEL, part)
    with tempfile.TemporaryDirectory() as mnt:
        bootdisk.sh("mount", "-o", "loop", part, mnt)
        try:
            bootvm.capture(source, IMAGE, Path(mnt) / "lifeboat")
            assert (Path(mnt) / "lifeboat" / "lifeboat-repo.json").is_file()
        finally:
            bootdisk.sh("umount", mnt)
    return gpt_disk_holding(path, part, size_mib)


def _step(label: str, started: float) -> None:
    print(f"  {time.monotonic() - started:6.0f}s  {label}", flush=True)


@pytest.mark.timeout(1800)  # a cold ISO build comes first; the test itself takes 3-8 minutes
def test_restore_through_the_tui_on_the_serial_console_then_boots(live_iso, live_kernel, lifeboat_version,
                                                                   tmp_path):
    source = bootdisk.fixture_disk("gpt")
    repo = repository_disk(tmp_path / "repo.img", source)
    luks_source, luks_used = tui_luks.source_disk(tmp_path / "luks.img")
    target = blank_disk(tmp_path / "target.img", 128)  # the fixture is 100 MiB: its last partition grows
    kernel, initrd = live_kernel
    drives = [
        qemu.Drive(live_iso, "sata", media="cdrom"),
        qemu.Drive(repo, "virtio", serial=REPO_LABEL),
        qemu.Drive(luks_source, "virtio", serial=tui_luks.SERIAL),
        qemu.Drive(target, "nvme", serial=TARGET_SERIAL),
    ]
    machine = qemu.Machine(drives, firmware="bios", workdir=tmp_path, memory=1536, kernel=kernel,
                           initrd=initrd, append=APPEND, name="tui-serial")
    argv = machine.argv()
    (tmp_path / "tui-serial-argv.txt").write_text(" ".join(argv) + "\n")
    started = time.monotonic()
    term = SerialTerminal.spawn(argv, log=tmp_path / "tui-serial-serial.log")
    try:
        ready = rf"LIFEBOAT-READY version={re.escape(lifeboat_version)} tty=ttyS0 mode=tui"
        term.expect_raw(re.compile(ready.encode()), BOOT_TIMEOUT)
        _step("LIFEBOAT-READY on ttyS0", started)
        term.wait_for(HOME, TUI_TIMEOUT)  # the target, the repository and the LUKS disk; the CD is not listed
        _step("home screen", started)

        term.keys("o")
        term.wait_for("Choose the image repository", TUI_TIMEOUT)
        term.choose(f"'{REPO_LABEL}'", TUI_TIMEOUT)  # "/dev/vda1 ext4 'LBTUIREPO' on … (mounted when chosen)"
        repo_path = term.wait_for(re.compile(r"Images in (/\S+/lifeboat)"), TUI_TIMEOUT).group(1)
        term.wait_for(IMAGE, TUI_TIMEOUT)
        _step("repository chosen", started)

        luks_image = tui_luks.capture(term, repo_path, TUI_TIMEOUT, JOB_TIMEOUT, lambda s: _step(s, started))
        tui_luks.check_guest(term, HOME, luks_image, TUI_TIMEOUT)
        _step("guest log checked", started)

        term.keys("r")
        term.wait_for("Restore: choose an image", TUI_TIMEOUT)
        term.choose(IMAGE, TUI_TIMEOUT)
        targets = term.wait_for(re.compile(r"choose the target disk(.|\n)*s/n " + TARGET_SERIAL), TUI_TIMEOUT)
        assert targets
        term.choose(f"s/n {TARGET_SERIAL}", TUI_TIMEOUT)
        plan = term.wait_for(re.compile(r"after the restore"), TUI_TIMEOUT)
        assert plan
        term.wait_for("Enter to go on", TUI_TIMEOUT)  # the plan is worked out: Enter is bound now
        _step("plan", started)
        term.keys("Enter")
        name = term.wait_for(re.compile(r"Type (\S+) and press Enter"), TUI_TIMEOUT).group(1)
        assert name.startswith("nvme"), term.text()
        term.keys(name, "Enter")
        term.wait_for(f"Restoring {IMAGE} to {name}", TUI_TIMEOUT)
        _step(f"restoring to {name}", started)

        verdict = term.wait_for(re.compile(rf"(\w[\w ,]*): Restoring {IMAGE} to {name}\n"), JOB_TIMEOUT).group(1)
        term.wait_for("Power off", TUI_TIMEOUT)  # the result screen's footer: it is drawn in pieces
        term.settle(1.5)
        result = term.text()
        _step(f"result: {verdict}", started)
        print(result)
        # "Done" only when no step failed: the data, the growth and every bootloader step (the fixture has
        # no grub-install of its own: the live system's GRUB is installed for BIOS and for UEFI).
        assert verdict == "Done", f"the restore did not end well:\n{result}"
        for line in ("every chunk's hash was checked", "GRUB for BIOS (i386-pc): done",
                     "GRUB for UEFI (x86_64-efi): done"):
            assert line in result, f"{line!r} is not on the result screen:\n{result}"

        term.keys("\x10")  # Ctrl+P: power off, asked first
        term.wait_for("Switch the computer off now?", TUI_TIMEOUT)
        term.keys("y")
        term.child.expect(pexpect.EOF, timeout=180)
        _step("guest powered off", started)
    finally:
        term.kill()

    tui_luks.check_serial_output(tmp_path / "tui-serial-serial.log")
    tui_luks.check_repository(repo, "lifeboat", luks_image, luks_used)
    _step("LUKS image checked on the host", started)

    for firmware in ("bios", "uefi"):
        booted = bootvm.boot(target, "nvme", firmware, bootvm.FIXTURE_RE, tmp_path, f"tui-restored-{firmware}",
                             timeout=300)
        assert bootvm.FIXTURE_RE.search(booted.output).group(2) == firmware
        _step(f"restored disk booted under {firmware} ({booted.seconds:.0f}s)", started)
