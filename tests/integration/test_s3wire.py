"""Chunks' GETs and PUTs sent without boto3's per-call machinery (repo/s3wire.py), against the real S3 server
the other network tests use (`rclone serve s3` on 127.0.0.1, netservers.py): what one path writes the other
reads byte for byte, any answer but a success goes to boto3 (so a missing object is still ObjectMissing), a
kept-alive connection the server dropped is replaced without a retry's back-off, and a proxy for the
endpoint leaves every request to boto3 (which knows proxies)."""

from __future__ import annotations

import os

import pytest
from netservers import rclone_s3

from lifeboat.repo import backend as backend_module
from lifeboat.repo.backend import ObjectMissing
from lifeboat.repo.credentials import Credentials
from lifeboat.repo.location import parse_location
from lifeboat.repo.s3 import S3Backend
from lifeboat.repo.s3wire import Wire

pytestmark = pytest.mark.integration


@pytest.fixture
def s3(tmp_path, monkeypatch):
    server = rclone_s3(tmp_path / "s3").start()
    for key, value in server.extra["env"].items():
        monkeypatch.setenv(key, value)
    for key in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(key, raising=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def backend(s3):
    opened = S3Backend(parse_location("s3://lifeboat/wire"), Credentials())
    try:
        yield opened
    finally:
        opened.close()


def test_wire_and_boto3_read_each_others_objects(backend, s3):
    assert backend._wire is not None
    ours, theirs = os.urandom(1_300_001), os.urandom(70_001)
    backend.write("chunks/ab/ours.zst", memoryview(ours))  # a bytes-like body goes as it is
    assert backend.client.get_object(Bucket="lifeboat", Key="wire/chunks/ab/ours.zst")["Body"].read() == ours
    assert (s3.extra["data"] / "lifeboat" / "wire" / "chunks" / "ab" / "ours.zst").read_bytes() == ours
    backend.client.put_object(Bucket="lifeboat", Key="wire/chunks/cd/theirs.zst", Body=theirs)
    assert backend._wire.get("wire/chunks/cd/theirs.zst") == theirs
    assert backend.read("chunks/cd/theirs.zst") == theirs
    assert backend.size("chunks/ab/ours.zst") == len(ours)


def test_a_missing_object_is_left_to_boto3(backend):
    assert backend._wire.get("wire/chunks/00/none.zst") is None
    with pytest.raises(ObjectMissing):
        backend.read("chunks/00/none.zst")


def test_a_connection_the_server_dropped_is_replaced_without_back_off(backend, s3, monkeypatch):
    backend.write("chunks/ef/kept.zst", b"kept")
    assert backend.read("chunks/ef/kept.zst") == b"kept"
    assert backend._wire._idle  # kept alive for the next request
    s3.kill()  # every connection goes with it
    s3.start()  # the same port and directory
    sleeps = []
    monkeypatch.setattr(backend_module.time, "sleep", sleeps.append)
    assert backend.read("chunks/ef/kept.zst") == b"kept"
    assert sleeps == []  # replaced at once, not retried after 0.5 s


def test_a_proxy_for_the_endpoint_leaves_every_request_to_boto3(backend, monkeypatch):
    creds = backend._wire.credentials
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    assert Wire.for_client(backend.client, creds, "lifeboat", verify=True, connect_timeout=1, read_timeout=1) is None
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert Wire.for_client(backend.client, creds, "lifeboat", verify=True, connect_timeout=1, read_timeout=1) is not None
    assert Wire.for_client(backend.client, None, "lifeboat", verify=True, connect_timeout=1, read_timeout=1) is None
