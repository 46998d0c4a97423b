"""One rule for each thing every front end shares: image names, the options every command takes, the
repository from the config file, the progress printer, the result line's words."""

from __future__ import annotations

import io

import pytest

from lifeboat import cli, unattended
from lifeboat.errors import InvalidName
from lifeboat.events import LogLine, StepFinished, StepStarted
from lifeboat.fs.registry import FsKind
from lifeboat.repo.store import check_image_name
from lifeboat.terminal import ConsoleProgress
from lifeboat.tui.flows.capture import name_problem

NAMES = ["pc+old", "laptop-2026-11-27", "a.b_c", "../etc", "lab pc", ".hidden", "x" * 129, "é"]


@pytest.mark.parametrize("name", NAMES)
def test_the_tui_accepts_exactly_the_names_the_repository_accepts(name):
    try:
        check_image_name(name)
        allowed = True
    except InvalidName:
        allowed = False
    assert (name_problem(name, set()) == "") == allowed


def test_a_taken_name_is_refused_in_the_tui():
    assert "already exists" in name_problem("pc+old", {"pc+old"})


@pytest.mark.parametrize("argv", [
    ["images", "--repo", "/r", "--json"], ["capture", "/dev/sda", "n", "--repo", "/r"], ["verify", "n", "--repo", "/r"],
    ["restore", "n", "/dev/sdb", "--repo", "/r", "--json"], ["delete", "n", "--repo", "/r"],
    ["prune", "--repo", "/r"], ["tui", "--repo", "/r"]])
def test_every_repository_command_takes_the_shared_repo_option(argv):
    args = cli.build_parser().parse_args(argv)
    assert args.repo == "/r"
    assert getattr(args, "json", argv[-1] == "--json") == (argv[-1] == "--json")


@pytest.mark.parametrize("command", ["images", "capture /dev/sda n", "verify n", "restore n /dev/sdb", "delete n",
                                     "prune", "init", "key list"])
def test_every_repository_command_takes_the_same_secret_options(command):
    argv = command.split() + ["--repo", "s3://h/b", "--credentials", "/c", "--passphrase-file", "/p"]
    args = cli.build_parser().parse_args(argv)
    assert (args.repo, args.credentials, args.passphrase_file) == ("s3://h/b", "/c", "/p")


def test_json_is_one_shared_option_for_disks_and_bootfix():
    parser = cli.build_parser()
    assert parser.parse_args(["disks", "--json"]).json
    assert parser.parse_args(["bootfix", "/dev/sdb", "--json", "--yes"]).json


def test_the_tui_opens_the_config_files_repository(tmp_path, monkeypatch):
    from lifeboat.tui import app as tui_app

    config = tmp_path / "lifeboat.toml"
    config.write_text('repo = "/srv/images"\n')
    monkeypatch.setenv("LIFEBOAT_CONFIG", str(config))
    monkeypatch.delenv("LIFEBOAT_REPO", raising=False)
    opened = []

    class NoScreen:
        return_code = 0

        def run(self):
            pass

    monkeypatch.setattr(tui_app, "create_app", lambda backend, repo_path=None: opened.append(repo_path) or NoScreen())
    assert tui_app.main([]) == 0
    assert tui_app.main(["--repo", "/given"]) == 0
    assert opened == ["/srv/images", "/given"]


def test_one_printer_with_a_prefix_for_the_unattended_console():
    out = io.StringIO()
    sink = ConsoleProgress(out, interval=0, prefix="lifeboat: ")
    sink(StepStarted("bootloader"))
    sink(StepFinished("bootloader", "not-needed", "no system on this disk"))
    sink(LogLine("slow disk", "warning"))
    assert out.getvalue().splitlines() == ["lifeboat: » bootloader", "lifeboat:   bootloader: not-needed (no system on this disk)",
                                           "lifeboat: ! slow disk"]


def test_the_result_line_carries_the_bootloader_word():
    job = unattended.Job(job="restore", image="data", target="/dev/vdb")
    line = unattended.result_line(job, True, seconds=12.4, facts=("bootloader=not-needed",))
    assert line == "LIFEBOAT-RESULT: OK job=restore image=data seconds=12 bootloader=not-needed"


def test_dead_code_is_gone():
    assert "check" not in FsKind.__dataclass_fields__  # (run.require is in use again: mounting an SMB/NFS share)
