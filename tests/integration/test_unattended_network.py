"""Unattended jobs with an ssh:// repository against a real sshd on 127.0.0.1 (netservers.py): the job file
names the repository, the files beside it give the identity (lifeboat-credentials: identity_file) and the
server's host key (lifeboat-known_hosts). Without a known host key the job is refused, naming the key's
fingerprint, and nothing is written to the server. Nothing is asked, even with a terminal."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
from diskbuilder import MiB, PartSpec, build_disk, loop_disk, mounted, sfdisk_dump, tree_hashes, wipe
from netservers import sshd

from lifeboat import unattended
from lifeboat.engine.verify import verify
from lifeboat.repo import store
from lifeboat.repo.location import forget_backends, open_backend
from lifeboat.repo.store import Repository

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _environment_kept():
    """unattended.execute() sets LIFEBOAT_KNOWN_HOSTS, LIFEBOAT_PASSPHRASE_FILE... for its process (a live
    system runs one job per process); here the next tests must not inherit them."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def server(tmp_path, monkeypatch, lifeboat_env):
    ssh = sshd(tmp_path / "ssh").start()
    monkeypatch.setenv("HOME", str(tmp_path / "empty-home"))  # no keys, no known_hosts of our own
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    monkeypatch.delenv("LIFEBOAT_KNOWN_HOSTS", raising=False)
    try:
        yield ssh
    finally:
        forget_backends()
        store._unlocked.clear()
        ssh.stop()


def _job_dir(where, ssh, source: str, image: str, known: bool):
    where.mkdir(parents=True)
    url = f"ssh://root@127.0.0.1:{ssh.port}{ssh.extra['root']}/unattended"
    (where / unattended.JOB_FILE).write_text(
        f"lifeboat.job=capture\nlifeboat.image={image}\nlifeboat.source={source}\nlifeboat.repo={url}\n")
    shutil.copy(ssh.extra["home"] / ".ssh" / "id_ed25519", where / "id_ed25519")
    (where / unattended.CREDENTIALS_FILE).write_text("identity_file = id_ed25519\n")
    for name in ("id_ed25519", unattended.CREDENTIALS_FILE):
        (where / name).chmod(0o600)
    if known:
        (where / unattended.KNOWN_HOSTS_FILE).write_text(f"[127.0.0.1]:{ssh.port} {ssh.extra['host_key']}\n")
    return f"lifeboat.job=file lifeboat.repo={where}"


def test_unattended_capture_to_ssh_with_the_files_beside_the_job_file(server, workdir, tmp_path, capsys):
    fingerprint = subprocess.run(["ssh-keygen", "-l", "-f", str(tmp_path / "ssh" / "host_key.pub")], check=True,
                                 capture_output=True, text=True).stdout.split()[1]
    with loop_disk(workdir, "source", 64 * MiB) as src:
        build_disk(src, "gpt", [PartSpec(40, "ext4", name="root")], workdir)
        refused_cmdline = _job_dir(tmp_path / "stranger", server, src.path, "refused", known=False)
        job, ok, reason, _, _ = unattended.execute(unattended.parse_cmdline(refused_cmdline), refused_cmdline)
        assert not ok and job.image == "refused"
        assert "not known" in reason and fingerprint in reason, reason
        assert not (server.extra["root"] / "unattended").exists()  # nothing was written
        forget_backends()

        cmdline = _job_dir(tmp_path / "site", server, src.path, "lab-pc", known=True)
        job, ok, reason, _, _ = unattended.execute(unattended.parse_cmdline(cmdline), cmdline)
        assert ok, reason
        assert (job.job, job.image, job.repo.startswith("ssh://")) == ("capture", "lab-pc", True)
    out = capsys.readouterr().out
    assert re.search(r"\| network in [\d.]+ \S+/s out [\d.]+ \S+/s", out), out  # the network's rate is shown
    repo = Repository.open(server.extra["root"] / "unattended")  # the server's directory, read here
    assert repo.image_names() == ["lab-pc"] and verify(repo, "lab-pc").ok


def test_a_repository_on_the_command_line_alone_has_no_known_hosts(server, tmp_path):
    """No job file, so nothing beside it: the ssh:// server's key is unknown whatever ~/.ssh holds."""
    home = tmp_path / "empty-home" / ".ssh"
    home.mkdir(parents=True)
    shutil.copy(server.extra["home"] / ".ssh" / "known_hosts", home / "known_hosts")  # ignored: not beside a job
    url = f"ssh://root@127.0.0.1:{server.port}{server.extra['root']}/cmdline"
    cmdline = f"lifeboat.job=verify lifeboat.image=any lifeboat.repo={url}"
    _, ok, reason, _, _ = unattended.execute(unattended.parse_cmdline(cmdline), cmdline)
    assert not ok and "not known" in reason and "SHA256:" in reason, reason


def test_unattended_jobs_on_an_encrypted_repository_read_the_passphrase_beside_the_job_file(
        server, workdir, tmp_path, capsys, monkeypatch):
    """An encrypted ssh:// repository: the capture and the restore job each read lifeboat-passphrase (mode 0600)
    beside their job file; a wrong passphrase is refused before anything is read or written; the passphrase is
    printed nowhere."""
    monkeypatch.delenv("LIFEBOAT_PASSPHRASE_FILE", raising=False)  # execute() sets it from the job's directory
    phrase = "tr0ub4dor unattended vault"
    url = f"ssh://root@127.0.0.1:{server.port}{server.extra['root']}/vault"
    monkeypatch.setenv("HOME", str(server.extra["home"]))  # the test's own client, to create the repository
    Repository.initialize(open_backend(url), phrase, kdf_log_n=12)
    forget_backends()
    store._unlocked.clear()
    monkeypatch.setenv("HOME", str(tmp_path / "empty-home"))

    def job(name: str, lines: str, passphrase: str) -> tuple[bool, str]:
        where = tmp_path / name
        cmdline = _job_dir(where, server, "-", "vaulted", known=True)
        (where / unattended.JOB_FILE).write_text(lines + f"lifeboat.repo={url}\n")
        (where / unattended.PASSPHRASE_FILE).write_text(passphrase + "\n")
        (where / unattended.PASSPHRASE_FILE).chmod(0o600)
        forget_backends()
        store._unlocked.clear()  # each job unlocks the repository itself, from its own file
        _, ok, reason, _, _ = unattended.execute(unattended.parse_cmdline(cmdline), cmdline)
        return ok, reason

    with loop_disk(workdir, "source", 64 * MiB) as src:
        built = build_disk(src, "gpt", [PartSpec(40, "ext4", name="root")], workdir)
        table = sfdisk_dump(src)
        ok, reason = job("wrong", f"lifeboat.job=capture\nlifeboat.image=vaulted\nlifeboat.source={src.path}\n",
                         "not the passphrase")
        assert not ok and "passphrase" in reason.lower(), reason
        assert not (server.extra["root"] / "vault" / "images" / "vaulted").exists()  # nothing was written

        ok, reason = job("capture", f"lifeboat.job=capture\nlifeboat.image=vaulted\nlifeboat.source={src.path}\n",
                         phrase)
        assert ok, reason
        wipe(src)
        ok, reason = job("restore", f"lifeboat.job=restore\nlifeboat.image=vaulted\nlifeboat.target={src.path}\n"
                                    "lifeboat.bootloader=0\n", phrase)
        assert ok, reason
        assert sfdisk_dump(src) == table
        src.refresh()
        with mounted(src.node(1), "ext4", readonly=True) as mnt:
            assert tree_hashes(mnt) == built.hashes[1]
    out = capsys.readouterr()
    assert phrase not in out.out + out.err


def test_an_encrypted_repository_on_a_disk_reads_the_passphrase_beside_its_job_file(workdir, tmp_path, monkeypatch,
                                                                                     lifeboat_env):
    """The same for a repository on the stick or a USB disk (here a directory): the job file and its
    lifeboat-passphrase sit in the repository's directory; without the passphrase file the job is refused."""
    monkeypatch.delenv("LIFEBOAT_PASSPHRASE_FILE", raising=False)
    repo_dir = tmp_path / "stick"
    repo_dir.mkdir()
    Repository.initialize(open_backend(str(repo_dir)), "stick passphrase", kdf_log_n=12)
    cmdline = f"lifeboat.job=file lifeboat.repo={repo_dir}"
    try:
        with loop_disk(workdir, "source", 48 * MiB) as src:
            build_disk(src, "gpt", [PartSpec(24, "ext4", name="root")], workdir)
            (repo_dir / unattended.JOB_FILE).write_text(
                f"lifeboat.job=capture\nlifeboat.image=pc\nlifeboat.source={src.path}\n")
            store._unlocked.clear()
            _, ok, reason, _, _ = unattended.execute(unattended.parse_cmdline(cmdline), cmdline)
            assert not ok and unattended.PASSPHRASE_FILE in reason, reason  # says where to put it
            (repo_dir / unattended.PASSPHRASE_FILE).write_text("stick passphrase\n")
            (repo_dir / unattended.PASSPHRASE_FILE).chmod(0o600)
            store._unlocked.clear()
            _, ok, reason, _, _ = unattended.execute(unattended.parse_cmdline(cmdline), cmdline)
            assert ok, reason
        store._unlocked.clear()
        repo = Repository.open(repo_dir, passphrase=lambda what: "stick passphrase")
        assert repo.encrypted and repo.image_names() == ["pc"] and verify(repo, "pc").ok
    finally:
        store._unlocked.clear()
