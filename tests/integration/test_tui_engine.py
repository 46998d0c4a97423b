"""The TUI on the real engine and real udev: a restore driven through tmux, and hotplug of a loop disk."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import sys
import time
from pathlib import Path

import pytest

from diskbuilder import MiB, PartSpec, build_disk, loop_disk, mounted, tree_hashes
from tui_terminal import TmuxTerminal, python_command

pytestmark = pytest.mark.integration

LAUNCH = (
    "import sys; from lifeboat.tui.app import create_app; from lifeboat.tui.engine_backend import EngineBackend; "
    "app = create_app(EngineBackend(log_path=sys.argv[1]), repo_path=sys.argv[2]); app.run(); "
    "raise SystemExit(app.return_code or 0)"
)


@pytest.fixture
def sandbox(workdir: Path, lifeboat_env, monkeypatch) -> Path:
    """devices.list_disks shows only loop disks backed by files in `workdir`."""
    monkeypatch.setenv("LIFEBOAT_SANDBOX", str(workdir))
    return workdir


@pytest.mark.skipif(shutil.which("tmux") is None, reason="no tmux")
def test_restore_through_the_tui_in_a_real_terminal(sandbox: Path):
    from lifeboat.engine.capture import capture
    from lifeboat.repo.store import Repository

    repo = sandbox / "repo"
    log = sandbox / "lifeboat.log"
    with loop_disk(sandbox, "source", 160 * MiB) as source, loop_disk(sandbox, "target", 256 * MiB) as target:
        built = build_disk(source, "gpt", [PartSpec(32, "vfat", gpt_type="U"), PartSpec(0, "ext4", seed=7)], sandbox)
        capture(source.path, "office", Repository.open(repo, create=True))
        env = {k: os.environ[k] for k in ("LIFEBOAT_SANDBOX", "LIFEBOAT_LOCK_DIR", "PATH") if k in os.environ}
        terminal = TmuxTerminal(python_command(LAUNCH) + [str(log), str(repo)], {**env, "TERM": "linux"})
        try:
            terminal.wait_for("Disks (2)")
            terminal.keys("r")
            terminal.wait_for("Restore: choose an image")
            terminal.keys("Enter")
            terminal.wait_for("choose the target disk")
            names = sorted([source.path, target.path], key=lambda p: (len(p), p))
            terminal.keys(*["Down"] * names.index(target.path), "Enter")
            plan = terminal.wait_for("after the restore", timeout=30)
            assert "grows" in plan  # 256 MiB target, 160 MiB source: the ext4 partition grows
            terminal.keys("Enter")
            name = os.path.basename(target.path)
            terminal.wait_for(f"Type {name} and press Enter")
            terminal.type(name)
            terminal.keys("Enter")
            result = _wait_for_result(terminal)
            assert re.search(r"Done(, with warnings)?: Restoring office", result), result
            assert "Time taken" in result and "bootloader" in result  # its outcome is reported, good or bad
        finally:
            terminal.close()
        target.refresh()
        with mounted(target.node(2), "ext4", readonly=True) as mnt:
            assert tree_hashes(mnt) == built.hashes[2]


def _wait_for_result(terminal: TmuxTerminal, timeout: float = 240) -> str:
    return _network_rates_until_the_result(terminal, timeout)[1]


def test_hotplug_a_loop_disk_appears_and_disappears(sandbox: Path):
    """A disk attached while the app runs is listed within two seconds; detached, it goes away."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "unit" / "tui"))
    from tui_pilot import wait_until

    from lifeboat.tui.app import create_app
    from lifeboat.tui.engine_backend import EngineBackend

    async def scenario() -> None:
        app = create_app(EngineBackend(log_path=str(sandbox / "log")), repo_path=None, shell=lambda: None)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause(0.5)
            assert app.disks == []
            plugged = loop_disk(sandbox, "plugged", 64 * MiB)
            # losetup and udevadm settle block: run them off the event loop so the app keeps running
            disk = await asyncio.to_thread(plugged.__enter__)
            try:
                started = time.monotonic()
                await wait_until(pilot, lambda: any(d.path == disk.path for d in app.disks), timeout=5, what="plug")
                assert time.monotonic() - started < 2.0, "a new disk must appear within two seconds"
                assert str(app.screen.query_one("#disks-title").render()) == "Disks (1)"
            finally:
                await asyncio.to_thread(plugged.__exit__, None, None, None)
            await wait_until(pilot, lambda: app.disks == [], timeout=5, what="the disk to disappear")

    asyncio.run(scenario())


def test_repository_on_an_unmounted_partition_is_found_read_only_and_mounted_when_used(sandbox: Path):
    from lifeboat.repo.store import Repository
    from lifeboat.tui.engine_backend import EngineBackend

    with loop_disk(sandbox, "usbstick", 96 * MiB) as stick:
        build_disk(stick, "gpt", [PartSpec(0, "ext4", seed=3)], sandbox)
        with mounted(stick.node(1), "ext4") as mnt:
            Repository.open(mnt / "lifeboat", create=True)
        stick.refresh()
        backend = EngineBackend(log_path=str(sandbox / "log"))
        try:
            [location] = [r for r in backend.find_repositories() if stick.node(1) in r.description]
            assert location.image_count == 0 and location.path.endswith("/lifeboat")
            assert not _mounted(stick.node(1)), "looking must leave the partition unmounted"
            assert backend.list_images(location.path) == []
            assert _mounted(stick.node(1)), "choosing it mounts it"
        finally:
            backend.close()
        assert not _mounted(stick.node(1))


def _mounted(device: str) -> bool:
    real = os.path.realpath(device)
    with open("/proc/self/mounts") as f:
        return any(os.path.realpath(line.split()[0]) == real for line in f if line.startswith("/dev/"))


@pytest.mark.skipif(shutil.which("tmux") is None, reason="no tmux")
def test_browse_an_image_and_copy_a_file_out_in_a_real_terminal(sandbox: Path):
    from lifeboat.engine.capture import capture
    from lifeboat.imagefs.mount import RUN_DIR, mounted_at
    from lifeboat.repo.store import Repository

    repo = sandbox / "repo"
    out = sandbox / "out"
    out.mkdir()
    with loop_disk(sandbox, "source", 100 * MiB) as source:
        built = build_disk(source, "gpt", [PartSpec(0, "ext4", seed=3)], sandbox)
        capture(source.path, "office", Repository.open(repo, create=True))
    env = {k: os.environ[k] for k in ("LIFEBOAT_SANDBOX", "LIFEBOAT_LOCK_DIR", "PATH") if k in os.environ}
    terminal = TmuxTerminal(python_command(LAUNCH) + [str(sandbox / "lifeboat.log"), str(repo)],
                            {**env, "TERM": "linux"})
    try:
        terminal.wait_for("Browse image")
        terminal.keys("i")
        terminal.wait_for("Browse: choose an image")
        terminal.keys("Enter")
        terminal.wait_for("p1-ext4", timeout=30)
        # the tree: the mount directory, p1-ext4; inside it dir0..dir4 and lost+found, then README.TXT
        terminal.keys("Down", "Enter")
        terminal.wait_for("README.TXT")
        terminal.keys(*["Down"] * 7, "Enter")
        terminal.wait_for("selected ")
        terminal.keys("Tab")
        terminal.type(str(out))
        terminal.keys("C-y")
        terminal.wait_for("copied")
        assert hashlib.sha256((out / "README.TXT").read_bytes()).hexdigest() == built.hashes[1]["README.TXT"]
        terminal.keys("Escape")
        terminal.wait_for("Disks (")
    finally:
        terminal.close()
    assert mounted_at(os.path.join(RUN_DIR, "browse", "office")) is None  # closing the image unmounted it


@pytest.mark.skipif(shutil.which("tmux") is None, reason="no tmux")
def test_restore_from_an_ssh_repository_shows_the_network_rate(sandbox: Path, tmp_path: Path):
    """A restore in the TUI from a real sshd (netservers.py) behind a slow link (a relay passing 1 MiB/s): the
    progress screen shows the network rate beside the disk rate while the job runs, and the files arrive."""
    from netservers import SlowLink, sshd

    from lifeboat.engine.capture import capture
    from lifeboat.repo.store import Repository

    server = sshd(tmp_path / "ssh").start()
    link = SlowLink(server.port, 1 * MiB)
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{link.port} {server.extra['host_key']}\n")
    url = f"ssh://root@127.0.0.1:{link.port}{server.extra['root']}/shop"
    log = sandbox / "lifeboat.log"
    try:
        with loop_disk(sandbox, "source", 96 * MiB) as source, loop_disk(sandbox, "target", 96 * MiB) as target:
            built = build_disk(source, "gpt", [PartSpec(0, "ext4", seed=11)], sandbox)
            capture(source.path, "office", Repository.open(server.extra["root"] / "shop", create=True))
            env = {k: os.environ[k] for k in ("LIFEBOAT_SANDBOX", "LIFEBOAT_LOCK_DIR", "PATH") if k in os.environ}
            env.update(HOME=str(server.extra["home"]), LIFEBOAT_KNOWN_HOSTS=str(known_hosts), TERM="linux")
            terminal = TmuxTerminal(python_command(LAUNCH) + [str(log), url], env)
            try:
                terminal.wait_for("Disks (2)")
                terminal.keys("r")
                terminal.wait_for("from Loop disk", timeout=30)  # the image list, read over the slow link
                terminal.keys("Enter")
                terminal.wait_for("choose the target disk")
                names = sorted([source.path, target.path], key=lambda p: (len(p), p))
                terminal.keys(*["Down"] * names.index(target.path), "Enter")
                terminal.wait_for("after the restore", timeout=30)
                terminal.keys("Enter")
                name = os.path.basename(target.path)
                terminal.wait_for(f"Type {name} and press Enter")
                terminal.type(name)
                terminal.keys("Enter")
                shown, result = _network_rates_until_the_result(terminal)
                assert re.search(r"Done(, with warnings)?: Restoring office", result), result
                # the rate shown is the link's (1 MiB/s), not the disk's (about three times more)
                assert shown and 0.3 < max(shown) < 1.3, (shown, result)
            finally:
                terminal.close()
            target.refresh()
            with mounted(target.node(1), "ext4", readonly=True) as mnt:
                assert tree_hashes(mnt) == built.hashes[1]
    finally:
        link.stop()
        server.stop()


def _network_rates_until_the_result(terminal: TmuxTerminal, timeout: float = 120) -> tuple[list[float], str]:
    """Every download rate the progress screen showed (MiB/s), and the result screen."""
    units = {"B": 1 / MiB, "KiB": 1 / 1024, "MiB": 1.0, "GiB": 1024.0}
    shown: list[float] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        screen = terminal.screen()
        if re.search(r"(Done|Done, with warnings|Failed|Stopped): Restoring", screen):
            return shown, screen
        for value, unit in re.findall(r"network ↓ ([\d.]+) (B|KiB|MiB|GiB)/s ↑", screen):
            shown.append(float(value) * units[unit])
        time.sleep(0.3)
    raise AssertionError(f"no result within {timeout} s:\n{terminal.screen()}")
