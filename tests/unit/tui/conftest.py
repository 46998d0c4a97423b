"""Fixtures: a fast FakeBackend and an app factory with a fixed date and no real shell."""

from __future__ import annotations

import pytest

from lifeboat import secureboot
from lifeboat.tui.app import create_app
from lifeboat.tui.fake_backend import DEMO_REPO, FakeBackend
from lifeboat.tui.net_location import RecentLocations
from tui_pilot import TODAY


@pytest.fixture(autouse=True)
def bios_machine(tmp_path, monkeypatch):
    """The home screen shows how this machine booted: every TUI test (and snapshot) sees a BIOS boot,
    whatever the machine running the tests booted with."""
    monkeypatch.setattr(secureboot, "EFI_DIR", tmp_path / "no-efi")


@pytest.fixture
def backend(tmp_path) -> FakeBackend:
    fake = FakeBackend(job_seconds=0.05)
    fake.log_path = str(tmp_path / "lifeboat.log")
    return fake


@pytest.fixture
def make_app(backend, tmp_path):
    def make(**options):
        options.setdefault("recent_locations", RecentLocations(tmp_path / "config" / "recent-locations.json"))
        options.setdefault("repo_path", DEMO_REPO)
        options.setdefault("today", lambda: TODAY)
        options.setdefault("shell", lambda: None)
        return create_app(backend, **options)

    return make


