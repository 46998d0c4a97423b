"""A small QEMU harness for the `vm` tests: boot disks/ISOs under SeaBIOS or OVMF, watch the serial console.

    from qemu import Drive, Machine

    with Machine([Drive(disk_img, "nvme", serial="LB-NVME-1")], firmware="uefi", workdir=tmp_path) as vm:
        vm.wait_for("LIFEBOAT-FIXTURE-OK", timeout=120)
        vm.wait_exit(timeout=30)

Always TCG (KVM hangs on these machines). QEMU is started with its serial port on a pipe; a reader thread
copies every byte to `serial.log` in the work directory (read it when a test fails) and to an in-memory
buffer that `wait_for` searches. The process is killed by PID and reaped when the context exits, whatever
happened. UEFI boots get a fresh copy of the empty OVMF variable store each time (empty NVRAM), unless
`vars_file` names an existing one to reuse.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

QEMU = "qemu-system-x86_64"
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")

INTERFACES = ("virtio", "nvme", "sata", "usb", "ide")


class BootTimeout(AssertionError):
    """The marker did not appear in time. The message carries the tail of the serial log."""


class GuestExited(AssertionError):
    """QEMU exited before the marker appeared."""


@dataclass(frozen=True)
class Drive:
    """One disk or CD attached to the guest.

    interface: virtio | nvme | sata (AHCI) | usb (usb-storage on xHCI) | ide (the q35 AHCI is used too).
    media: "disk" or "cdrom" (cdrom only on sata/ide/usb).
    snapshot: write changes to a temporary overlay instead of the file (the file is left untouched).
    sector_size: the logical and physical block size the guest sees (4096: a 4Kn disk; virtio and nvme only).
    """

    path: str | os.PathLike
    interface: str = "virtio"
    serial: str | None = None
    media: str = "disk"
    format: str = "raw"
    readonly: bool = False
    snapshot: bool = False
    bootindex: int | None = None
    sector_size: int = 512

    def __post_init__(self):
        if self.interface not in INTERFACES:
            raise ValueError(f"unknown interface {self.interface!r}; one of {INTERFACES}")
        if self.media not in ("disk", "cdrom"):
            raise ValueError(f"unknown media {self.media!r}")
        if self.media == "cdrom" and self.interface in ("virtio", "nvme"):
            raise ValueError("a cdrom must be attached as sata, ide or usb")
        if self.sector_size != 512 and self.interface not in ("virtio", "nvme"):
            raise ValueError("4Kn disks are attached as virtio or nvme")


def _drive_args(index: int, drive: Drive, sata_port: list[int], have_xhci: list[bool]) -> list[str]:
    node = f"drive{index}"
    opts = [f"file={os.fspath(drive.path)}", "if=none", f"id={node}", f"format={drive.format}"]
    if drive.media == "cdrom":
        opts.append("media=cdrom")
        opts.append("readonly=on")
    elif drive.readonly:
        opts.append("readonly=on")
    if drive.snapshot:
        opts.append("snapshot=on")
    if drive.media == "disk" and not drive.readonly:
        opts.append("cache=unsafe")  # test disks: speed over durability; QEMU flushes on exit anyway
    args = ["-drive", ",".join(opts)]
    dev: list[str]
    if drive.interface == "virtio":
        dev = ["virtio-blk-pci", f"drive={node}"]
    elif drive.interface == "nvme":
        # NVMe needs a serial; give one if the caller did not.
        dev = ["nvme", f"drive={node}", f"serial={drive.serial or f'LBNVME{index}'}"]
    elif drive.interface in ("sata", "ide"):
        port = sata_port[0]
        sata_port[0] += 1
        if port > 5:
            raise ValueError("the q35 AHCI controller has 6 ports")
        kind = "ide-cd" if drive.media == "cdrom" else "ide-hd"
        dev = [kind, f"drive={node}", f"bus=ide.{port}"]
    else:  # usb
        if not have_xhci[0]:
            args += ["-device", "qemu-xhci,id=xhci"]
            have_xhci[0] = True
        dev = ["usb-storage", f"drive={node}", "bus=xhci.0"]
        if drive.media == "cdrom":
            dev.append("removable=on")
    if drive.serial and drive.interface != "nvme":
        dev.append(f"serial={drive.serial}")
    if drive.bootindex is not None:
        dev.append(f"bootindex={drive.bootindex}")
    if drive.sector_size != 512:
        dev += [f"logical_block_size={drive.sector_size}", f"physical_block_size={drive.sector_size}"]
    return args + ["-device", ",".join(dev)]


class Machine:
    """One QEMU guest. Use as a context manager (or call start()/stop() in try/finally)."""

    def __init__(
        self,
        drives: list[Drive] | tuple[Drive, ...] = (),
        *,
        firmware: str = "bios",
        workdir: str | os.PathLike | None = None,
        memory: int = 1024,
        cpus: int = 1,
        machine: str = "q35",
        kernel: str | os.PathLike | None = None,
        initrd: str | os.PathLike | None = None,
        append: str | None = None,
        vars_file: str | os.PathLike | None = None,
        network: bool = False,
        extra_args: list[str] | tuple[str, ...] = (),
        name: str = "guest",
    ):
        if firmware not in ("bios", "uefi"):
            raise ValueError("firmware is 'bios' (SeaBIOS) or 'uefi' (OVMF)")
        self.drives = list(drives)
        self.firmware = firmware
        self.memory = memory
        self.cpus = cpus
        self.machine = machine
        self.kernel, self.initrd, self.append = kernel, initrd, append
        self.network = network
        self.extra_args = list(extra_args)
        self.name = name
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="lifeboat-vm-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.serial_log = self.workdir / f"{name}-serial.log"
        self.vars_file = Path(vars_file) if vars_file else self.workdir / f"{name}-OVMF_VARS.fd"
        self._reuse_vars = vars_file is not None and Path(vars_file).exists()
        self.proc: subprocess.Popen | None = None
        self._buf = bytearray()
        self._cursor = 0
        self._cond = threading.Condition()
        self._reader: threading.Thread | None = None
        self._eof = False
        self.started_at: float | None = None

    # ---- command line -------------------------------------------------------------------------
    def argv(self) -> list[str]:
        argv = [
            QEMU, "-accel", "tcg", "-machine", self.machine, "-m", str(self.memory),
            "-smp", str(self.cpus), "-nodefaults", "-display", "none", "-vga", "none",
            "-monitor", "none", "-no-reboot",
            "-chardev", "stdio,id=ser0,signal=off", "-serial", "chardev:ser0",
        ]
        if self.firmware == "uefi":
            argv += [
                "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
                "-drive", f"if=pflash,format=raw,unit=1,file={self.vars_file}",
            ]
        if not self.network:
            argv += ["-nic", "none"]
        else:
            argv += ["-nic", "user,model=virtio-net-pci"]
        sata_port, have_xhci = [0], [False]
        for i, drive in enumerate(self.drives):
            argv += _drive_args(i, drive, sata_port, have_xhci)
        if self.kernel:
            argv += ["-kernel", os.fspath(self.kernel)]
            if self.initrd:
                argv += ["-initrd", os.fspath(self.initrd)]
            if self.append:
                argv += ["-append", self.append]
        return argv + self.extra_args

    # ---- lifecycle ----------------------------------------------------------------------------
    def start(self) -> "Machine":
        if shutil.which(QEMU) is None:
            raise FileNotFoundError(f"{QEMU} is not installed (Debian package qemu-system-x86)")
        if self.firmware == "uefi" and not self._reuse_vars:
            shutil.copyfile(OVMF_VARS, self.vars_file)  # a fresh, empty NVRAM
        argv = self.argv()
        (self.workdir / f"{self.name}-argv.txt").write_text(" ".join(argv) + "\n")
        self.serial_log.write_bytes(b"")
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C on the test run does not reach QEMU; we kill it ourselves
        )
        self.started_at = time.monotonic()
        self._reader = threading.Thread(target=self._read_loop, name=f"qemu-{self.name}", daemon=True)
        self._reader.start()
        return self

    def _read_loop(self) -> None:
        assert self.proc and self.proc.stdout
        fd = self.proc.stdout.fileno()
        with open(self.serial_log, "ab", buffering=0) as log:
            while True:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    break
                log.write(chunk)
                with self._cond:
                    self._buf += chunk
                    self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def stop(self) -> int | None:
        """Kill QEMU by its PID (if still running) and reap it. Returns its exit status."""
        proc = self.proc
        if proc is None:
            return None
        try:
            if proc.poll() is None:
                try:
                    os.kill(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            proc.wait(timeout=30)
        finally:
            for stream in (proc.stdin, proc.stdout):
                try:
                    if stream:
                        stream.close()
                except OSError:
                    pass
            if self._reader:
                self._reader.join(timeout=5)
        return proc.returncode

    def __enter__(self) -> "Machine":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- the serial console --------------------------------------------------------------------
    @property
    def output(self) -> str:
        with self._cond:
            return self._buf.decode(errors="replace")

    def elapsed(self) -> float:
        return 0.0 if self.started_at is None else time.monotonic() - self.started_at

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.output.splitlines()[-lines:])

    def wait_for(self, marker: str | re.Pattern, timeout: float) -> str:
        """Wait until `marker` (text or compiled regex) appears in the serial output after the previous
        match. Returns the matched text. Raises BootTimeout / GuestExited with the log's tail."""
        pattern = marker if isinstance(marker, re.Pattern) else re.compile(re.escape(marker))
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                text = self._buf.decode(errors="replace")
                m = pattern.search(text, self._cursor)
                if m:
                    self._cursor = m.end()
                    return m.group(0)
                if self._eof:
                    code = self.proc.wait(timeout=10) if self.proc else None
                    raise GuestExited(
                        f"{self.name}: QEMU exited (status {code}) before {pattern.pattern!r} appeared "
                        f"after {self.elapsed():.0f}s; serial log {self.serial_log}:\n{self.tail()}"
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BootTimeout(
                        f"{self.name}: {pattern.pattern!r} did not appear within {timeout:.0f}s; "
                        f"serial log {self.serial_log}:\n{self.tail()}"
                    )
                self._cond.wait(min(left, 1.0))

    def send(self, text: str | bytes) -> None:
        """Type on the serial console."""
        assert self.proc and self.proc.stdin
        data = text.encode() if isinstance(text, str) else text
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def sendline(self, line: str) -> None:
        self.send(line + "\n")

    def wait_exit(self, timeout: float) -> int:
        """Wait for the guest to power off (QEMU exits). Returns QEMU's exit status."""
        assert self.proc
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise BootTimeout(
                f"{self.name}: guest did not power off within {timeout:.0f}s:\n{self.tail()}"
            ) from None


def ovmf_available() -> bool:
    return OVMF_CODE.exists() and OVMF_VARS.exists()


def qemu_available() -> bool:
    return shutil.which(QEMU) is not None


def vm_marks(root_reason: str, needs_ovmf: bool = True) -> list:
    """A vm test module's marks: `vm`, and skipped without root or without QEMU (and OVMF)."""
    import pytest

    missing = not qemu_available() or (needs_ovmf and not ovmf_available())
    return [
        pytest.mark.vm,
        pytest.mark.skipif(os.geteuid() != 0, reason=root_reason),
        pytest.mark.skipif(missing, reason="needs QEMU and OVMF" if needs_ovmf else "qemu-system-x86_64 is not installed"),
    ]
