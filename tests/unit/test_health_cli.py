"""A failing target needs an extra confirmation; the plan shows the target's SMART health. The disk is
fake (imagekit.fake_target) and its SMART verdict is the parser's reading of a real failing disk's output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from imagekit import MiB, fake_target, office_image

from lifeboat import cli
from lifeboat.engine import plan
from lifeboat.health import parse_smartctl
from lifeboat.repo.store import Repository

FAILING = parse_smartctl(json.loads((Path(__file__).parent / "smartctl" / "ata-failing.json").read_text()))


@pytest.fixture
def repo(tmp_path, monkeypatch):
    monkeypatch.delenv("LIFEBOAT_REPO", raising=False)
    monkeypatch.setenv("LIFEBOAT_CONFIG", str(tmp_path / "no-config.toml"))
    repo = Repository.open(tmp_path / "repo", create=True)
    office_image(repo)
    fake_target(monkeypatch, 40 * MiB)
    monkeypatch.setattr(plan, "read_health", lambda target: FAILING)
    return repo


def test_plan_shows_the_target_failing(repo, capsys):
    assert cli.main(["restore", "office", "/dev/sdt", "--repo", str(repo.root), "--dry-run"]) == 0
    assert "SMART: FAILING (1975 reallocated sectors, 8 pending sectors)" in capsys.readouterr().out


def test_yes_alone_does_not_restore_onto_a_failing_disk(repo, capsys, monkeypatch):
    written = []
    monkeypatch.setattr("lifeboat.engine.restore.restore", lambda *a, **k: written.append(a))
    assert cli.main(["restore", "office", "/dev/sdt", "--repo", str(repo.root), "--yes"]) == 2
    assert "pass --allow-failing-target" in capsys.readouterr().err and not written


def test_interactive_restore_onto_a_failing_disk_asks_twice(repo, capsys, monkeypatch):
    written = []
    monkeypatch.setattr("lifeboat.engine.restore.restore", lambda *a, **k: written.append(a))
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    answers = iter(["sdt"])  # the disk's name, but not the word 'failing'
    monkeypatch.setattr("builtins.input", lambda prompt: next(answers))
    assert cli.main(["restore", "office", "/dev/sdt", "--repo", str(repo.root)]) == 2
    assert "is failing" in capsys.readouterr().out and not written
