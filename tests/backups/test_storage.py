"""One interface for a place backups are kept: a local folder and a real S3-compatible server (moto_server)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from backups import files
from backups.models import StorageLocation
from backups.storage import backends, locations
from tests.backups import conftest
from tests.backups.conftest import BUCKET, dump

pytestmark = pytest.mark.django_db


def local_location(root: Path, name: str = "second-disk") -> StorageLocation:
    return conftest.local_location(name, root)


@pytest.fixture
def dump_file(sample_database, tmp_path: Path) -> tuple[Path, backends.Stat]:
    final = tmp_path / "src" / "paws360.dump"
    size, sha = dump(sample_database, final)
    return final, backends.Stat(size, sha)


@pytest.fixture
def dump_folder(sample_database, tmp_path: Path) -> tuple[Path, backends.Stat]:
    final = tmp_path / "src" / "paws360.dir"
    final.parent.mkdir(parents=True, exist_ok=True)
    size, sha = dump(sample_database, final, "directory")
    return final, backends.Stat(size, sha)


def test_it_puts_stats_fetches_and_deletes_a_dump_file_locally(dump_file, tmp_path: Path):
    source, expected = dump_file
    store = backends.for_location(local_location(tmp_path / "second"))
    store.put(source, "logical/a.dump", sha256=expected.sha256)
    assert (tmp_path / "second" / "logical" / "a.dump").read_bytes() == source.read_bytes()
    assert store.stat("logical/a.dump") == expected == store.check("logical/a.dump")
    assert store.fetch("logical/a.dump", tmp_path / "back" / "a.dump") == expected
    assert files.sha256_of(tmp_path / "back" / "a.dump") == expected.sha256
    store.delete("logical/a.dump")
    assert store.stat("logical/a.dump") is None
    store.delete("logical/a.dump")  # absent is fine


def test_a_local_put_refuses_a_source_that_does_not_match_its_checksum(dump_file, tmp_path: Path):
    source, _ = dump_file
    store = backends.for_location(local_location(tmp_path / "second"))
    with pytest.raises(backends.StorageError, match="checksum mismatch"):
        store.put(source, "a.dump", sha256=hashlib.sha256(b"something else").hexdigest())
    assert [p.name for p in (tmp_path / "second").iterdir()] == [locations.MARKER]


def test_it_copies_a_directory_format_dump_as_a_folder(dump_folder, tmp_path: Path):
    source, expected = dump_folder
    assert (source / "toc.dat").exists()
    store = backends.for_location(local_location(tmp_path / "second"))
    store.put(source, "logical/a.dir", sha256=expected.sha256)
    assert store.check("logical/a.dir") == expected
    assert sorted(p.name for p in (tmp_path / "second" / "logical").iterdir()) == ["a.dir"]
    store.delete("logical/a.dir")
    assert not (tmp_path / "second" / "logical" / "a.dir").exists()


def test_s3_puts_a_file_with_its_sha256_as_metadata_and_reads_it_back(dump_file, s3_location, s3_server,
                                                                      tmp_path: Path):
    source, expected = dump_file
    store = backends.for_location(s3_location)
    store.put(source, "logical/a.dump", sha256=expected.sha256)
    head = s3_server.client().head_object(Bucket=BUCKET, Key="paws360/backups/logical/a.dump")
    assert head["Metadata"]["sha256"] == expected.sha256
    assert store.stat("logical/a.dump") == expected == store.check("logical/a.dump")
    assert store.fetch("logical/a.dump", tmp_path / "back.dump") == expected
    assert (tmp_path / "back.dump").read_bytes() == source.read_bytes()
    store.delete("logical/a.dump")
    assert store.stat("logical/a.dump") is None


def test_s3_keeps_a_folder_as_one_object_per_file_and_fetches_it_whole(dump_folder, s3_location, tmp_path: Path):
    source, expected = dump_folder
    store = backends.for_location(s3_location)
    store.put(source, "logical/a.dir", sha256=expected.sha256)
    assert store.stat("logical/a.dir") == expected == store.check("logical/a.dir")
    back = tmp_path / "back" / "a.dir"
    assert store.fetch("logical/a.dir", back) == expected
    assert files.tree_digest(back)[1] == expected.sha256
    store.delete("logical/a.dir")
    assert store.stat("logical/a.dir") is None


def test_s3_uploads_big_files_in_parts(settings, s3_location, s3_server, tmp_path: Path):
    settings.S3_MULTIPART_THRESHOLD_MB = settings.S3_MULTIPART_CHUNK_MB = 5  # S3's smallest part
    big = tmp_path / "big.dump"
    big.write_bytes(os.urandom(12 * 1024 * 1024))
    sha = files.sha256_of(big)
    sent: list[int] = []
    backends.for_location(s3_location).put(big, "big.dump", sha256=sha, progress=sent.append)
    head = s3_server.client().head_object(Bucket=BUCKET, Key="paws360/backups/big.dump")
    assert head["ETag"].strip('"').endswith("-3")  # three parts: 5 + 5 + 2 MB
    assert sum(sent) == 12 * 1024 * 1024
    assert backends.for_location(s3_location).check("big.dump") == backends.Stat(12 * 1024 * 1024, sha)


def test_s3_check_reads_the_bytes_so_it_sees_an_object_changed_behind_its_metadata(dump_file, s3_location,
                                                                                  s3_server):
    source, expected = dump_file
    store = backends.for_location(s3_location)
    store.put(source, "a.dump", sha256=expected.sha256)
    data = bytearray(source.read_bytes())
    data[len(data) // 2] ^= 0xFF
    s3_server.client().put_object(Bucket=BUCKET, Key="paws360/backups/a.dump", Body=bytes(data),
                                  Metadata={"sha256": expected.sha256})
    assert store.stat("a.dump") == expected  # the metadata still says so...
    found = store.check("a.dump")
    assert found.size == expected.size and found.sha256 != expected.sha256  # ...the bytes do not


def test_keys_never_reach_outside_the_location(tmp_path: Path):
    store = backends.for_location(local_location(tmp_path / "second"))
    for key in ("../etc/passwd", "/etc/passwd", "a/../../b", ""):
        with pytest.raises(backends.StorageError, match="refusing key"):
            store.stat(key)


def test_probe_writes_reads_and_deletes_a_small_object(s3_location, s3_server):
    assert "wrote, read back and deleted 4096 bytes" in backends.probe(s3_location)
    listed = s3_server.client().list_objects_v2(Bucket=BUCKET)
    assert listed.get("KeyCount", 0) == 0


def test_probe_reports_a_stopped_server_without_credentials_in_the_message(s3_location, s3_server):
    s3_server.stop()
    with pytest.raises(backends.StorageError) as caught:
        backends.probe(s3_location)
    assert "Could not connect to the endpoint URL" in str(caught.value)
    assert "offsite-test" not in str(caught.value)  # the key id of the profile


def test_an_unknown_credentials_profile_is_a_clear_error(s3_location):
    s3_location.credentials_profile = "nobody"
    with pytest.raises(backends.StorageError, match="nobody"):
        backends.for_location(s3_location)


def test_a_wrong_bucket_is_a_clear_error(dump_file, s3_location):
    source, expected = dump_file
    s3_location.bucket = "no-such-bucket"
    with pytest.raises(backends.StorageError, match="NoSuchBucket"):
        backends.for_location(s3_location).put(source, "a.dump", sha256=expected.sha256)
