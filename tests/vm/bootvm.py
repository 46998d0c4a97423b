"""Helpers of the boot tests (tests/vm/test_boot*.py): boot a disk alone and wait for its marker, break a
disk's bootloader, and run bootfix inside the rescue guest (FAT can only be mounted in a guest here)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import bootdisk
import qemu

SRC = Path(__file__).resolve().parents[2] / "src" / "lifeboat"
FIXTURE_RE = re.compile(bootdisk.MARKER + r" name=(\S+) firmware=(\S+)\r?\n")
LOGIN_RE = re.compile(re.escape(bootdisk.LOGIN_PROMPT))
UEFI_GAVE_UP = "EFI Internal Shell"  # OVMF found nothing to boot on the disk and starts its shell
JOB_EXIT_RE = re.compile(r"LIFEBOAT-JOB-EXIT=(\d+)")


@dataclass
class Boot:
    seconds: float
    output: str


def boot(image: Path, interface: str, firmware: str, expect: re.Pattern, workdir: Path, name: str,
         timeout: float = 300, vars_file: Path | None = None, snapshot: bool = True, sector_size: int = 512) -> Boot:
    """Boot `image` as the only disk; wait for `expect`; return the time it took and the serial log."""
    drive = qemu.Drive(image, interface, serial="LBBOOT", snapshot=snapshot, sector_size=sector_size)
    with qemu.Machine([drive], firmware=firmware,
                      workdir=workdir, name=name, vars_file=vars_file) as vm:
        vm.wait_for(expect, timeout)
        return Boot(vm.elapsed(), vm.output)


def does_not_boot(image: Path, interface: str, firmware: str, workdir: Path, name: str,
                  window: float = 45) -> str:
    """Assert that neither the fixture marker, GRUB nor a login prompt appears. Under UEFI we wait for
    OVMF to give up (its shell starts); SeaBIOS says nothing on the serial port, so there we watch a
    window several times longer than a good boot takes to reach GRUB."""
    anything = re.compile(f"{FIXTURE_RE.pattern}|{LOGIN_RE.pattern}|GRUB|Linux version")
    with qemu.Machine([qemu.Drive(image, interface, serial="LBBOOT", snapshot=True)], firmware=firmware,
                      workdir=workdir, name=name) as vm:
        if firmware == "uefi":
            vm.wait_for(UEFI_GAVE_UP, window * 4)  # BootTimeout here fails the test: OVMF never gave up
        else:
            try:
                vm.wait_for(anything, window)
            except (qemu.BootTimeout, qemu.GuestExited):
                pass  # nothing booted (a reset with -no-reboot ends QEMU: that is not booting either)
        out = vm.output
    assert not anything.search(out), f"{name}: the broken disk still boots:\n{out[-2000:]}"
    return out


def partitions(image: Path) -> dict[int, tuple[int, int]]:
    return bootdisk._partitions(image)


def break_bootloader(image: Path, esp_number: int, efi_files: list[str]) -> None:
    """Zero the MBR boot code (bytes 0-439; table and signature kept) and delete loader files from the ESP
    (mtools, straight in the image)."""
    with open(image, "r+b") as f:
        f.write(bytes(440))
    start, _ = partitions(image)[esp_number]
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
    for path in efi_files:
        subprocess.run(["mdel", "-i", f"{image}@@{start * 512}", path], check=True, env=env,
                       stdin=subprocess.DEVNULL, capture_output=True)


def esp_listing(image: Path, esp_number: int) -> str:
    start, _ = partitions(image)[esp_number]
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
    return subprocess.run(["mdir", "-/", "-b", "-i", f"{image}@@{start * 512}", "::/"], env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True).stdout


JOB_SCRIPT = """#!/bin/sh
export PYTHONPATH=/job/src
t=""
for link in /dev/disk/by-id/*; do
  case "$link" in *LBTARGET*-part*) ;; *LBTARGET*) t=$(readlink -f "$link"); break ;; esac
done
echo "LIFEBOAT-JOB target=$t firmware=$([ -d /sys/firmware/efi ] && echo uefi || echo bios)"
[ -n "$t" ] || exit 90
# If bootfix has not finished after 240 s, show on the console what every task is doing (a failed run
# then says where it hung instead of only timing out).
( sleep 240; echo LIFEBOAT-JOB-SLOW
  for p in /proc/[0-9]*; do  # user processes: pid, state, wait channel, command (the guest has no ps)
    cmd=$(tr '\\0' ' ' <$p/cmdline 2>/dev/null); [ -n "$cmd" ] || continue
    echo "${p#/proc/} $(cut -d' ' -f3 $p/stat) $(cat $p/wchan) $cmd"
  done 2>/dev/null
  echo w >/proc/sysrq-trigger ) &
watchdog=$!
python3 -m lifeboat.boot bootfix "$t" --yes --json >/job/result.json
rc=$?
kill $watchdog 2>/dev/null
cat /job/result.json
if [ -d /sys/firmware/efi ]; then timeout 60 efibootmgr -v | tee /job/efibootmgr.txt; fi
sync
exit $rc
"""


@dataclass
class JobResult:
    exit: int
    result: dict
    efibootmgr: str
    output: str
    seconds: float


def run_bootfix_in_guest(target: Path, interface: str, firmware: str, workdir: Path,
                         vars_file: Path | None = None, timeout: float = 420) -> JobResult:
    """Boot the rescue guest (debootstrapped Debian, direct kernel boot) with `target` attached; it runs
    `python3 -m lifeboat.boot bootfix TARGET --yes --json` with this checkout's code and powers off.

    One retry, for one case only: the guest froze whole — not even the job's watchdog printed after
    240 s. Seen once in CI at the NVRAM step (OVMF's variable service under TCG; a frozen vCPU is no
    code of ours). The target and NVRAM are put back as they were before the retry, and it is reported.
    A job that is alive but stuck (the watchdog printed) fails at once."""
    pristine = workdir / f"{target.name}.before-bootfix"
    bootdisk.copy_image(target, pristine)
    try:
        try:
            return _bootfix_job(target, interface, firmware, workdir, vars_file, timeout, attempt=1)
        except qemu.BootTimeout as timed_out:
            if b"LIFEBOAT-JOB-SLOW" in (workdir / f"{_job_vm_name(firmware, 1)}-serial.log").read_bytes():
                raise
            print(f"WARNING: the rescue guest froze (no output, watchdog silent); retrying once:\n"
                  f"{str(timed_out)[-1500:]}", file=sys.stderr)
        bootdisk.copy_image(pristine, target)
        if vars_file is not None:
            Path(vars_file).unlink(missing_ok=True)
        return _bootfix_job(target, interface, firmware, workdir, vars_file, timeout, attempt=2)
    finally:
        pristine.unlink(missing_ok=True)


def _job_vm_name(firmware: str, attempt: int) -> str:
    return f"rescue-{firmware}" + ("" if attempt == 1 else f"-try{attempt}")


def _bootfix_job(target: Path, interface: str, firmware: str, workdir: Path, vars_file: Path | None,
                 timeout: float, attempt: int) -> JobResult:
    rescue = bootdisk.rescue_guest()
    job = bootdisk.job_disk(workdir / "job.img", {"run": JOB_SCRIPT, "src/lifeboat": SRC})
    drives = [
        qemu.Drive(rescue["image"], "virtio", serial="LBRESCUE", snapshot=True),
        qemu.Drive(job, "virtio", serial="LBJOB"),
        qemu.Drive(target, interface, serial="LBTARGET"),
    ]
    append = "root=LABEL=LBRESCUE ro console=ttyS0,115200 init=/usr/local/sbin/lifeboat-job panic=10"
    name = _job_vm_name(firmware, attempt)
    with qemu.Machine(drives, firmware=firmware, workdir=workdir, name=name, memory=1024,
                      kernel=rescue["kernel"], initrd=rescue["initrd"], append=append,
                      vars_file=vars_file) as vm:
        vm.wait_for(JOB_EXIT_RE, timeout)
        seconds = vm.elapsed()
        code = int(JOB_EXIT_RE.search(vm.output).group(1))
        try:
            vm.wait_exit(60)
        except qemu.BootTimeout:
            pass
        output = vm.output
    text = bootdisk.read_from_ext4(job, "/result.json")
    try:
        result = json.loads(text)
    except ValueError:
        result = {}
    efivars = bootdisk.read_from_ext4(job, "/efibootmgr.txt") if firmware == "uefi" else ""
    return JobResult(code, result, efivars, output, seconds)


# ---- lifeboat capture / restore on the host (loop devices) ------------------------------------------
def lifeboat(*args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("lifeboat")
    argv = [str(exe)] if exe.exists() else [sys.executable, "-m", "lifeboat"]
    proc = subprocess.run(argv + list(args), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, f"lifeboat {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    return proc


def capture(image: Path, name: str, repo: Path) -> None:
    with bootdisk.loop_device(image, readonly=True) as dev:
        lifeboat("capture", dev, name, "--repo", str(repo))


def restore(name: str, repo: Path, target: Path, size: int) -> Path:
    target.write_bytes(b"")
    os.truncate(target, size)
    with bootdisk.loop_device(target) as dev:
        lifeboat("restore", name, dev, "--repo", str(repo), "--yes", "--no-bootloader")
    return target


@contextlib.contextmanager
def loop_device_4kn(image: Path):
    """Like bootdisk.loop_device, with 4096-byte logical sectors (a 4Kn disk). Kept here: bootdisk.py is part
    of the cached fixtures' key."""
    dev = bootdisk.sh("losetup", "--find", "--show", "--sector-size", "4096", image).stdout.strip()
    held = os.open(dev, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(held, fcntl.LOCK_SH)  # udev's re-read would drop the partition nodes (see bootdisk)
        bootdisk.sh("partx", "-a", dev, check=False)
        yield dev
    finally:
        os.close(held)
        bootdisk.sh("partx", "-d", dev, check=False)
        bootdisk.sh("losetup", "-d", dev, check=False)
