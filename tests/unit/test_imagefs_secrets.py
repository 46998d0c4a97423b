"""`lifeboat mount` hands its FUSE daemon the repository's unlocked key and the network credentials
the command connected with (a `--credentials` file or a prompt, not only the environment) through a
pipe. The daemon is not started here: start_detached and the daemon's Repository.open are replaced by
recorders (a network repository needs a server; the encrypted local case runs for real in
tests/integration/test_image_mount.py)."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from lifeboat.imagefs import daemon, mount
from lifeboat.imagefs.secrets import DaemonSecrets, read_pipe, write_pipe
from lifeboat.repo.credentials import Credentials

CREDS = Credentials(user="tech", password="s3cret-typed-at-the-prompt", domain="WORK", source="prompt")


def test_secrets_survive_the_pipe_and_stay_out_of_reprs():
    secrets = DaemonSecrets(bytes(range(64)), CREDS)
    assert read_pipe(write_pipe(secrets)) == secrets
    assert read_pipe(write_pipe(DaemonSecrets())) == DaemonSecrets()
    assert "s3cret" not in repr(secrets) and bytes(range(64)).hex() not in repr(secrets)


@pytest.mark.parametrize("key", [None, bytes(range(64))], ids=["plain", "encrypted"])
def test_mount_passes_the_connections_credentials_to_the_daemon(tmp_path, monkeypatch, key):
    started = []

    def fake_start(argv, log, pass_fds=()):
        fd = int(next(a for a in argv if a.startswith("--secrets-fd=")).split("=")[1])
        assert fd in pass_fds
        started.append((argv, read_pipe(os.dup(fd))))
        return 4242

    monkeypatch.setattr(mount, "start_detached", fake_start)
    repo = SimpleNamespace(root="ssh://tech@nas/backups", key=SimpleNamespace(secret=key) if key else None,
                           backend=SimpleNamespace(creds=CREDS))
    view, pid = mount._start_view(repo, "office", tmp_path / "state")
    (argv, secrets), = started
    assert pid == 4242 and secrets == DaemonSecrets(key, CREDS)
    assert not any(CREDS.password in a for a in argv)  # never in the daemon's argv


def test_local_plain_repository_gets_no_pipe(tmp_path, monkeypatch):
    started = []
    monkeypatch.setattr(mount, "start_detached", lambda argv, log, pass_fds=(): started.append((argv, pass_fds)) or 7)
    repo = SimpleNamespace(root=str(tmp_path / "repo"), key=None, backend=SimpleNamespace())
    mount._start_view(repo, "office", tmp_path / "state")
    (argv, pass_fds), = started
    assert pass_fds == () and not any(a.startswith("--secrets-fd") for a in argv)


def test_daemon_opens_the_repository_with_the_piped_credentials(monkeypatch):
    opened = []

    class Stop(Exception):
        pass

    def fake_open(root, **kwargs):
        opened.append((root, kwargs))
        raise Stop

    monkeypatch.setattr(daemon.Repository, "open", fake_open)
    with pytest.raises(Stop):
        daemon.serve("ssh://tech@nas/backups", "office", "/nonexistent", "/nonexistent/ready",
                     secrets_fd=write_pipe(DaemonSecrets(None, CREDS)))
    (root, kwargs), = opened
    assert root == "ssh://tech@nas/backups" and kwargs["credentials"] == CREDS and kwargs["master_key"] is None
