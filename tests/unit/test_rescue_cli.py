"""`lifeboat capture`'s rescue options: bad values are named before anything is created, and a source whose
SMART health is failing gets --rescue suggested. The source path does not exist (no disk is read: the
capture stops at inspecting it); its SMART verdict is the parser's reading of a real failing disk's output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lifeboat import health
from lifeboat.cli import main
from lifeboat.health import parse_smartctl

FAILING = parse_smartctl(json.loads((Path(__file__).parent / "smartctl" / "ata-failing.json").read_text()))
NO_DISK = "/dev/lifeboat-test-no-such-disk"


@pytest.fixture(autouse=True)
def no_config(tmp_path, monkeypatch):
    monkeypatch.delenv("LIFEBOAT_REPO", raising=False)
    monkeypatch.setenv("LIFEBOAT_CONFIG", str(tmp_path / "no-config.toml"))


@pytest.mark.parametrize("options, message", [
    (["--rescue-timeout", "60"], "--rescue-timeout only apply with --rescue"),
    (["--rescue-retries", "3"], "--rescue-retries only apply with --rescue"),
    (["--rescue", "--rescue-timeout", "0"], "--rescue-timeout 0: must be a positive number of seconds"),
    (["--rescue", "--rescue-timeout", "-5"], "--rescue-timeout -5: must be a positive number of seconds"),
    (["--rescue", "--rescue-retries", "-1"], "--rescue-retries -1: must be 0 or more"),
])
def test_bad_rescue_options_are_named_and_nothing_is_created(tmp_path, capsys, monkeypatch, options, message):
    monkeypatch.setattr(health, "read_health", lambda path: pytest.fail("the source was looked at"))
    assert main(["capture", NO_DISK, "img", "--repo", str(tmp_path / "repo"), *options]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "repo").exists()


def test_a_failing_source_gets_rescue_suggested(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(health, "read_health", lambda path: FAILING)
    assert main(["capture", NO_DISK, "img", "--repo", str(tmp_path / "repo")]) == 1  # no such disk to read
    err = capsys.readouterr().err
    assert (f"warning: {NO_DISK}: SMART: FAILING (1975 reallocated sectors, 8 pending sectors). Capture it with "
            "--rescue") in err


def test_no_suggestion_when_rescuing_already(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(health, "read_health", lambda path: FAILING)
    main(["capture", NO_DISK, "img", "--repo", str(tmp_path / "repo"), "--rescue", "--rescue-timeout", "30"])
    assert "Capture it with --rescue" not in capsys.readouterr().err
