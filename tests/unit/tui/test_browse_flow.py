"""Browse image: pick an image, walk its (read-only) tree, copy a folder out with progress; Esc closes it."""

from __future__ import annotations

import os

from textual.widgets import DirectoryTree, Input

from lifeboat.tui.fake_backend import DEMO_REPO
from lifeboat.tui.screens.browse import BrowseScreen
from lifeboat.tui.screens.home import HomeScreen
from lifeboat.tui.screens.pick import PickScreen
from tui_pilot import SIZE, drive, screen_text, started, wait_for_screen, wait_until


@drive
async def test_browse_and_copy_a_folder_out(make_app, backend, tmp_path):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("i")
        await wait_for_screen(pilot, PickScreen)
        await pilot.press("down", "enter")
        browse = await wait_for_screen(pilot, BrowseScreen)
        assert backend.calls == [("open", DEMO_REPO, "office-pc")]
        root = browse.view.root
        assert "Not shown: p1 (the running kernel has no vfat driver)" in screen_text(browse)
        tree = browse.query_one(DirectoryTree)
        assert str(tree.path) == root
        await pilot.press("ctrl+y")
        await wait_until(pilot, lambda: "pick a file or folder first" in screen_text(browse), what="refusal")

        browse.selected = os.path.join(root, "p2-ext4", "home", "ana")
        browse.query_one("#dest", Input).value = str(tmp_path)
        await pilot.press("ctrl+y")
        await wait_until(pilot, lambda: "copied" in screen_text(browse), what="the copy")
        copied = tmp_path / "ana" / "Documents" / "thesis.txt"
        assert copied.read_text() == "chapter 1\n" * 1000

        browse.query_one("#dest", Input).value = os.path.join(root, "p3-ntfs")
        await pilot.press("ctrl+y")
        await wait_until(pilot, lambda: "the image is read-only" in screen_text(browse), what="read-only refusal")

        await pilot.press("escape")
        await wait_for_screen(pilot, HomeScreen)
        assert backend.calls[-1] == ("close", "office-pc") and not os.path.exists(root)
