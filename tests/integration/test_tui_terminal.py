"""Lifeboat in a real terminal (tmux at 80x24, 16 colours): the demo mode, driven by keys."""

from __future__ import annotations

import shutil

import pytest

from tui_terminal import TmuxTerminal, python_command

pytestmark = [pytest.mark.integration, pytest.mark.skipif(shutil.which("tmux") is None, reason="no tmux")]

DEMO = python_command("from lifeboat.tui.app import main; raise SystemExit(main(['--demo']))")
CONSOLE_ENV = {"TERM": "linux", "TEXTUAL_COLOR_SYSTEM": "standard", "LIFEBOAT_DEMO_JOB_SECONDS": "3", "SHELL": "/bin/sh"}


@pytest.fixture
def demo():
    terminal = TmuxTerminal(DEMO, CONSOLE_ENV)
    try:
        yield terminal
    finally:
        terminal.close()


def test_demo_restore_in_a_real_terminal(demo):
    home = demo.wait_for("Disks (4)")
    assert "Images in /srv/lifeboat-demo" in home and "Lifeboat runs from this" in home
    assert "c Capture" in home.splitlines()[-1] or "Capture" in home.splitlines()[-1]  # the keys are shown
    demo.keys("r")
    demo.wait_for("Restore: choose an image")
    demo.keys("Enter")
    targets = demo.wait_for("choose the target disk")
    assert "not usable: Lifeboat runs from this disk" in targets
    demo.keys("Down", "Enter")
    plan = demo.wait_for("after the restore")
    assert "sdb today" in plan and "grows" in plan
    demo.keys("Enter")
    demo.wait_for("Type sdb and press Enter")
    demo.type("sdb")
    demo.keys("Enter")
    progress = demo.wait_for("ETA")
    assert "elapsed 0:00:0" in progress
    result = demo.wait_for("Done: Restoring laptop-2026-11-01 to sdb", timeout=30)
    assert "Time taken: 0:00:0" in result
    demo.keys("Enter")
    demo.wait_for("Disks (4)")
    demo.keys("C-q")
    demo.wait_for("Leave Lifeboat?")
    demo.keys("y")
    demo.wait_for("LIFEBOAT-EXITED=0")


def test_demo_stop_asks_first_and_says_what_is_left(demo):
    demo.wait_for("Disks (4)")
    demo.keys("r")
    demo.wait_for("Restore: choose an image")  # keys sent before a screen is up would go to the one below
    demo.keys("Enter")
    demo.wait_for("choose the target disk")
    demo.keys("Down", "Enter")
    demo.wait_for("after the restore")
    demo.keys("Enter")
    demo.wait_for("Type sdb")
    demo.type("sdb")
    demo.keys("Enter")
    demo.wait_for("ETA")
    demo.keys("Escape")
    demo.wait_for("Stop the restore to sdb?")
    demo.keys("y")
    result = demo.wait_for("Stopped: Restoring")
    assert "sdb was partly written" in result


def test_shell_and_back(demo):
    demo.wait_for("Disks (4)")
    demo.keys("s")
    demo.wait_for("Type 'exit' to return to Lifeboat.")
    demo.type("echo marker-$((6*7))")
    demo.keys("Enter")
    demo.wait_for("marker-42")
    demo.type("exit")
    demo.keys("Enter")
    demo.wait_for("Disks (4)")
