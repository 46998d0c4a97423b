"""The sandbox `make run` starts: Lifeboat on loop-device demo disks, so nothing real is at risk.

Three sparse files become loop disks: a small "laptop" (GPT: EFI system partition, ext4 root
with files, swap), a larger blank "new SSD" and a blank "USB stick". LIFEBOAT_SANDBOX makes disk
discovery show only these. The loop devices are detached when Lifeboat exits, whatever happens.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

from lifeboat import locks
from lifeboat.devices import SANDBOX_ENV
from lifeboat.errors import CommandTimedOut, LifeboatError
from lifeboat.layout.read import read_layout
from lifeboat.layout.write import ensure_partitions, partition_node
from lifeboat.run import run

MiB = 1024 * 1024
DEMO_DISKS = (("demo-laptop", 512 * MiB), ("demo-new-ssd", 1024 * MiB), ("demo-usb-stick", 256 * MiB))
LAPTOP_TABLE = """label: gpt
part1 : size=64MiB, type=U, name="EFI System"
part2 : size=400MiB, type=L, name="root"
part3 : type=S, name="swap"
"""


def _attach(image: Path) -> str:
    return run(["losetup", "--find", "--show", "--partscan", str(image)]).stdout.strip()


def _detach(device: str) -> None:
    run(["udevadm", "settle", "--timeout=10"], check=False)
    run(["losetup", "-d", device], check=False)


def _populate_laptop(device: str, workdir: Path) -> None:
    run(["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", device], input=LAPTOP_TABLE)
    ensure_partitions(device, read_layout(device))
    esp, root, swap = (partition_node(device, n) for n in (1, 2, 3))
    tree = workdir / "root-tree"
    for sub in ("etc", "home/tech", "boot"):
        (tree / sub).mkdir(parents=True, exist_ok=True)
    (tree / "etc/hostname").write_text("demo-laptop\n")
    (tree / "etc/fstab").write_text("PARTLABEL=root / ext4 defaults 0 1\nPARTLABEL=swap none swap sw 0 0\n")
    (tree / "home/tech/notes.txt").write_text("Files a customer cares about.\n" * 2000)
    (tree / "home/tech/photo.raw").write_bytes(os.urandom(8 * MiB))
    run(["mkfs.vfat", "-n", "EFI", esp])
    run(["mkfs.ext4", "-q", "-F", "-L", "root", "-d", str(tree), root])
    run(["mkswap", "-L", "swap", swap])
    bootdir = workdir / "EFI"
    (bootdir / "BOOT").mkdir(parents=True, exist_ok=True)
    (bootdir / "BOOT" / "README.TXT").write_text("demo ESP\n")
    run(["mcopy", "-s", "-i", esp, str(bootdir), "::/"])
    ensure_partitions(device, read_layout(device))


def _reprobe_partitions(device: str) -> None:
    """Make udev read the new filesystems now. udev learns of mkfs through an inotify watch it sets while
    handling the partition's "add" event; a udevd started just before (the first `make run` on a fresh
    machine) is still loading its rules then, mkfs finishes first, and udev keeps the empty partition's
    properties: the TUI showed "unknown" for every filesystem. A "change" event on each partition (never on
    the disk: that would make udev re-read the table) is probed like an add; --settle waits for it."""
    name = os.path.basename(os.path.realpath(device))
    parts = sorted(str(p) for p in Path("/sys/class/block", name).glob(f"{name}p*"))
    if parts:
        try:
            run(["udevadm", "trigger", "--action=change", "--settle", *parts], check=False, timeout=20)
        except CommandTimedOut:  # no udevd to wait for: discovery asks blkid itself (devices.filesystem_facts)
            pass


@contextlib.contextmanager
def demo_disks(directory: Path) -> Iterator[dict[str, str]]:
    """Attach the demo disks (made fresh each time) and detach them afterwards."""
    directory.mkdir(parents=True, exist_ok=True)
    attached: dict[str, str] = {}
    try:
        for name, size in DEMO_DISKS:
            image = directory / f"{name}.img"
            image.unlink(missing_ok=True)
            with open(image, "wb") as f:
                f.truncate(size)
            attached[name] = _attach(image)
        laptop = attached["demo-laptop"]
        # under the udev lock, so closing the freshly written partitions cannot make udev re-read
        # the disk afterwards (on kernels that parse no tables that would drop its partitions)
        with locks.holding_disk(laptop), tempfile.TemporaryDirectory(prefix="lifeboat-sandbox-") as tmp:
            _populate_laptop(laptop, Path(tmp))
            run(["udevadm", "settle", "--timeout=10"], check=False)
            ensure_partitions(laptop, read_layout(laptop))
            _reprobe_partitions(laptop)
        yield attached
    finally:
        for device in attached.values():
            _detach(device)


def _round_trip(disks: dict[str, str], repo_path: Path) -> int:
    """No TUI: capture the laptop, restore it onto the new SSD, verify, and say what happened."""
    from lifeboat.engine.capture import capture
    from lifeboat.engine.plan import plan_restore
    from lifeboat.engine.restore import restore
    from lifeboat.engine.verify import verify
    from lifeboat.repo.store import Repository
    from lifeboat.terminal import ConsoleProgress

    repo = Repository.open(repo_path, create=True)
    name = f"demo-laptop-{len(repo.image_names()) + 1}"
    sink = ConsoleProgress()
    capture(disks["demo-laptop"], name, repo, progress=sink)
    report = verify(repo, name)
    plan = plan_restore(repo, name, disks["demo-new-ssd"])
    print("\n".join(plan.describe()))
    result = restore(plan, progress=sink, bootloader=False)
    sink.close()
    print(f"\nSandbox round trip: captured {disks['demo-laptop']} as {name!r} ({report.chunks} chunks, verified), "
          f"restored onto {disks['demo-new-ssd']} in {result.seconds:.1f} s.")
    return 0 if report.ok else 1


def run_sandbox(directory: str, tui: bool = True) -> int:
    if os.geteuid() != 0:
        raise LifeboatError("the sandbox needs root (it makes loop devices); run it as root or with sudo")
    for tool in ("losetup", "sfdisk", "mkfs.ext4", "mkfs.vfat", "mcopy", "mkswap"):
        if shutil.which(tool) is None:
            raise LifeboatError(f"the sandbox needs {tool}; run `make deps` first")
    base = Path(directory)
    repo_path = base / "repo"
    os.environ[SANDBOX_ENV] = str(base)
    os.environ["LIFEBOAT_REPO"] = str(repo_path)
    _exit_cleanly_on_hangup()
    with demo_disks(base) as disks:
        print("Sandbox disks: " + ", ".join(f"{n} = {d}" for n, d in disks.items()) + f"; repository {repo_path}")
        if not tui:
            return _round_trip(disks, repo_path)
        from lifeboat.repo.store import Repository
        from lifeboat.tui.app import main as tui_main

        Repository.open(repo_path, create=True)
        return tui_main(["--repo", str(repo_path)])


def _exit_cleanly_on_hangup() -> None:
    """A closed terminal (SIGHUP) or a kill (SIGTERM) unwinds through `finally`, so the loop disks are detached."""
    def leave(signum, _frame):
        raise SystemExit(128 + signum)

    for sig in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, leave)
