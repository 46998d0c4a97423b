"""The TUI's restore side of LUKS on the real EngineBackend: an image holding a container's opened contents
(test_luks's manifest, with a real LUKS2 header backup made by cryptsetup in a file) lists the container to
ask about, checks a passphrase against the header kept in the image (right, wrong), and plans the restore
with it. No device-mapper is needed for any of this."""

from __future__ import annotations

import pytest
from test_luks import SECRET, UUID, _manifest, header  # noqa: F401 - header is a fixture

from lifeboat.repo.manifest import write_manifest
from lifeboat.repo.store import Repository
from lifeboat.tui import luks_backend
from lifeboat.tui.engine_backend import EngineBackend
from lifeboat.volumes.luks import WrongLuksPassphrase


def test_an_image_with_opened_contents_asks_and_checks_the_passphrase(tmp_path, monkeypatch, header):  # noqa: F811
    repo = Repository.open(tmp_path / "repo", create=True)
    write_manifest(repo, _manifest(repo, header))
    monkeypatch.setattr(luks_backend, "unavailable", lambda: "")  # as in the live system, which has device-mapper
    backend = EngineBackend(log_path=str(tmp_path / "log"))
    (container,) = backend.image_luks_containers(str(repo.root), "luks")
    assert (container.partition, container.version, container.uuid, container.label, container.node) == (
        2, "2", UUID, "lbtest", "")
    assert container.describe() == f"partition 2: LUKS2 container, UUID {UUID}, label 'lbtest'"
    backend.check_image_luks_passphrase(str(repo.root), "luks", 2, SECRET)
    with pytest.raises(WrongLuksPassphrase, match="partition 2 in image 'luks'"):
        backend.check_image_luks_passphrase(str(repo.root), "luks", 2, "not it")


def test_without_device_mapper_the_image_s_container_is_not_asked(tmp_path, monkeypatch, header):  # noqa: F811
    repo = Repository.open(tmp_path / "repo", create=True)
    write_manifest(repo, _manifest(repo, header))
    monkeypatch.setattr(luks_backend.luks, "device_mapper", lambda: False)
    (container,) = EngineBackend(log_path=str(tmp_path / "log")).image_luks_containers(str(repo.root), "luks")
    assert "no device-mapper" in container.unavailable  # the TUI skips the question; the plan refuses, saying so
