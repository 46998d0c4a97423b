"""The live system's side of Lifeboat: what each console runs at boot.

Every console of the live ISO runs `python3 -m lifeboat.live TTY` instead of a login prompt (getty
drop-ins in live-build/). The primary console is the last `console=` of the kernel command line (tty0
means tty1). There Lifeboat runs: the unattended job when `lifeboat.job=` is given, the TUI otherwise.
tty1 always runs the TUI. Every other console (tty2..., a secondary serial port) gets a root shell.

Before anything starts, one marker line goes to the console (and, from the primary console, to every
active console), so that tests and people wait for a line, not a sleep:

    LIFEBOAT-READY version=0.1.0 tty=tty1 mode=tui

Only the standard library is imported here: if Lifeboat itself is broken the consoles still get a shell.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from lifeboat.run import interactive

RELEASE_FILE = "/etc/lifeboat-release"
DATA_MOUNT = "/run/lifeboat/data"  # run-lifeboat-data.mount: the LIFEBOAT-DATA partition
DATA_LABEL = "LIFEBOAT-DATA"
MARKER = "LIFEBOAT-READY"
SHELL_PS1 = r"lifeboat:\w# "


def release_info(path: str = RELEASE_FILE) -> dict[str, str]:
    """KEY=VALUE lines written into the image by live-build/build-iso."""
    info: dict[str, str] = {}
    try:
        for line in Path(path).read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep:
                info[key.strip()] = value.strip()
    except OSError:
        pass
    return info


def version() -> str:
    info = release_info()
    if info.get("VERSION"):
        return info["VERSION"]
    try:
        from importlib.metadata import version as dist_version

        return dist_version("lifeboat")
    except Exception:  # noqa: BLE001 - not installed as a distribution
        return "unknown"


def consoles(cmdline: str) -> list[str]:
    """The console= devices of a kernel command line, in order, without their options."""
    found = []
    for word in cmdline.split():
        if word.startswith("console="):
            dev = word[len("console=") :].split(",", 1)[0]
            if dev:
                found.append(dev)
    return found


def primary_console(cmdline: str) -> str:
    """The console Lifeboat runs on: the last console= (that is /dev/console); tty0 means tty1."""
    found = consoles(cmdline)
    primary = found[-1] if found else "tty0"
    return "tty1" if primary in ("tty0", "tty") else primary


def console_mode(tty: str, cmdline: str) -> str:
    """What runs on console `tty`: 'unattended', 'tui' or 'shell'."""
    from lifeboat.unattended import job_requested

    if tty == primary_console(cmdline):
        return "unattended" if job_requested(cmdline) else "tui"
    if tty == "tty1" and not job_requested(cmdline):
        return "tui"
    return "shell"


def active_consoles() -> list[str]:
    """Devices the kernel writes its messages to (e.g. ['ttyS0', 'tty0'])."""
    try:
        return Path("/sys/class/tty/console/active").read_text().split()
    except OSError:
        return []


def announce(line: str, tty: str, everywhere: bool) -> None:
    """Print `line` on this console and, when `everywhere`, on every other active console too."""
    print(line, flush=True)
    if not everywhere:
        return
    for dev in active_consoles():
        name = "tty1" if dev in ("tty0", "tty") else dev
        if name == tty:
            continue
        try:
            fd = os.open(f"/dev/{dev}", os.O_WRONLY | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            os.write(fd, (line + "\r\n").encode())
        except OSError:
            pass
        finally:
            os.close(fd)


def _fix_serial_size(tty: str) -> None:
    """A serial line has no size: give it 80x24 (or LIFEBOAT_COLUMNS/ROWS) so the TUI can lay out."""
    if not tty.startswith("ttyS") and not tty.startswith("hvc"):
        return
    try:
        size = os.get_terminal_size(0)
        if size.columns and size.lines:
            return
    except OSError:
        pass
    cols = os.environ.get("LIFEBOAT_COLUMNS", "80")
    rows = os.environ.get("LIFEBOAT_ROWS", "24")
    interactive(["stty", "cols", cols, "rows", rows])


def _wait_for_data(timeout: float = 3.0) -> str:
    """The mounted data partition, waiting briefly when its device exists but is not mounted yet."""
    label_link = Path("/dev/disk/by-label", DATA_LABEL)
    deadline = time.monotonic() + timeout
    while True:
        if os.path.ismount(DATA_MOUNT):
            return DATA_MOUNT
        if not label_link.exists() or time.monotonic() > deadline:
            return ""
        time.sleep(0.2)


def shell() -> None:
    os.environ["PS1"] = SHELL_PS1
    os.execv("/bin/bash", ["/bin/bash", "--noprofile", "--norc", "-i"])


def run_tui() -> None:
    """Lifeboat (no arguments: the TUI); when it exits, a shell; `exit` there comes back to Lifeboat."""
    while True:
        code = interactive(["lifeboat"])
        print(f"\nLifeboat exited (status {code}). Here is a root shell; type 'exit' to return to Lifeboat.\n")
        env = dict(os.environ, PS1=SHELL_PS1)
        interactive(["/bin/bash", "--noprofile", "--norc", "-i"], env=env)


def autostart(tty: str, cmdline: str | None = None) -> None:
    if cmdline is None:
        cmdline = Path("/proc/cmdline").read_text()
    mode = console_mode(tty, cmdline)
    _fix_serial_size(tty)
    data = _wait_for_data() if mode != "shell" else ""
    if data and not os.environ.get("LIFEBOAT_REPO"):
        os.environ["LIFEBOAT_REPO"] = data
    primary = tty == primary_console(cmdline)
    announce(f"{MARKER} version={version()} tty={tty} mode={mode}", tty, everywhere=primary)
    if mode == "shell":
        print("Lifeboat live system: root shell. Lifeboat runs on tty1 (Alt+F1); type 'lifeboat' to start it here.")
        shell()
    elif mode == "unattended":
        from lifeboat import unattended

        code = unattended.main([])
        print(f"lifeboat: unattended job finished (status {code}); here is a root shell")
        shell()
    else:
        run_tui()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print("usage: python3 -m lifeboat.live TTY", file=sys.stderr)
        return 2
    autostart(argv[0])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
