"""Repositories on real servers started here on 127.0.0.1 (netservers.py): SFTP (OpenSSH's sshd), S3
(`rclone serve s3`) and HTTPS (nginx, self-signed certificate trusted through SSL_CERT_FILE).

Round trips assert the partition table (identifiers), every file's hash and raw bytes; the failure tests
kill the server for real (SIGKILL by pid) in the middle of a capture.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from diskbuilder import MiB, PartSpec, build_disk, loop_disk, mounted, partition_digest, sfdisk_dump, tree_hashes, wipe
from netservers import nginx_https, rclone_s3, sshd

from lifeboat.engine.capture import capture
from lifeboat.events import Progress
from lifeboat.engine.plan import plan_restore
from lifeboat.engine.restore import restore
from lifeboat.engine.verify import verify
from lifeboat.errors import LifeboatError
from lifeboat.repo import store
from lifeboat.repo.crypto import WrongPassphrase
from lifeboat.repo.location import forget_backends, open_backend
from lifeboat.repo.store import Repository

pytestmark = pytest.mark.integration

SPECS = [PartSpec(48, "ext4", name="root"), PartSpec(64, "raw", name="unknown")]
DISK = 120 * MiB
FAST_KDF = 12  # scrypt 2^12 in tests; `lifeboat init` uses 2^17


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    base = tmp_path_factory.mktemp("servers")
    ssh, s3 = sshd(base / "ssh").start(), rclone_s3(base / "s3").start()
    web = nginx_https(base / "nginx", ssh.extra["root"]).start()
    try:
        yield {"ssh": ssh, "s3": s3, "web": web}
    finally:
        for server in (web, s3, ssh):
            server.stop()


@pytest.fixture
def net(servers, monkeypatch, lifeboat_env):
    """The client side: HOME with the SSH key and known_hosts, the S3 variables, the test CA."""
    monkeypatch.setenv("HOME", str(servers["ssh"].extra["home"]))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    monkeypatch.delenv("LIFEBOAT_KNOWN_HOSTS", raising=False)
    for k, v in servers["s3"].extra["env"].items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("SSL_CERT_FILE", str(servers["web"].extra["cert"]))
    yield servers
    forget_backends()
    store._unlocked.clear()


def ssh_url(servers, sub: str) -> str:
    return f"ssh://root@127.0.0.1:{servers['ssh'].port}{servers['ssh'].extra['root']}/{sub}"


@pytest.fixture
def source(workdir):
    with loop_disk(workdir, "source", DISK) as src:
        built = build_disk(src, "gpt", SPECS, workdir)
        yield src, built, sfdisk_dump(src), partition_digest(src, 2)


def assert_restored(disk, built, table, raw_digest) -> None:
    assert sfdisk_dump(disk) == table  # disk and partition GUIDs, types, names, sizes
    assert partition_digest(disk, 2) == raw_digest
    disk.refresh()
    with mounted(disk.node(1), "ext4", readonly=True) as mnt:
        assert tree_hashes(mnt) == built.hashes[1]


def test_capture_to_ssh_and_s3_restore_from_s3_and_https(net, source):
    src, built, table, raw = source
    sftp_repo = Repository.open(ssh_url(net, "shop"), create=True)
    capture(src.path, "machine", sftp_repo)
    s3_repo = Repository.open("s3://lifeboat/shop", create=True)
    capture(src.path, "machine", s3_repo)
    assert verify(sftp_repo, "machine").ok and verify(s3_repo, "machine").ok
    # the SFTP repository is a plain directory on the server, in the local layout
    on_server = net["ssh"].extra["root"] / "shop"
    assert json.loads((on_server / "images" / "index.json").read_text()) == {"images": ["machine"]}

    wipe(src)
    restore(plan_restore(s3_repo, "machine", src.path), bootloader=False)
    assert_restored(src, built, table, raw)

    web_repo = Repository.open(f"https://127.0.0.1:{net['web'].port}/shop")
    assert web_repo.image_names() == ["machine"]
    with pytest.raises(LifeboatError, match="read-only"):
        capture(src.path, "another", web_repo)
    wipe(src)
    restore(plan_restore(web_repo, "machine", src.path), bootloader=False)
    assert_restored(src, built, table, raw)


@pytest.mark.parametrize("kind", ["ssh", "s3"])
def test_encrypted_repository(net, source, kind):
    src, built, table, raw = source
    url = ssh_url(net, "vault") if kind == "ssh" else "s3://lifeboat/vault"
    repo = Repository.initialize(open_backend(url), "correct horse battery", kdf_log_n=FAST_KDF)
    manifest = capture(src.path, "secret", repo)
    assert verify(repo, "secret").ok
    storage = net["ssh"].extra["root"] / "vault" if kind == "ssh" else net["s3"].extra["data"] / "lifeboat" / "vault"
    text = next(p for p in (built.disk.backing.parent / "tree1").rglob("*") if p.is_file() and p.stat().st_size > 5000)
    needle = text.read_bytes()[1000:1040]
    chunk_files = list((storage / "chunks").rglob("*.zst"))
    assert chunk_files and all(needle not in f.read_bytes() for f in chunk_files)
    assert b'"version": 1' not in (storage / "images" / "secret" / "manifest.json").read_bytes()

    store._unlocked.clear()
    with pytest.raises(WrongPassphrase):
        Repository.open(url, passphrase=lambda what: "wrong horse")
    reopened = Repository.open(url, passphrase=lambda what: "correct horse battery")
    if kind == "s3":
        wipe(src)
        restore(plan_restore(reopened, "secret", src.path), bootloader=False)
        assert_restored(src, built, table, raw)

    victim = manifest.partitions[1].stream.chunks[3].digest
    path = next(f for f in chunk_files if f.name == f"{victim}.zst")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))
    report = verify(reopened, "secret")
    assert not report.ok and any(victim[:16] in p and "authentication" in p for p in report.problems), report.problems


@pytest.mark.parametrize("kind", ["s3", "ssh"])
def test_server_killed_mid_capture(net, source, kind, tmp_path):
    src, built, table, raw = source
    server = net[kind]
    url = ssh_url(net, f"crash-{kind}") if kind == "ssh" else f"s3://lifeboat/crash-{kind}"
    repo = Repository.open(url, create=True)
    killed_at: list[float] = []

    def progress(event):
        if isinstance(event, Progress) and event.done > 40 * MiB and not killed_at:
            server.kill()
            killed_at.append(time.monotonic())

    with pytest.raises(LifeboatError) as err:
        capture(src.path, "machine", repo, progress=progress)
    seconds = time.monotonic() - killed_at[0]
    print(f"{kind}: error {seconds:.1f} s after the kill: {err.value}")
    assert seconds < 120, "the error must come within a bounded time"
    assert url.split("://")[1].split("/")[0] in str(err.value) or "127.0.0.1" in str(err.value)

    server.start()  # same port, same data: the server comes back
    assert not repo.has_image("machine")  # no manifest: no image, nothing half-visible
    stored = sum(1 for _ in repo.all_chunks())
    assert stored >= 3
    manifest = capture(src.path, "machine", repo)
    fresh = (sum(len(p.stream.chunks) + 1 for p in manifest.partitions if p.stream) + len(manifest.boot_regions))
    print(f"{kind}: {stored} chunks stored before the kill; the second capture added {manifest.stats.new_chunks} of {fresh}")
    assert manifest.stats.new_chunks <= fresh - stored + 3, manifest.stats  # the stored chunks were reused
    assert verify(repo, "machine").ok
    wipe(src)
    restore(plan_restore(repo, "machine", src.path), bootloader=False)
    assert_restored(src, built, table, raw)


@pytest.mark.parametrize("kind", ["s3", "ssh"])
def test_two_captures_into_one_network_repository_at_once(net, workdir, kind):
    (workdir / "a").mkdir()
    (workdir / "b").mkdir()
    with loop_disk(workdir, "one", DISK) as one, loop_disk(workdir, "two", DISK) as two:
        build_disk(one, "gpt", SPECS, workdir / "a")
        build_disk(two, "gpt", [PartSpec(48, "ext4", name="root", seed=7), PartSpec(64, "raw", name="x")], workdir / "b")
        repo = Repository.open("s3://lifeboat/together" if kind == "s3" else ssh_url(net, "together"), create=True)
        errors: list[BaseException] = []

        def run(disk, name):
            try:
                capture(disk.path, name, repo)
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(d, n)) for d, n in ((one, "one"), (two, "two"))]
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert not errors, errors
        assert repo.image_names() == ["one", "two"]
        assert verify(repo, "one").ok and verify(repo, "two").ok


def test_unknown_ssh_host_key_is_refused_with_its_fingerprint(net, monkeypatch, tmp_path):
    monkeypatch.setenv("LIFEBOAT_KNOWN_HOSTS", str(tmp_path / "empty_known_hosts"))
    with pytest.raises(LifeboatError, match=r"host key of \[127.0.0.1\]:\d+ is not known \(ssh-ed25519 SHA256:"):
        Repository.open(ssh_url(net, "nowhere"), create=True)


@pytest.mark.parametrize("kind", ["s3", "web"])
def test_server_killed_mid_restore(net, source, kind):
    src, built, table, raw = source
    if kind == "s3":
        repo = Repository.open("s3://lifeboat/restore-crash", create=True)
        capture(src.path, "machine", repo)
    else:
        capture(src.path, "machine", Repository.open(ssh_url(net, "restore-crash"), create=True))  # nginx serves it
        repo = Repository.open(f"https://127.0.0.1:{net['web'].port}/restore-crash")
    server, killed_at = net[kind], []

    def progress(event):  # the first chunk written: most are still to fetch (at most 10 are in flight)
        if isinstance(event, Progress) and event.done > 0 and not killed_at:
            server.kill()
            killed_at.append(time.monotonic())

    plan = plan_restore(repo, "machine", src.path)
    try:
        with pytest.raises(LifeboatError) as err:
            restore(plan, progress=progress, bootloader=False)
        seconds = time.monotonic() - killed_at[0]
        print(f"{kind}: restore failed {seconds:.1f} s after the kill (after retries): {err.value}")
        assert seconds < 120 and repo.root in str(err.value)
    finally:
        server.start()


@pytest.mark.parametrize("kind", ["s3", "ssh"])
def test_prune_over_the_network(net, kind):
    from lifeboat.engine.prune import delete_image, prune

    repo = Repository.open(ssh_url(net, "prune") if kind == "ssh" else "s3://lifeboat/prune", create=True)
    with repo.shared_use():
        a, b, c = (repo.put_chunk(x * 10, 3)[0] for x in (b"a", b"b", b"c"))
        assert repo.put_chunk(b"c" * 10, 3)[1] == 0  # known from the listing: not sent again
    for name, digests in (("one", [a, b]), ("two", [b])):
        repo.write_manifest(name, {
            "schema": "lifeboat-image", "version": 1, "name": name, "created": "2026-01-01T00:00:00+00:00",
            "chunk_size": 4 * MiB, "source": {"path": "/dev/x", "size": 1}, "boot_regions": [],
            "layout": {"label": "gpt", "disk_id": "X", "sector_size": 512, "disk_sectors": 100 * 2048,
                       "partitions": [{"number": 1, "start": 2048, "size": 64 * 2048, "type": "L"}]},
            "partitions": [{"number": 1, "fstype": "ext4", "mode": "used-blocks", "size": 64 * MiB,
                            "used_bytes": 10 * len(digests), "map": {"chunk": digests[0], "length": 10, "runs": 1},
                            "chunks": [[i, d, 10] for i, d in enumerate(digests)]}]})
    assert prune(repo).removed_chunks == 1 and not repo.has_chunk(c)
    delete_image(repo, "one")
    assert repo.image_names() == ["two"]
    report = prune(repo)
    assert (report.removed_chunks, report.kept_chunks) == (1, 1) and not repo.has_chunk(a) and repo.has_chunk(b)
    with repo.shared_use():
        assert repo.put_chunk(b"a" * 10, 3)[1] > 0  # stored again: the listing forgot the pruned chunk


def _cli(*argv: str, check: bool = True):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "lifeboat", "-v", *argv], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120)
    assert not check or proc.returncode == 0, proc.stderr
    return proc


def test_cli_init_keys_and_credentials_file(net, tmp_path, monkeypatch):
    first, second, cred = tmp_path / "first", tmp_path / "second", tmp_path / "s3.cred"
    for path, text in ((first, "first passphrase\n"), (second, "second passphrase\n"),
                       (cred, "aws_access_key_id = testkey\naws_secret_access_key = testsecret\n")):
        path.write_text(text)
        path.chmod(0o600)
    url = ssh_url(net, "cli-vault")
    out = _cli("init", "--repo", url, "--encrypt", "--passphrase-file", str(first)).stdout
    assert "encrypted" in out and "cannot be recovered" in out
    _cli("key", "add", "--repo", url, "--passphrase-file", str(first), "--new-passphrase-file", str(second))
    assert len(_cli("key", "list", "--repo", url, "--passphrase-file", str(second)).stdout.splitlines()) == 2
    wrong = _cli("images", "--repo", url, "--passphrase-file", str(cred), check=False)
    assert wrong.returncode == 2 and "wrong passphrase" in wrong.stderr

    # S3 keys from the credentials file only; -v logs our commands, never the secret
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    assert "no S3 credentials" in _cli("images", "--repo", "s3://lifeboat/cli", check=False).stderr
    _cli("init", "--repo", "s3://lifeboat/cli", "--credentials", str(cred))
    proc = _cli("images", "--repo", "s3://lifeboat/cli", "--credentials", str(cred))
    assert "no images" in proc.stdout and "testsecret" not in proc.stdout + proc.stderr
    cred.chmod(0o644)
    assert "chmod 600" in _cli("images", "--repo", "s3://lifeboat/cli", "--credentials", str(cred), check=False).stderr
