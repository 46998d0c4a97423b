"""--repo parsing, credentials files and the SMB/NFS mount commands (argv only: this host's kernel has no
cifs or nfs client, so the mounts themselves can only run in a QEMU guest; that test is not written yet)."""

import os
from pathlib import Path

import pytest

from lifeboat.repo.credentials import CredentialsError, ask_passphrase, read_credentials_file
from lifeboat.repo.location import BadLocation, Location, Scheme, parse_location
from lifeboat.repo.mounts import credentials_file, nfs_mount_argv, smb_mount_argv, smb_source, versions


def test_local_paths_and_file_urls(tmp_path):
    assert parse_location(str(tmp_path)) == Location(Scheme.LOCAL, str(tmp_path))
    assert parse_location(f"file://{tmp_path}").path == str(tmp_path)
    assert parse_location("rel/dir").path == str(Path("rel/dir").absolute())
    assert parse_location("odd:name").scheme is Scheme.LOCAL  # a colon without // is a file name


@pytest.mark.parametrize("url, scheme, host, port, user, path", [
    ("ssh://root@nas.lan/srv/images", Scheme.SSH, "nas.lan", None, "root", "/srv/images"),
    ("sftp://nas:2222/x", Scheme.SSH, "nas", 2222, "", "/x"),
    ("s3://My-Bucket/shop/images/", Scheme.S3, "My-Bucket", None, "", "shop/images"),
    ("s3://bucket", Scheme.S3, "bucket", None, "", "/"),
    ("https://mirror.example/lifeboat", Scheme.HTTPS, "mirror.example", None, "", "/lifeboat"),
    ("http://10.0.2.2:8080/r", Scheme.HTTP, "10.0.2.2", 8080, "", "/r"),
    ("smb://tech@syno/backup/images", Scheme.SMB, "syno", None, "tech", "/backup/images"),
    ("nfs://filer/export/lifeboat", Scheme.NFS, "filer", None, "", "/export/lifeboat"),
])
def test_network_locations(url, scheme, host, port, user, path):
    loc = parse_location(url)
    assert (loc.scheme, loc.host, loc.port, loc.user, loc.path) == (scheme, host, port, user, path)


def test_display_round_trips():
    for url in ("ssh://root@nas.lan:2222/srv/images", "s3://bucket/prefix", "https://h/p"):
        assert parse_location(parse_location(url).display()) == parse_location(url)


@pytest.mark.parametrize("url, words", [
    ("ftp://host/dir", "unknown repository scheme ftp://"),
    ("webdav://host/dir", "ssh:// (or sftp://), s3://"),
    ("ssh://root:hunter2@host/dir", "password"),
    ("ssh:///dir", "names no server"),
    ("s3:///prefix", "names no bucket"),
    ("smb://server", "names no share"),
    ("ssh://host:99999/x", "port"),
    ("ssh://host/a/../b", "'..'"),
    ("file://otherhost/x", "local path"),
    ("ssh:/srv/images", "slash missing"),
    ("S3:bucket", "slash missing"),
    ("root@nas:/srv/images", "scp"),
])
def test_bad_locations_are_refused_with_what_is_wrong(url, words):
    with pytest.raises(BadLocation, match=words.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")):
        parse_location(url)


def test_password_is_not_echoed_in_the_error():
    with pytest.raises(BadLocation) as err:
        parse_location("smb://u:s3cret@nas/share")
    assert "s3cret" not in str(err.value)


def test_credentials_file_must_be_private(tmp_path):
    f = tmp_path / "nas.cred"
    f.write_text("username = tech\npassword = p=ss word\n# comment\ndomain=SHOP\n")
    f.chmod(0o644)
    with pytest.raises(CredentialsError, match=r"mode 0644.*chmod 600"):
        read_credentials_file(f)
    f.chmod(0o600)
    creds = read_credentials_file(f)
    assert (creds.user, creds.password, creds.domain) == ("tech", "p=ss word", "SHOP")
    assert "p=ss" not in repr(creds)
    f.write_text("user tech\n")
    with pytest.raises(CredentialsError, match="line 1"):
        read_credentials_file(f)
    with pytest.raises(CredentialsError, match="does not exist"):
        read_credentials_file(tmp_path / "absent")


def test_passphrase_file_from_the_environment(tmp_path, monkeypatch):
    f = tmp_path / "pass"
    f.write_text("correct horse\n")
    f.chmod(0o640)
    monkeypatch.setenv("LIFEBOAT_PASSPHRASE_FILE", str(f))
    with pytest.raises(CredentialsError, match="0640"):
        ask_passphrase("x")
    f.chmod(0o400)
    assert ask_passphrase("x") == "correct horse"


def test_smb_mount_takes_the_password_from_a_file_never_argv(tmp_path):
    from lifeboat.repo.credentials import Credentials

    loc = parse_location("smb://tech@syno:1445/backup/images/shop")
    assert smb_source(loc) == ("//syno/backup", "images/shop")
    assert versions(loc) == ("3.1.1", "3.0", "2.1")
    assert versions(parse_location("smb://old/share?vers=1.0")) == ("1.0",)
    with credentials_file(Credentials(user="tech", password="s3cret"), loc) as cred:
        argv = smb_mount_argv(loc, tmp_path, "3.1.1", cred)
        assert oct(os.stat(cred).st_mode & 0o777) == "0o600"
        assert "password=s3cret" in cred.read_text()
    assert not cred.exists()
    assert argv[:5] == ["mount", "-t", "cifs", "//syno/backup", str(tmp_path)]
    assert f"credentials={cred}" in argv[6] and "vers=3.1.1" in argv[6] and "port=1445" in argv[6]
    assert not any("s3cret" in a for a in argv)
    guest = smb_mount_argv(parse_location("smb://syno/public"), tmp_path, "3.0", None)
    assert "guest" in guest[6].split(",")


def test_nfs_mount_tries_versions_newest_first(tmp_path):
    loc = parse_location("nfs://filer/export/lifeboat")
    assert versions(loc) == ("4.2", "4.1", "4.0", "3")
    argv = nfs_mount_argv(loc, tmp_path, "4.2")
    assert argv[:5] == ["mount", "-t", "nfs", "filer:/export/lifeboat", str(tmp_path)]
    assert "vers=4.2" in argv[6].split(",")


def test_cli_refuses_unknown_schemes_without_creating_anything(tmp_path, monkeypatch, capsys):
    from lifeboat.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["images", "--repo", "ftp://root@host/dir"]) == 2
    assert "unknown repository scheme ftp://" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_smb_mount_logs_no_secret(tmp_path, monkeypatch, caplog):
    """The kernel's cifs client cannot run on this host (no cifs module): a stand-in `mount` records what
    it was given. The real lifeboat.run logs the command; the password must reach only the 0600 file."""
    import logging

    from lifeboat.repo import mounts
    from lifeboat.repo.credentials import Credentials

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    seen = tmp_path / "seen"
    script = f'#!/bin/sh\necho "$@" > {seen}\nfor o in $(echo "$6" | tr , " "); do case $o in credentials=*) cat "${{o#credentials=}}" >> {seen};; esac; done\n'
    for tool in ("mount", "mount.cifs"):
        (bin_dir / tool).write_text(script)
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setattr(mounts, "MOUNT_BASE", tmp_path / "mnt")
    monkeypatch.setattr(mounts.atexit, "register", lambda *a: None)
    monkeypatch.setattr(mounts, "wait_for_route", lambda host, port: "192.0.2.7")  # "nas" resolves nowhere here
    caplog.set_level(logging.DEBUG)
    loc = parse_location("smb://tech@nas/share/images")
    backend = mounts.mount_share(loc, Credentials(user="tech", password="hunter2-secret"))
    assert "protocol 3.1.1" in backend.url and str(backend.root).endswith("/images")
    assert "password=hunter2-secret" in seen.read_text()  # mount.cifs got it, from the file
    assert "+ " in caplog.text and "mount -t cifs //nas/share" in caplog.text
    assert "hunter2" not in caplog.text and "hunter2" not in seen.read_text().splitlines()[0]


def test_a_mount_the_kernel_finds_unreachable_says_no_network_not_minus_101(tmp_path, monkeypatch):
    """The route went away between the wait and the mount: cifs' -101 becomes the same clear message. A
    stand-in mount.cifs answers as the real one does (this host has no cifs client)."""
    from lifeboat.repo import mounts
    from lifeboat.repo.credentials import Credentials
    from lifeboat.repo.netwait import NoNetwork

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("mount", "mount.cifs"):
        (bin_dir / tool).write_text("#!/bin/sh\necho 'mount error(101): Network is unreachable' >&2\n"
                                    "echo 'Refer to the mount.cifs(8) manual page (e.g. man mount.cifs)' >&2\nexit 32\n")
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setattr(mounts, "MOUNT_BASE", tmp_path / "mnt")
    monkeypatch.setattr(mounts, "wait_for_route", lambda host, port: host)
    with pytest.raises(NoNetwork) as caught:
        mounts.mount_share(parse_location("smb://10.0.2.2/share"), Credentials())
    assert str(caught.value) == "no network yet: no route to 10.0.2.2 (is the cable plugged in / DHCP done?)"
