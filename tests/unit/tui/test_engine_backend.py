"""The adapter onto the engine: how engine results become what the screens show."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from lifeboat.devices import Disk, Partition
from lifeboat.errors import ImageCorrupt, LifeboatError
from lifeboat.layout.model import DiskLayout, PartitionEntry
from lifeboat.tui import engine_backend
from lifeboat.tui.engine_backend import EngineBackend

MiB = 1024 * 1024


def entry(number: int, start_mib: int, size_mib: int, type_: str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"):
    return PartitionEntry(number, start_mib * 2048, size_mib * 2048, type_)


def test_layout_rows_in_bytes_with_what_grows():
    target = Disk("/dev/sdb", "sdb", 400 * MiB, partitions=(Partition("/dev/sdb1", 1, MiB, 100 * MiB, "ntfs"),))
    current = DiskLayout("dos", "0x1", 512, 400 * 2048, (entry(1, 1, 100, "7"),))
    new = DiskLayout("gpt", "G", 512, 400 * 2048, (entry(1, 1, 32), entry(2, 33, 366)))
    actions = (
        SimpleNamespace(number=1, fstype="vfat", mode="used-blocks", target=new.partitions[0], grows=False, shrink=None),
        SimpleNamespace(number=2, fstype="ext4", mode="used-blocks", target=new.partitions[1], grows=True, shrink=None),
    )
    plan = SimpleNamespace(current_layout=current, target_layout=new, actions=actions)
    [now] = engine_backend._current_rows(plan, target)
    assert (now.number, now.start, now.size, now.fstype) == (1, MiB, 100 * MiB, "ntfs")
    rows = engine_backend._new_rows(plan)
    assert [(r.number, r.size, r.fstype, r.grows) for r in rows] == [(1, 32 * MiB, "vfat", False), (2, 366 * MiB, "ext4", True)]


def test_verify_problems_become_one_error_naming_where(monkeypatch):
    report = SimpleNamespace(ok=False, chunks=3, bytes=10, problems=["partition 2 (ext4) at offset 4194304: bad hash", "x"])
    monkeypatch.setattr("lifeboat.engine.verify.verify", lambda repo, name, progress, cancel: report)
    monkeypatch.setattr("lifeboat.repo.store.Repository.open", classmethod(lambda cls, path, create=False, **kw: object()))
    seen = []
    with pytest.raises(ImageCorrupt, match=r"partition 2 \(ext4\) at offset 4194304: bad hash \(and 1 more"):
        EngineBackend(log_path="/dev/null").run_verify("/repo", "img", seen.append, threading.Event())
    assert len(seen) == 2  # every problem is in the log


def test_bootfix_failure_is_an_error(monkeypatch):
    from lifeboat.boot.model import StepOutcome

    monkeypatch.setattr("lifeboat.boot.bootfix", lambda path, progress, key=None: [StepOutcome("detect", "failed", "no Linux")])
    disk = Disk("/dev/sdb", "sdb", MiB)
    with pytest.raises(LifeboatError, match="detect: failed — no Linux"):
        EngineBackend(log_path="/dev/null").run_bootfix(disk, lambda e: None, threading.Event())


def test_power_actions_never_touch_the_host_in_the_sandbox(monkeypatch):
    ran = []
    monkeypatch.setattr("lifeboat.run.run", lambda argv, **kw: ran.append(argv))
    monkeypatch.setenv("LIFEBOAT_SANDBOX", "/var/tmp/lifeboat-sandbox")
    EngineBackend(log_path="/dev/null").power("poweroff")
    assert ran == []
    monkeypatch.delenv("LIFEBOAT_SANDBOX")
    EngineBackend(log_path="/dev/null").power("reboot")
    assert ran == [["systemctl", "reboot"]]


def test_engine_backend_probes_creates_and_unlocks_an_encrypted_directory(tmp_path):
    """The real Repository on a local directory (a network location is the same code after open_backend)."""
    import pytest

    from lifeboat.repo import store
    from lifeboat.repo.crypto import WrongPassphrase
    from lifeboat.tui.backend import Login, NeedsPassphrase, ProbeState

    backend, url = EngineBackend(log_path="/dev/null"), f"file://{tmp_path}"
    assert backend.probe_location(url, Login()).state is ProbeState.EMPTY
    backend.create_encrypted(url, "a passphrase")
    assert backend.probe_location(url, Login()).state is ProbeState.READY  # known for this session
    store._unlocked.clear()  # as a new session would
    assert backend.probe_location(url, Login()).state is ProbeState.LOCKED
    with pytest.raises(NeedsPassphrase):
        backend.list_images(str(tmp_path))
    with pytest.raises(WrongPassphrase):
        backend.unlock(url, "not it")
    assert backend.unlock(url, "a passphrase") == []
    assert b"a passphrase" not in (tmp_path / "lifeboat-repo.json").read_bytes()


def test_no_terminal_prompt_under_the_tui(monkeypatch):
    import pytest

    from lifeboat.repo import credentials

    monkeypatch.setattr(credentials, "_no_prompt", "")
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("getpass.getpass", lambda prompt: pytest.fail("asked the terminal"))
    credentials.forbid_prompts("give it in the form")
    with pytest.raises(credentials.CredentialsError, match="password for x is needed: give it in the form"):
        credentials.prompt_password("password for x")
    assert credentials.confirm_host_key("host", "SHA256:abc") is False


def test_engine_backend_probes_a_real_http_server(tmp_path):
    """A real static web server on loopback (Python's http.server): locked, wrong passphrase, unlocked, nothing."""
    import functools
    import http.server

    import pytest

    from lifeboat.errors import LifeboatError
    from lifeboat.repo import store
    from lifeboat.repo.crypto import WrongPassphrase
    from lifeboat.repo.location import open_backend
    from lifeboat.tui.backend import Login, ProbeState

    (tmp_path / "repo").mkdir()
    store.Repository.initialize(open_backend(str(tmp_path / "repo")), passphrase="pp", kdf_log_n=14)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        store._unlocked.clear()
        backend = EngineBackend(log_path="/dev/null")
        assert backend.probe_location(f"{url}/repo", Login()).state is ProbeState.LOCKED
        with pytest.raises(WrongPassphrase):
            backend.unlock(f"{url}/repo", "bad")
        assert backend.unlock(f"{url}/repo", "pp") == []
        with pytest.raises(LifeboatError, match="read-only"):
            backend.probe_location(f"{url}/nothing", Login())
    finally:
        from lifeboat.repo.location import forget_backends

        forget_backends()
        server.shutdown()
        server.server_close()
