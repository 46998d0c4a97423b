"""Choose where images live: repositories found on partitions (looked into read-only), the stick's
data partition, any mounted path, or a path typed by hand."""

from __future__ import annotations

import os
from collections.abc import Callable

from textual import work
from textual.binding import Binding

from lifeboat.errors import LifeboatError
from lifeboat.tui.backend import RepoLocation
from lifeboat.tui.dialogs.network_location import NetworkLocationScreen
from lifeboat.tui.messages import ListReady
from lifeboat.tui.screens.pick import PickScreen, TextStepScreen
from lifeboat.tui.widgets.text import repo_prompt

OTHER = "\x00other"
NETWORK = "\x00network"
NAMED = "\x00named:"  # + the URL: a location of the stick's lifeboat-repos.toml
RECENT = "\x00recent:"  # + the URL: a network location used before
TAIL = [(NETWORK, "Network location… (n)", False), (OTHER, "Another directory… (type its path)", False)]


class RepoPickerScreen(PickScreen):
    BINDINGS = [Binding("n", "network", "Network location"),
                *[Binding(str(n), f"named({n})", show=False) for n in range(1, 10)]]

    def __init__(self, on_pick: Callable[[str], None], purpose: str = "Choose the image repository") -> None:
        super().__init__(
            purpose,
            "Looking for repositories on the disks (read-only)…",
            list(TAIL),
            self._picked,
        )
        self.when_chosen = on_pick
        self.named: list = []

    def on_mount(self) -> None:
        super().on_mount()
        self.find()

    @work(thread=True, exclusive=True, exit_on_error=False, group="repos")
    def find(self) -> None:
        try:
            self.post_message(ListReady("named", self.app.backend.named_locations()))
        except LifeboatError as error:
            self.post_message(ListReady("named", [], str(error)))
        try:
            self.post_message(ListReady("repos", self.app.backend.find_repositories()))
        except LifeboatError as error:
            self.post_message(ListReady("repos", [], str(error)))

    def on_list_ready(self, message: ListReady) -> None:
        if message.kind == "named":
            message.stop()
            self.named = list(message.items)[:9]
            return
        if message.kind != "repos":
            return
        message.stop()
        found = list(message.items)
        current = self.app.repo_path
        if current and all(r.path != current for r in found):
            count = len(self.app.images)
            found.insert(0, RepoLocation(current, "the repository in use now", count))
        options = [(r.path, repo_prompt(r), bool(r.note)) for r in found]
        options += [(NAMED + n.url, f"{i}  {n.name}: {n.url}" + (f" — {n.description}" if n.description else ""),
                     False) for i, n in enumerate(self.named, 1)]
        options += [(RECENT + url, f"Recent: {url}", False) for url in self.app.recent_locations.urls
                    if url != current]
        self.set_options(options + TAIL, keep_highlight=False)
        summary = f"{len(message.items)} found on the disks." if message.items else "None found on the disks."
        self.query_one(".step-intro").update(message.error or summary)

    def action_network(self, url: str = "") -> None:
        self.app.push_screen(NetworkLocationScreen(self._network_chosen, self.app.recent_locations, url))

    def action_named(self, number: int) -> None:
        if number <= len(self.named):
            self.action_network(self.named[number - 1].url)

    def _network_chosen(self, url: str) -> None:
        self.app.pop_screen()
        self.when_chosen(url)

    def _picked(self, key: str) -> None:
        if key.startswith((NAMED, RECENT)):
            self.action_network(key.split(":", 1)[1])
            return
        if key == NETWORK:
            self.action_network()
            return
        if key != OTHER:
            self.when_chosen(key)
            return
        self.app.push_screen(
            TextStepScreen(
                "Repository directory",
                "An existing directory (a new repository is made there if it holds none yet).",
                self.app.repo_path or "/",
                self._typed,
                validate=lambda p: "" if os.path.isabs(p) else "Give an absolute path, starting with /",
            )
        )

    def _typed(self, path: str) -> None:
        self.app.pop_screen()
        self.when_chosen(path)
