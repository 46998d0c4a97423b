"""The typed image manifest: round trip, the version-1 upgrade, and errors that say which image and field."""

from __future__ import annotations

import copy
import json

import pytest
from imagekit import MiB, office_image, office_manifest

from lifeboat.errors import ImageCorrupt
from lifeboat.fs.registry import CaptureMode
from lifeboat.repo.manifest import (
    SCHEMA_VERSION,
    BlobRef,
    ByteRange,
    ContentKind,
    DataStream,
    EmptyContent,
    FilesystemContent,
    ImageManifest,
    LogicalVolumeImage,
    LuksContent,
    LvmPvContent,
    Origin,
    PartitionImage,
    RawContent,
    SwapContent,
    VolumeGroupImage,
    list_images,
    load_manifest,
)
from lifeboat.repo.store import Repository

D = "ab" * 32  # a well-formed digest


@pytest.fixture
def repo(tmp_path):
    return Repository.open(tmp_path / "repo", create=True)


@pytest.fixture
def office(repo):
    return office_image(repo)


def test_round_trip_is_exact(office):
    data = office.to_json()
    assert data["version"] == SCHEMA_VERSION == 2
    again = ImageManifest.from_json(json.loads(json.dumps(data)), "office")
    assert again == office
    assert again.layout == office.layout
    assert again.to_json() == data


def test_round_trip_of_every_kind_of_content(repo):
    base = office_manifest(repo)
    stream = base.partitions[1].stream
    unreadable = DataStream(stream.map, stream.chunks, stream.used_bytes, (ByteRange(4096, 512), ByteRange(9 * MiB, 4096)))
    luks = LuksContent(2, "luks-uuid", "", "aes-xts-plain64", BlobRef(D, 16 * MiB),
                       FilesystemContent("ext4", "inner", "", unreadable))
    lv = LogicalVolumeImage("root", "lv-uuid", 16 * MiB, RawContent(stream, "", reason="test"))
    vg = VolumeGroupImage("vg0", "vg-uuid", 4 * MiB, BlobRef(D, 1234), (lv,))
    parts = (
        PartitionImage(1, 8 * MiB, EmptyContent()),
        PartitionImage(2, 16 * MiB, luks),
        PartitionImage(3, 4 * MiB, LvmPvContent("vg0", "pv-uuid")),
        PartitionImage(4, 4 * MiB, SwapContent()),
    )
    manifest = ImageManifest(**{**base.__dict__, "partitions": parts, "volume_groups": (vg,),
                                "origin": Origin("clonezilla", "3.1.2", "/home/partimag/x"), "key_ref": "key-1"})
    again = ImageManifest.from_json(json.loads(json.dumps(manifest.to_json())), "x")
    assert again == manifest
    assert [p.content.kind for p in again.partitions] == [ContentKind.EMPTY, ContentKind.LUKS, ContentKind.LVM_PV,
                                                          ContentKind.SWAP]
    assert [p.fstype for p in again.partitions] == ["", "crypto_LUKS", "LVM2_member", "swap"]
    assert D in again.referenced_chunks() and stream.chunks[0].digest in again.referenced_chunks()
    assert again.summary().origin == "clonezilla"


def test_partition_helpers(office):
    esp, root, swap, raw = office.partitions
    assert (esp.title, root.title, swap.title, raw.title) == (
        "partition 1 (vfat)", "partition 2 (ext4)", "partition 3 (swap)", "partition 4 (raw)")
    assert (root.mode, swap.mode, raw.mode) == (CaptureMode.USED_BLOCKS, CaptureMode.SWAP, CaptureMode.RAW)
    assert swap.stream is None and swap.used_bytes == 0 and swap.uuid.startswith("5a5a")
    assert root.used_bytes == 65536 + 4096 + 4096 and [c.window for c in root.stream.chunks] == [0, 1, 2]
    assert office.partition(2) is root and office.partition(9) is None
    assert office.data_bytes == sum(p.used_bytes for p in office.partitions)


def test_referenced_chunks_cover_boot_regions_maps_and_data(repo, office):
    refs = set(office.referenced_chunks())
    assert {p.name[:-4] for p in repo.all_chunks()} == refs  # every stored chunk, nothing else
    assert len(refs) == 2 + 3 + (2 + 3 + 1)  # regions, maps, data chunks


def test_summary_keeps_the_images_json_keys(office):
    summary = office.summary().to_json()
    assert {"name", "created", "source_model", "source_serial", "source_size", "table", "partitions",
            "data_bytes"} <= set(summary)
    assert summary["partitions"][2] == {"number": 3, "fstype": "swap", "size": 4 * MiB, "used_bytes": 0, "note": "",
                                     "unreadable_bytes": 0}
    assert summary["partitions"][3]["fstype"] == "raw"
    assert (summary["table"], summary["source_model"], summary["data_bytes"]) == ("gpt", "Office PC disk",
                                                                                 office.data_bytes)


def v1_of(manifest: ImageManifest) -> dict:
    """The same image as Lifeboat's version-1 capture wrote it (engine/capture.py before the typed model)."""
    data = manifest.to_json()
    parts = []
    for p in manifest.partitions:
        record = {"number": p.number, "fstype": p.fstype, "mode": str(p.mode), "size": p.size, "uuid": p.uuid,
                  "label": p.label}
        if p.stream:
            record.update(used_bytes=p.used_bytes,
                          map={"chunk": p.stream.map.digest, "length": p.stream.map.length, "runs": p.stream.map.runs},
                          chunks=[[c.window, c.digest, c.length] for c in p.stream.chunks])
        parts.append(record)
    for key in ("volume_groups", "origin", "key_ref"):
        del data[key]
    del data["source"]["sector_size"]
    return {**data, "version": 1, "partitions": parts}


def test_version_1_is_upgraded(repo, office):
    repo.write_manifest("old", v1_of(office))
    old = load_manifest(repo, "old")
    assert old.partitions == tuple(
        PartitionImage(p.number, p.size, RawContent(p.stream) if isinstance(p.content, RawContent) else p.content)
        for p in office.partitions)  # a v1 raw partition had no reason
    assert old.boot_regions == office.boot_regions and old.layout == office.layout and old.stats == office.stats
    assert old.origin is None and old.key_ref == "" and old.volume_groups == ()
    expected = office.summary().to_json()
    expected["partitions"] = [{**p, "note": ""} for p in expected["partitions"]]  # nor a note, which is the reason
    assert old.summary().to_json() == {**expected, "name": "office"}


def test_listing_names_unreadable_images(repo, office):
    repo.write_manifest("broken", {**office.to_json(), "partitions": "nope"})
    listing = {i.name: i for i in list_images(repo)}
    assert listing["office"].summary == office.summary() and not listing["office"].problem
    assert listing["broken"].summary is None
    assert listing["broken"].problem == ("image 'broken': manifest is malformed: partitions: expected a list, "
                                         "found 'nope'")


def _set(data: dict, path: tuple, value) -> None:
    for key in path[:-1]:
        data = data[key]
    if value is KeyError:
        del data[path[-1]]
    else:
        data[path[-1]] = value


STREAM = ("partitions", 1, "content", "stream")
BAD = [
    (("layout",), KeyError, "layout: missing"),
    (("layout", "label"), "sun", "layout: label 'sun'"),
    (("layout", "partitions"), [{"start": 1}], "layout: not a partition table"),
    (("chunk_size",), 1024, "chunk_size: chunk size 1024 is not 4194304"),
    (("hash",), "md5", "hash: hash 'md5' is not sha256"),
    (("name",), "", "name: expected a non-empty string, found ''"),
    (("source", "size"), "40M", "source.size: expected a whole number, found '40M'"),
    (("boot_regions", 0, "chunk"), "xyz", "boot_regions[0].chunk: 'xyz' is not a sha256 digest"),
    (("boot_regions", 1, "offset"), -5, "boot_regions[1].offset: -5 is below 0"),
    (("partitions", 0), "p1", "partitions[0]: expected an object, found 'p1'"),
    (("partitions", 0, "number"), 7, "partitions[0].number: partition 7 is not in the image's partition table"),
    (("partitions", 1, "number"), 1, "partitions[1].number: partition 1 appears twice"),
    (("partitions", 1, "size"), 1, "partitions[1].size: 1 bytes, but partition 2 of the table has 16777216"),
    (("partitions", 1, "content", "kind"), "zfs", "partitions[1].content.kind: 'zfs' is not one of filesystem"),
    (("partitions", 1, "content", "fstype"), "", "partitions[1].content.fstype: expected a non-empty string"),
    ((*STREAM, "map"), KeyError, "partitions[1].content.stream.map: missing"),
    ((*STREAM, "map", "chunk"), "AB" * 32, "partitions[1].content.stream.map.chunk: 'ABAB"),
    ((*STREAM, "chunks", 1), [1, "ab"], "partitions[1].content.stream.chunks[1]: expected [window, digest, length]"),
    ((*STREAM, "chunks", 1, 1), "x" * 64, "partitions[1].content.stream.chunks[1]: 'xxxx"),
    ((*STREAM, "chunks", 1, 0), 0, "partitions[1].content.stream.chunks[1]: window 0 does not follow window 0"),
    ((*STREAM, "chunks", 2, 0), 4, "partitions[1].content.stream.chunks[2]: window 4 starts at byte 16777216, beyond"),
    ((*STREAM, "chunks", 2, 2), 5 * MiB, "partitions[1].content.stream.chunks[2]: length 5242880 is larger"),
    ((*STREAM, "chunks", 2, 2), True, "partitions[1].content.stream.chunks[2]: expected a whole number, found True"),
    ((*STREAM, "used_bytes"), 1, "partitions[1].content.stream.used_bytes: 1 bytes used, but the chunks hold 73728"),
    ((*STREAM, "unreadable"), [[16 * MiB - 1, 2]], "partitions[1].content.stream.unreadable[0]: range ends at byte"),
    (("volume_groups",), [{"name": "vg"}], "volume_groups[0].extent_size: missing"),
    (("origin",), {"tool": ""}, "origin.tool: expected a non-empty string"),
    (("key_ref",), 5, "key_ref: expected a string, found 5"),
]


@pytest.mark.parametrize(("path", "value", "message"), BAD, ids=[".".join(map(str, b[0])) for b in BAD])
def test_every_malformed_field_is_named(office, path, value, message):
    data = copy.deepcopy(office.to_json())
    _set(data, path, value)
    with pytest.raises(ImageCorrupt) as caught:
        ImageManifest.from_json(data, "office")
    assert str(caught.value).startswith("image 'office': manifest is malformed: ")
    assert message in str(caught.value)


BAD_V1 = [
    (("partitions", 1, "mode"), "zfs", "partitions[1].mode: 'zfs' is not one of used-blocks, raw, swap"),
    (("partitions", 1, "chunks"), KeyError, "partitions[1].content.stream.chunks: missing"),
    (("partitions", 1, "chunks", 0, 2), "4096", "partitions[1].content.stream.chunks[0]: expected a whole number"),
    (("partitions", 3, "used_bytes"), 10, "partitions[3].content.stream.used_bytes: 10 bytes used"),
]


@pytest.mark.parametrize(("path", "value", "message"), BAD_V1, ids=[".".join(map(str, b[0])) for b in BAD_V1])
def test_malformed_version_1_fields_are_named(office, path, value, message):
    data = v1_of(office)
    _set(data, path, value)
    with pytest.raises(ImageCorrupt, match="^image 'office': manifest is malformed: ") as caught:
        ImageManifest.from_json(data, "office")
    assert message in str(caught.value)


@pytest.mark.parametrize(("change", "message"), [
    ({"version": 99}, "image 'office': manifest schema version 99 is not supported (this Lifeboat reads versions 1, 2)"),
    ({"version": "2"}, "manifest schema version '2' is not supported"),
    ({"version": True}, "manifest schema version True is not supported"),
    ({"schema": "clonezilla"}, "image 'office': not a Lifeboat image manifest (schema 'clonezilla')"),
])
def test_unknown_schema_or_version(office, change, message):
    with pytest.raises(ImageCorrupt) as caught:
        ImageManifest.from_json({**office.to_json(), **change}, "office")
    assert message in str(caught.value)


def test_not_an_object():
    with pytest.raises(ImageCorrupt, match=r"^image 'x': manifest is malformed: expected an object, found \[1\]"):
        ImageManifest.from_json([1], "x")


def test_models_are_frozen(office):
    with pytest.raises(AttributeError):
        office.partitions[0].number = 3  # type: ignore[misc]
