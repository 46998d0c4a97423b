"""Helpers of the live-ISO tests: talk to the live system's serial root shell, make small test disks.

The live system's default boot entry (console=ttyS0,115200 console=tty0) runs Lifeboat on tty1 and
a root shell on ttyS0; each console prints `LIFEBOAT-READY version=… tty=… mode=…` when it starts,
and tty1's line is copied to the serial console too.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

from qemu import BootTimeout, Machine

# Seconds from QEMU start to the marker: about 50 s of QEMU CPU under TCG (2026-11-27, live-build/README.md),
# 3 min of wall clock seen on a loaded machine; generous, so that a slow CI day does not fail the boot.
BOOT_TIMEOUT = 600


# The ISO's own kernel parameters (live-build/auto/config --bootappend-live), for direct kernel boots: a test
# that boots with -kernel/-initrd adds its consoles and lifeboat.* parameters to these.
LIVE_APPEND = "boot=live quiet init_on_alloc=0"


def ready_pattern(version: str, tty: str, mode: str) -> re.Pattern:
    return re.compile(rf"LIFEBOAT-READY version={re.escape(version)} tty={tty} mode={mode}")


def wait_for_all(vm: Machine, patterns: list[re.Pattern], timeout: float) -> None:
    """Wait until every pattern has appeared somewhere in the serial output (in any order)."""
    deadline = time.monotonic() + timeout
    while True:
        text = vm.output
        missing = [p.pattern for p in patterns if not p.search(text)]
        if not missing:
            return
        if vm.proc is not None and vm.proc.poll() is not None:
            raise AssertionError(f"QEMU exited before {missing} appeared:\n{vm.tail()}")
        if time.monotonic() > deadline:
            raise BootTimeout(f"{missing} did not appear within {timeout:.0f}s:\n{vm.tail()}")
        time.sleep(1)


_counter = [0]


def shell(vm: Machine, command: str, timeout: float = 120) -> tuple[int, str]:
    """Run `command` in the guest's serial root shell; returns (exit status, output).

    The output is framed by marker lines whose typed form differs from their printed form (the quotes
    split them), so the terminal's echo of the command line never matches.
    """
    _counter[0] += 1
    tag = f"{_counter[0]:03d}"
    begin, end = f"@@B{tag}", f"@@E{tag}"
    half = len(begin) // 2
    typed_begin = f"'{begin[:half]}''{begin[half:]}'"
    typed_end = f"'{end[:half]}''{end[half:]}'"
    vm.sendline(f"echo {typed_begin}; {command}; echo {typed_end} rc=$?")
    got = vm.wait_for(re.compile(rf"{re.escape(begin)}\r?\n(.*?){re.escape(end)} rc=(\d+)", re.S), timeout)
    m = re.match(rf"{re.escape(begin)}\r?\n(.*?){re.escape(end)} rc=(\d+)", got, re.S)
    assert m is not None
    # another console's start-up marker (tty1's TUI) may land on the serial line in the middle of the output
    return int(m.group(2)), re.sub(r"(?m)^LIFEBOAT-READY [^\n]*\n", "", m.group(1).replace("\r\n", "\n"))


def guest_disks(vm: Machine) -> list[dict]:
    """`lifeboat disks --json` run in the guest."""
    rc, out = shell(vm, "lifeboat disks --json 2>/tmp/disks.err || cat /tmp/disks.err", timeout=180)
    assert rc == 0, f"lifeboat disks --json failed in the guest:\n{out}"
    start = out.find("[") if out.lstrip().startswith("[") else out.find("{")
    data = json.loads(out[start:])
    return data["disks"] if isinstance(data, dict) else data


def run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, capture_output=True, text=True, **kw)


def blank_disk(path: Path, size_mib: int) -> Path:
    with open(path, "wb") as f:
        f.truncate(size_mib << 20)
    return path


def ext4_disk_with_files(path: Path, size_mib: int, files: dict[str, bytes], label: str = "lbsource") -> Path:
    """A GPT disk with one ext4 partition (from 1 MiB to the end) holding `files`. No loop device:
    the filesystem is made in a file of its own (mkfs.ext4 -d) and copied into place."""
    content = path.parent / (path.name + ".content")
    content.mkdir()
    for name, data in files.items():
        (content / name).parent.mkdir(parents=True, exist_ok=True)
        (content / name).write_bytes(data)
    part = partition_file(path, size_mib)
    run(["mkfs.ext4", "-q", "-F", "-L", label, "-d", str(content), str(part)])
    return gpt_disk_holding(path, part, size_mib)


def partition_file(disk: Path, disk_mib: int) -> Path:
    """A blank file the size of the one partition `gpt_disk_holding` will put on a disk of `disk_mib`."""
    return blank_disk(disk.with_name(disk.name + ".part"), disk_mib - 2)


def gpt_disk_holding(path: Path, part: Path, size_mib: int) -> Path:
    """A GPT disk of `size_mib` whose one Linux partition (from 1 MiB) holds the filesystem image `part`,
    copied into place; `part` is removed. The host needs no partition loop device for this."""
    blank_disk(path, size_mib)
    run(["sgdisk", "-n", f"1:2048:+{size_mib - 2}M", "-t", "1:8300", str(path)])
    run(["dd", f"if={part}", f"of={path}", "bs=1M", "seek=1", "conv=notrunc,sparse", "status=none"])
    part.unlink()
    return path


def ext4_whole_disk(path: Path, size_mib: int, label: str) -> Path:
    """A disk that is one ext4 filesystem, no partition table (the host can loop-mount it directly)."""
    blank_disk(path, size_mib)
    run(["mkfs.ext4", "-q", "-F", "-L", label, str(path)])
    return path


# OVMF with Microsoft's keys enrolled (Debian's ovmf package): Secure Boot is enforced from the first boot.
OVMF_CODE_SECURE = Path("/usr/share/OVMF/OVMF_CODE_4M.ms.fd")
OVMF_VARS_MS = Path("/usr/share/OVMF/OVMF_VARS_4M.ms.fd")
SECURE_BOOT_GUID = "8be4df61-93ca-11d2-aa0d-00e098032b8c"


def secure_boot_available() -> bool:
    return OVMF_CODE_SECURE.exists() and OVMF_VARS_MS.exists()


def secure_boot_machine(workdir: Path, name: str) -> dict:
    """Keyword arguments of qemu.Machine for OVMF with Secure Boot enforced: q35 with SMM, the secure
    flash, the firmware with Microsoft's keys and a fresh copy of its variable store (empty NVRAM
    otherwise). The flash drives are given here, so Machine runs with firmware='bios' (no OVMF of its own)."""
    workdir.mkdir(parents=True, exist_ok=True)
    variables = workdir / f"{name}-OVMF_VARS.ms.fd"
    variables.write_bytes(OVMF_VARS_MS.read_bytes())
    return {
        "firmware": "bios",
        "machine": "q35,smm=on",
        "extra_args": [
            "-global", "driver=cfi.pflash01,property=secure,value=on",
            "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE_SECURE}",
            "-drive", f"if=pflash,format=raw,unit=1,file={variables}",
        ],
    }
