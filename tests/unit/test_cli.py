"""The `lifeboat` command's argument handling, output and exit codes, in-process (no disk is written)."""

from __future__ import annotations

import json

import pytest
from imagekit import MiB, fake_target, office_image

from lifeboat import cli
from lifeboat.repo.store import Repository


@pytest.fixture
def repo(tmp_path, monkeypatch):
    monkeypatch.delenv("LIFEBOAT_REPO", raising=False)
    monkeypatch.setenv("LIFEBOAT_CONFIG", str(tmp_path / "no-config.toml"))
    repo = Repository.open(tmp_path / "repo", create=True)
    office_image(repo)
    return repo


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_images_json_keeps_its_keys(repo, capsys):
    repo.write_manifest("broken", {"schema": "lifeboat-image", "version": 7})
    code, out, _ = run(capsys, "images", "--repo", str(repo.root), "--json")
    assert code == 0
    broken, office = json.loads(out)
    assert broken == {"name": "broken", "problem": "image 'broken': manifest schema version 7 is not supported "
                                                   "(this Lifeboat reads versions 1, 2); use a newer Lifeboat"}
    assert {"name", "created", "source_model", "source_serial", "source_size", "table", "partitions",
            "data_bytes"} <= set(office)
    assert [p["fstype"] for p in office["partitions"]] == ["vfat", "ext4", "swap", "raw"]


def test_images_for_people(repo, capsys):
    code, out, _ = run(capsys, "images", "--repo", str(repo.root))
    assert code == 0
    assert out.startswith("office ") and "Office PC disk 40.0 MiB  gpt  [1:vfat, 2:ext4, 3:swap, 4:raw]" in out


def test_repository_from_the_environment_and_none_at_all(repo, capsys, monkeypatch):
    monkeypatch.setenv("LIFEBOAT_REPO", str(repo.root))
    assert run(capsys, "images")[1].startswith("office ")
    monkeypatch.delenv("LIFEBOAT_REPO")
    code, _, err = run(capsys, "images")
    assert code == 1 and err.startswith("lifeboat: error: no repository given: use --repo DIR")


def test_verify_exit_codes(repo, capsys):
    code, out, _ = run(capsys, "verify", "office", "--repo", str(repo.root))
    assert code == 0 and "Image 'office' is intact: 11 chunks" in out
    from lifeboat.repo.manifest import load_manifest

    ref = load_manifest(repo, "office").partition(1).stream.chunks[1]
    repo.chunk_path(ref.digest).unlink()
    code, _, err = run(capsys, "verify", "office", "--repo", str(repo.root))
    assert code == 1
    assert f"DAMAGED: partition 1 (vfat) at offset {4 * MiB}: chunk {ref.digest[:16]} is missing" in err
    assert "Image 'office' is damaged: 1 problem(s)" in err


def test_restore_dry_run_prints_the_plan(repo, capsys, monkeypatch):
    fake_target(monkeypatch, 40 * MiB)
    code, out, _ = run(capsys, "restore", "office", "/dev/sdt", "--repo", str(repo.root), "--dry-run", "--json")
    assert code == 0 and json.loads(out)["target"] == "/dev/sdt"
    code, out, _ = run(capsys, "restore", "office", "/dev/sdt", "--repo", str(repo.root), "--dry-run")
    assert code == 0 and "EVERYTHING on /dev/sdt will be replaced." in out
    assert out.rstrip().endswith("Dry run: nothing was written.")


def test_restore_needs_a_confirmation(repo, capsys, monkeypatch):
    fake_target(monkeypatch, 40 * MiB)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    code, _, err = run(capsys, "restore", "office", "/dev/sdt", "--repo", str(repo.root))
    assert code == 2
    assert "refusing to restore without confirmation" in err and "Not confirmed: nothing was written." in err


def test_unknown_image_and_bad_names(repo, capsys):
    code, _, err = run(capsys, "restore", "nothing", "/dev/sdt", "--repo", str(repo.root), "--dry-run")
    assert code == 1 and err.startswith("lifeboat: error: no image named 'nothing'")
    code, _, err = run(capsys, "delete", "nothing", "--repo", str(repo.root))
    assert code == 1 and "no image named 'nothing'" in err
    code, _, err = run(capsys, "capture", "/dev/sdz", "../escape", "--repo", str(repo.root))
    assert code == 1 and "image name '../escape' must not contain path separators" in err


@pytest.mark.parametrize("level", ["0", "23", "x"])
def test_compression_level_is_checked_by_the_parser(repo, capsys, level):
    with pytest.raises(SystemExit) as caught:
        cli.main(["capture", "/dev/sdz", "img", "--repo", str(repo.root), "--level", level])
    assert caught.value.code == 2
    assert "--level" in capsys.readouterr().err


def test_delete_then_prune(repo, capsys):
    code, out, _ = run(capsys, "prune", "--repo", str(repo.root), "--dry-run")
    assert code == 0 and out.startswith("would remove 0 unused chunks")
    assert run(capsys, "delete", "office", "--repo", str(repo.root))[0] == 0
    code, out, _ = run(capsys, "prune", "--repo", str(repo.root))
    assert code == 0 and out.startswith("removed 11 unused chunks") and not list(repo.all_chunks())
