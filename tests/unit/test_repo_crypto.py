"""Encrypted repositories: keyed chunk ids, AEAD tamper detection, key slots; and integrity of
unencrypted repositories' manifests."""

import hashlib
import json
import os

import pytest

from lifeboat.errors import ImageCorrupt, RepositoryError
from lifeboat.repo import crypto, store
from lifeboat.repo.crypto import WrongPassphrase
from lifeboat.repo.local import LocalBackend
from lifeboat.repo.store import Repository

FAST = 10  # scrypt cost for tests only: 2^10 instead of 2^17


def _encrypted(tmp_path, phrase="correct horse"):
    store._unlocked.clear()
    return Repository.initialize(LocalBackend(tmp_path / "r"), phrase, kdf_log_n=FAST)


def _reopen(tmp_path, phrase):
    store._unlocked.clear()
    return Repository.open(tmp_path / "r", passphrase=lambda what: phrase)


def _flip(path, at):
    raw = bytearray(path.read_bytes())
    raw[at] ^= 0x01
    path.write_bytes(bytes(raw))


def test_chunk_ids_are_keyed_and_content_is_not_readable(tmp_path):
    repo = _encrypted(tmp_path)
    data = b"secret password hash " * 5000
    digest, written = repo.put_chunk(data, 3)
    assert digest != hashlib.sha256(data).hexdigest()
    assert digest == crypto.MasterKey(repo.key.secret).chunk_id(data)
    raw = repo.chunk_path(digest).read_bytes()
    assert b"secret password" not in raw and written == len(raw)
    other = _encrypted(tmp_path / "other")
    assert other.chunk_id(data) != digest  # another repository, another key, another name
    assert _reopen(tmp_path, "correct horse").get_chunk(digest, len(data)) == data


def test_wrong_passphrase_is_a_clear_error(tmp_path):
    _encrypted(tmp_path)
    with pytest.raises(WrongPassphrase, match="wrong passphrase .* none of its 1 key slot"):
        _reopen(tmp_path, "Correct horse")


@pytest.mark.parametrize("where", [0, 5, 20, -1])
def test_a_flipped_bit_in_an_encrypted_chunk_is_named(tmp_path, where):
    repo = _encrypted(tmp_path)
    data = os.urandom(3000) * 10
    digest, _ = repo.put_chunk(data, 3)
    _flip(repo.chunk_path(digest), where)
    with pytest.raises(ImageCorrupt, match=f"chunk {digest[:16]} fails authentication"):
        repo.get_chunk(digest, len(data))


def test_a_chunk_moved_to_another_name_fails_authentication(tmp_path):
    repo = _encrypted(tmp_path)
    a, _ = repo.put_chunk(b"a" * 1000, 3)
    b, _ = repo.put_chunk(b"b" * 1000, 3)
    repo.chunk_path(b).write_bytes(repo.chunk_path(a).read_bytes())
    with pytest.raises(ImageCorrupt, match="fails authentication"):
        repo.get_chunk(b, 1000)


@pytest.mark.parametrize("encrypted", [True, False])
def test_a_flipped_bit_in_a_manifest_is_named(tmp_path, encrypted):
    repo = _encrypted(tmp_path) if encrypted else Repository.open(tmp_path / "r", create=True)
    repo.write_manifest("laptop", {"schema": "lifeboat-image", "version": 1, "size": 123456})
    assert repo.read_manifest("laptop")["size"] == 123456
    path = repo.image_dir("laptop") / "manifest.json"
    raw = path.read_bytes()
    at = raw.find(b"123456") + 2 if not encrypted else 40  # a digit: still valid JSON when unencrypted
    _flip(path, at)
    with pytest.raises(ImageCorrupt, match="manifest of image 'laptop'"):
        repo.read_manifest("laptop")


def test_plain_manifests_written_before_checksums_still_open(tmp_path):
    repo = Repository.open(tmp_path / "r", create=True)
    repo.write_manifest("old", {"a": 1})
    (repo.image_dir("old") / "manifest.sha256").unlink()
    assert repo.read_manifest("old") == {"a": 1}


def test_key_slots(tmp_path):
    repo = _encrypted(tmp_path, "first")
    digest, _ = repo.put_chunk(b"x" * 100, 3)
    second = repo.add_key("second", kdf_log_n=FAST)
    assert len(repo.key_slots()) == 2
    assert "second" not in (tmp_path / "r" / "lifeboat-repo.json").read_text()
    by_second = _reopen(tmp_path, "second")
    assert by_second.get_chunk(digest, 100) == b"x" * 100
    first = [s.id for s in repo.key_slots() if s.id != second.id][0]
    by_second.remove_key(first)
    with pytest.raises(WrongPassphrase):
        _reopen(tmp_path, "first")
    with pytest.raises(RepositoryError, match="last one"):
        _reopen(tmp_path, "second").remove_key(second.id)


def test_encrypted_repositories_are_refused_by_older_versions(tmp_path):
    _encrypted(tmp_path)
    meta = json.loads((tmp_path / "r" / "lifeboat-repo.json").read_text())
    assert meta["version"] == 2 and meta["encryption"] == "aes-256-gcm" and meta["hash"] == "hmac-sha256"
    assert repr(_reopen(tmp_path, "correct horse").key) == "MasterKey(…)"


def test_index_lists_complete_images(tmp_path):
    repo = Repository.open(tmp_path / "r", create=True)
    repo.write_manifest("b", {})
    repo.write_manifest("a", {})
    assert json.loads((tmp_path / "r" / "images" / "index.json").read_text()) == {"images": ["a", "b"]}
    repo.delete_image("b")
    assert json.loads((tmp_path / "r" / "images" / "index.json").read_text()) == {"images": ["a"]}


def test_a_plain_repository_where_an_encrypted_one_was_expected_is_refused(tmp_path, monkeypatch, capsys):
    from lifeboat.cli import main

    Repository.open(tmp_path / "r", create=True)
    phrase = tmp_path / "pass"
    phrase.write_text("x\n")
    phrase.chmod(0o600)
    assert main(["images", "--repo", str(tmp_path / "r"), "--passphrase-file", str(phrase)]) == 1
    assert "not encrypted, yet a passphrase was given" in capsys.readouterr().err
    assert main(["images", "--repo", str(tmp_path / "r")]) == 0


def test_older_repositories_get_an_index_when_opened(tmp_path):
    repo = Repository.open(tmp_path / "r", create=True)
    repo.write_manifest("old", {})
    (tmp_path / "r" / "images" / "index.json").unlink()
    Repository.open(tmp_path / "r")
    assert json.loads((tmp_path / "r" / "images" / "index.json").read_text()) == {"images": ["old"]}


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 1_300_000])
def test_sealed_objects_are_the_one_shot_aes_gcm_format_both_ways(size):
    """seal/open use the streaming AES-GCM API (no copies): objects written before (one-shot AESGCM:
    nonce + ciphertext + tag) still open, and what is written now opens with the one-shot API."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    key, data, aad = crypto.MasterKey.new(), os.urandom(size), b"chunk-id"
    nonce = os.urandom(crypto.NONCE)
    before = nonce + AESGCM(key.secret[:32]).encrypt(nonce, data, aad)
    assert key.open(before, aad, "old chunk") == data
    now = key.seal(memoryview(data), aad)
    assert len(now) == size + crypto.OVERHEAD
    assert size == 0 or bytes(now[crypto.NONCE:crypto.NONCE + size]) != data  # encrypted, not copied
    assert AESGCM(key.secret[:32]).decrypt(bytes(now[:crypto.NONCE]), bytes(now[crypto.NONCE:]), aad) == data
    for at in {0, crypto.NONCE + size // 2, len(now) - 1}:
        bad = bytearray(now)
        bad[at] ^= 0x80
        with pytest.raises(ImageCorrupt, match="fails authentication"):
            key.open(bytes(bad), aad, "chunk")
    with pytest.raises(ImageCorrupt, match="fails authentication"):
        key.open(now, b"another-id", "chunk")
