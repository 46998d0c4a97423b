"""lifeboat.unattended: parsing lifeboat.* kernel parameters, the result line, the headless run."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from lifeboat import live, unattended
from lifeboat.unattended import Job, UnattendedError, parse_cmdline

DEBIAN_LIVE = "BOOT_IMAGE=/live/vmlinuz-6.12.0-1-amd64 initrd=/live/initrd.img boot=live components quiet"


def test_no_job_means_none():
    assert parse_cmdline(DEBIAN_LIVE) is None
    assert parse_cmdline("") is None
    assert not unattended.job_requested(DEBIAN_LIVE + " lifeboat.image=x")


def test_capture_with_every_parameter():
    job = parse_cmdline(
        DEBIAN_LIVE + " lifeboat.job=capture lifeboat.image=pc-42 lifeboat.repo=UUID=1234-ABCD"
        " lifeboat.repodir=images/lab lifeboat.source=/dev/sda lifeboat.after=poweroff lifeboat.onfail=reboot"
        " lifeboat.level=9 lifeboat.verify=no console=ttyS0,115200"
    )
    assert job == Job(
        job="capture", image="pc-42", repo="UUID=1234-ABCD", repodir="images/lab", source="/dev/sda",
        after="poweroff", onfail="reboot", level=9, verify=False,
    )


def test_defaults():
    job = parse_cmdline("lifeboat.job=restore lifeboat.image=a lifeboat.target=SERIAL=S123")
    assert job.repo == "LABEL=LIFEBOAT-DATA"
    assert (job.after, job.onfail, job.level, job.verify, job.bootloader) == ("shell", "shell", 3, True, True)
    assert job.target == "SERIAL=S123"


def test_value_keeps_equals_signs_and_quotes_group_spaces():
    job = parse_cmdline('lifeboat.job=verify lifeboat.image="lab pc" lifeboat.repo=LABEL=MY=DISK')
    assert job.image == "lab pc"
    assert job.repo == "LABEL=MY=DISK"


def test_later_parameter_wins():
    job = parse_cmdline("lifeboat.job=verify lifeboat.image=a lifeboat.image=b")
    assert job.image == "b"


def test_restore_bootloader_flag():
    job = parse_cmdline("lifeboat.job=restore lifeboat.image=a lifeboat.target=/dev/vdb lifeboat.bootloader=0")
    assert job.bootloader is False


@pytest.mark.parametrize(
    "cmdline, words",
    [
        ("lifeboat.job=backup lifeboat.image=a", "lifeboat.job=backup"),
        ("lifeboat.job=capture lifeboat.source=/dev/sda", "lifeboat.image"),
        ("lifeboat.job=capture lifeboat.image=a", "lifeboat.source"),
        ("lifeboat.job=restore lifeboat.image=a", "lifeboat.target"),
        ("lifeboat.job=verify", "lifeboat.image"),
        ("lifeboat.job=verify lifeboat.image=../etc", "'/'"),
        ("lifeboat.job=verify lifeboat.image=a lifeboat.after=halt", "lifeboat.after=halt"),
        ("lifeboat.job=verify lifeboat.image=a lifeboat.onfail=sleep", "lifeboat.onfail=sleep"),
        ("lifeboat.job=verify lifeboat.image=a lifeboat.level=99", "lifeboat.level=99"),
        ("lifeboat.job=verify lifeboat.image=a lifeboat.level=x", "lifeboat.level=x"),
        ("lifeboat.job=verify lifeboat.image=a lifeboat.verify=maybe", "lifeboat.verify=maybe"),
        ("lifeboat.job=verify lifeboat.image=a lifeboat.imgae=b", "lifeboat.imgae"),
        ("lifeboat.job= lifeboat.image=a", "lifeboat.job="),
    ],
)
def test_bad_parameters_name_the_culprit(cmdline, words):
    with pytest.raises(UnattendedError) as err:
        parse_cmdline(cmdline)
    assert words in str(err.value)
    assert "\n" not in str(err.value)


def test_job_file_needs_nothing_else_and_merges_with_cmdline_overrides():
    cmdline = "boot=live lifeboat.job=file lifeboat.after=reboot"
    job = parse_cmdline(cmdline)
    assert job.job == "file"
    text = """# restore the lab image on every machine
    lifeboat.job=restore
    lifeboat.image=lab   # the image
    lifeboat.target=/dev/nvme0n1
    lifeboat.after=poweroff
    """
    merged = unattended.merge_job_file(job, cmdline, text)
    assert (merged.job, merged.image, merged.target, merged.after) == ("restore", "lab", "/dev/nvme0n1", "reboot")


def test_job_file_must_name_a_real_job():
    job = parse_cmdline("lifeboat.job=file")
    with pytest.raises(UnattendedError, match="no lifeboat.job"):
        unattended.merge_job_file(job, "lifeboat.job=file", "lifeboat.image=x\n")
    with pytest.raises(UnattendedError, match="cannot name itself"):
        unattended.merge_job_file(job, "lifeboat.job=file", "lifeboat.job=file\n")


def test_result_lines():
    job = Job(job="capture", image="pc")
    assert unattended.result_line(job, True, seconds=41.6) == "LIFEBOAT-RESULT: OK job=capture image=pc seconds=42"
    line = unattended.result_line(job, False, "source disk\n/dev/sdz not found")
    assert line == "LIFEBOAT-RESULT: FAILED job=capture image=pc reason=source disk /dev/sdz not found"


def test_subcommand_registers_with_a_handler(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="lifeboat")
    sub = parser.add_subparsers(dest="command")
    unattended.add_subcommand(sub)
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("boot=live lifeboat.job=verify lifeboat.image=a lifeboat.level=0 lifeboat.after=poweroff\n")
    args = parser.parse_args(["unattended", "--cmdline", str(cmdline)])
    assert args.func(args) == 1
    out = capsys.readouterr().out
    assert "LIFEBOAT-RESULT: FAILED job=? reason=lifeboat.level=0" in out


def test_missing_repository_fails_with_a_result_line_and_no_poweroff(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(unattended, "WAIT_FOR_DEVICES", 0.0)
    monkeypatch.setattr(unattended, "_settle", lambda: None)
    monkeypatch.setattr(unattended.time, "sleep", lambda s: None)
    cmdline = tmp_path / "cmdline"
    cmdline.write_text(
        "lifeboat.job=verify lifeboat.image=a lifeboat.repo=/dev/lifeboat-no-such-disk lifeboat.onfail=poweroff"
    )
    assert unattended.main(["--cmdline", str(cmdline)]) == 1
    out = capsys.readouterr().out
    assert "LIFEBOAT-RESULT: FAILED job=verify image=a" in out
    assert "repository /dev/lifeboat-no-such-disk not found" in out
    assert "lifeboat.after=poweroff not carried out" in out


def test_no_job_on_cmdline_is_a_no_op(tmp_path, capsys):
    cmdline = tmp_path / "cmdline"
    cmdline.write_text(DEBIAN_LIVE)
    assert unattended.main(["--cmdline", str(cmdline)]) == 0
    assert "nothing to do" in capsys.readouterr().out


# ---------------------------------------------------------------- lifeboat.live: which console runs what


@pytest.mark.parametrize(
    "cmdline, expected",
    [
        ("boot=live", "tty1"),
        ("console=ttyS0,115200 console=tty0", "tty1"),
        ("console=tty0 console=ttyS0,115200", "ttyS0"),
        ("console=ttyS1", "ttyS1"),
    ],
)
def test_primary_console_is_the_last(cmdline, expected):
    assert live.primary_console(cmdline) == expected


@pytest.mark.parametrize(
    "tty, cmdline, mode",
    [
        ("tty1", "console=ttyS0,115200 console=tty0", "tui"),
        ("ttyS0", "console=ttyS0,115200 console=tty0", "shell"),
        ("tty2", "console=ttyS0,115200 console=tty0", "shell"),
        ("ttyS0", "console=tty0 console=ttyS0,115200", "tui"),
        ("tty1", "console=tty0 console=ttyS0,115200", "tui"),
        ("ttyS0", "console=tty0 console=ttyS0 lifeboat.job=verify lifeboat.image=a", "unattended"),
        ("tty1", "console=tty0 console=ttyS0 lifeboat.job=verify lifeboat.image=a", "shell"),
        ("tty1", "lifeboat.job=file", "unattended"),
    ],
)
def test_console_modes(tty, cmdline, mode):
    assert live.console_mode(tty, cmdline) == mode


def test_release_info(tmp_path):
    release = tmp_path / "lifeboat-release"
    release.write_text("VERSION=0.1.0\nLIVE_MEDIUM_UUID=2026-11-24-22-39-00-00\nnonsense\n")
    assert live.release_info(str(release)) == {"VERSION": "0.1.0", "LIVE_MEDIUM_UUID": "2026-11-24-22-39-00-00"}


def test_restore_with_a_failed_bootloader_step_is_not_ok(tmp_path, monkeypatch):
    """The data went in but GRUB did not: the job must end FAILED with the step named, never OK."""
    from lifeboat.engine import plan as plan_module
    from lifeboat.engine import restore as restore_module
    from lifeboat.events import Outcome
    from lifeboat.engine.restore import RestoreResult, StepRecord
    from lifeboat.repo.store import Repository

    repo = tmp_path / "repo"
    Repository.open(repo, create=True)
    monkeypatch.setattr(unattended, "find_device", lambda spec, what: "/dev/fake-target")
    monkeypatch.setattr(plan_module, "plan_restore", lambda repo, image, target, **kw: "a plan")
    steps = [StepRecord("partition table", Outcome.DONE),
             StepRecord("bootloader: GRUB for BIOS (i386-pc)", Outcome.FAILED, "no core.img")]
    monkeypatch.setattr(restore_module, "restore",
                        lambda plan, **kw: RestoreResult("img", "/dev/fake-target", steps=list(steps)))
    job = Job("restore", image="img", target="SERIAL=x")
    with pytest.raises(UnattendedError, match=r"GRUB for BIOS \(i386-pc\) failed: no core.img"):
        unattended.run_job(job, str(repo), unattended.threading.Event())

    steps[1] = StepRecord("bootloader: GRUB for BIOS (i386-pc)", Outcome.DONE)
    unattended.run_job(job, str(repo), unattended.threading.Event())  # all done: no error


def test_unattended_restore_onto_a_failing_disk_needs_allow_failing_target(tmp_path, monkeypatch):
    """Issue 13: with nobody to ask, a target whose SMART health is failing is refused unless the command
    line says lifeboat.allow_failing_target=yes. The verdict is the parser's reading of real smartctl output."""
    import json
    from pathlib import Path

    from lifeboat import health
    from lifeboat.engine import plan as plan_module
    from lifeboat.engine import restore as restore_module
    from lifeboat.engine.restore import RestoreResult
    from lifeboat.repo.store import Repository

    failing = health.parse_smartctl(json.loads((Path(__file__).parent / "smartctl" / "ata-failing.json").read_text()))
    repo = tmp_path / "repo"
    Repository.open(repo, create=True)
    written = []
    monkeypatch.setattr(unattended, "find_device", lambda spec, what: "/dev/fake-target")
    monkeypatch.setattr(plan_module, "plan_restore", lambda repo, image, target, **kw: "a plan")
    monkeypatch.setattr(health, "read_health", lambda path: failing)
    monkeypatch.setattr(restore_module, "restore",
                        lambda plan, **kw: written.append(plan) or RestoreResult("img", "/dev/fake-target", steps=[]))
    job = Job("restore", image="img", target="SERIAL=x")
    with pytest.raises(UnattendedError, match=r"/dev/fake-target: SMART: FAILING .*lifeboat.allow_failing_target=yes"):
        unattended.run_job(job, str(repo), unattended.threading.Event())
    assert not written
    unattended.run_job(dataclasses.replace(job, allow_failing_target=True), str(repo), unattended.threading.Event())
    assert written == ["a plan"]


def test_rescue_and_failing_target_parameters():
    job = unattended.job_from_params(unattended.lifeboat_params(
        "lifeboat.job=capture lifeboat.image=a lifeboat.source=/dev/sdb lifeboat.rescue=yes lifeboat.rescue_timeout=600"))
    assert (job.rescue, job.rescue_timeout, job.allow_failing_target) == (True, 600, False)
    with pytest.raises(UnattendedError, match="rescue_timeout=soon"):
        unattended.job_from_params(unattended.lifeboat_params(
            "lifeboat.job=capture lifeboat.image=a lifeboat.source=/dev/sdb lifeboat.rescue_timeout=soon"))


# ---- network repositories (lifeboat.repo=ssh://, smb://, nfs://, …)


@pytest.mark.parametrize("url", ["ssh://root@10.0.2.2:2222/srv/images", "smb://tech@nas/backups/lifeboat",
                                 "nfs://10.0.2.2/export/images", "s3://bucket/prefix"])
def test_a_network_repository_on_the_command_line(url):
    job = parse_cmdline(f"lifeboat.job=capture lifeboat.image=pc lifeboat.source=/dev/sda lifeboat.repo={url}")
    assert job.repo == url and unattended.is_network(job.repo)
    assert not unattended.is_network("LABEL=LIFEBOAT-DATA") and not unattended.is_network("/srv/repo")


@pytest.mark.parametrize("url, words", [
    ("ftp://server/images", "unknown repository scheme ftp://"),
    ("ssh://root:hunter2@server/images", "password"),
    ("smb://server", "names no share"),
    ("file:///srv/images", "lifeboat.repodir"),
])
def test_a_bad_network_repository_is_refused_naming_it(url, words):
    with pytest.raises(UnattendedError, match="lifeboat.repo") as err:
        parse_cmdline(f"lifeboat.job=verify lifeboat.image=pc lifeboat.repo={url}")
    assert words in str(err.value)
    assert "hunter2" not in str(err.value)


def test_a_capture_to_a_web_server_is_refused_but_a_restore_from_it_is_not():
    with pytest.raises(UnattendedError, match="read-only"):
        parse_cmdline("lifeboat.job=capture lifeboat.image=pc lifeboat.source=/dev/sda lifeboat.repo=https://web/img")
    job = parse_cmdline("lifeboat.job=restore lifeboat.image=pc lifeboat.target=/dev/sda lifeboat.repo=https://web/img")
    assert job.repo == "https://web/img"


def test_repodir_belongs_in_the_url_of_a_network_repository():
    with pytest.raises(UnattendedError, match="into the URL"):
        parse_cmdline("lifeboat.job=verify lifeboat.image=pc lifeboat.repo=nfs://nas/export lifeboat.repodir=x")


def test_the_job_files_network_repository_is_not_overridden_by_where_the_job_file_is():
    cmdline = "lifeboat.job=file lifeboat.repo=LABEL=JOBS lifeboat.repodir=site-a lifeboat.after=poweroff"
    job = parse_cmdline(cmdline)
    text = "lifeboat.job=capture lifeboat.image=pc lifeboat.source=/dev/sda lifeboat.repo=ssh://root@nas/srv/img\n"
    merged = unattended.merge_job_file(job, cmdline, text)
    assert (merged.repo, merged.repodir, merged.after) == ("ssh://root@nas/srv/img", "", "poweroff")


def test_the_files_beside_the_job_file_are_used_and_checked(tmp_path, monkeypatch):
    monkeypatch.delenv("LIFEBOAT_KNOWN_HOSTS", raising=False)
    monkeypatch.setenv("LIFEBOAT_CREDENTIALS_FILE", "/somewhere/else")
    key = tmp_path / "id_ed25519"
    key.write_text("not really a key\n")
    key.chmod(0o600)
    creds = tmp_path / unattended.CREDENTIALS_FILE
    creds.write_text("username = tech\npassword = s3cret\nidentity_file = id_ed25519\n")
    creds.chmod(0o600)
    got = unattended._secrets_beside(tmp_path)
    assert (got.user, got.password, got.key_file) == ("tech", "s3cret", str(key))
    assert unattended.os.environ["LIFEBOAT_KNOWN_HOSTS"] == str(tmp_path / unattended.KNOWN_HOSTS_FILE)
    assert "LIFEBOAT_CREDENTIALS_FILE" not in unattended.os.environ
    creds.chmod(0o644)  # readable by others: refused, naming the file
    with pytest.raises(Exception, match=f"{creds}.*can be read by others"):
        unattended._secrets_beside(tmp_path)
    # a repository given on the command line alone: no known hosts at all, so an ssh:// server is refused
    assert unattended._secrets_beside(None) is None
    assert unattended.os.environ["LIFEBOAT_KNOWN_HOSTS"].startswith("/nonexistent")


def test_allow_plaintext_is_a_flag():
    assert parse_cmdline("lifeboat.job=capture lifeboat.image=a lifeboat.source=/dev/sda").allow_plaintext is False
    job = parse_cmdline("lifeboat.job=capture lifeboat.image=a lifeboat.source=/dev/sda lifeboat.allow_plaintext=yes")
    assert job.allow_plaintext is True


def test_unattended_rescue_capture_passes_the_rescue_and_its_time_bound_to_the_engine(tmp_path, monkeypatch):
    """lifeboat.rescue=yes lifeboat.rescue_timeout=600 reach capture() as RescueOptions(timeout=600)."""
    from lifeboat.engine import capture as capture_module
    from lifeboat.engine import luks_capture
    from lifeboat.engine.rescue import RescueOptions
    from lifeboat.repo.store import Repository

    repo = tmp_path / "repo"
    Repository.open(repo, create=True)
    seen = []
    monkeypatch.setattr(unattended, "find_device", lambda spec, what: "/dev/fake-source")
    monkeypatch.setattr(unattended, "_check_not_boot_medium", lambda node: None)
    monkeypatch.setattr(capture_module, "inspect_source",
                        lambda source, sink, rescue=False, luks_key=None: seen.append(("inspect", rescue)) or
                        argparse.Namespace(partitions=()))
    monkeypatch.setattr(luks_capture, "check_plaintext_allowed", lambda parts, repo, allowed: None)
    monkeypatch.setattr(capture_module, "capture", lambda source, image, repo, **kw: seen.append(("capture", kw["rescue"])))
    job = unattended.job_from_params(unattended.lifeboat_params(
        "lifeboat.job=capture lifeboat.image=a lifeboat.source=/dev/sdb lifeboat.rescue=yes lifeboat.rescue_timeout=600 "
        "lifeboat.verify=no"))
    unattended.run_job(job, str(repo), unattended.threading.Event())
    assert seen == [("inspect", True), ("capture", RescueOptions(timeout=600))]


def test_unattended_capture_of_a_failing_disk_suggests_rescue(tmp_path, monkeypatch, capsys):
    import json
    from pathlib import Path

    from lifeboat import health
    from lifeboat.engine import capture as capture_module
    from lifeboat.engine import luks_capture
    from lifeboat.repo.store import Repository

    failing = health.parse_smartctl(json.loads((Path(__file__).parent / "smartctl" / "ata-failing.json").read_text()))
    repo = tmp_path / "repo"
    Repository.open(repo, create=True)
    monkeypatch.setattr(unattended, "find_device", lambda spec, what: "/dev/fake-source")
    monkeypatch.setattr(unattended, "_check_not_boot_medium", lambda node: None)
    monkeypatch.setattr(health, "read_health", lambda path: failing)
    monkeypatch.setattr(capture_module, "inspect_source", lambda *a, **kw: argparse.Namespace(partitions=()))
    monkeypatch.setattr(luks_capture, "check_plaintext_allowed", lambda parts, repo, allowed: None)
    monkeypatch.setattr(capture_module, "capture", lambda *a, **kw: None)
    job = unattended.job_from_params(unattended.lifeboat_params(
        "lifeboat.job=capture lifeboat.image=a lifeboat.source=/dev/sdb lifeboat.verify=no"))
    unattended.run_job(job, str(repo), unattended.threading.Event())
    assert ("lifeboat: warning: /dev/fake-source: SMART: FAILING (1975 reallocated sectors, 8 pending sectors); "
            "a capture with lifeboat.rescue=yes reads around damage") in capsys.readouterr().out
