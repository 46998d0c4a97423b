"""Unattended jobs with an ssh:// repository against a real sshd on 127.0.0.1 (netservers.py): the job file
names the repository, the files beside it give the identity (lifeboat-credentials: identity_file) and the
server's host key (lifeboat-known_hosts). Without a known host key the job is refused, naming the key's
fingerprint, and nothing is written to the server. Nothing is asked, even with a terminal."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from diskbuilder import MiB, PartSpec, build_disk, loop_disk
from netservers import sshd

from lifeboat import unattended
from lifeboat.engine.verify import verify
from lifeboat.repo import store
from lifeboat.repo.location import forget_backends
from lifeboat.repo.store import Repository

pytestmark = pytest.mark.integration


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
