"""Places backups are kept — a local folder, or S3-compatible object storage — behind one small interface.

A backup is a file, or a folder (pg_dump's directory format). A storage can `put` one under a key, `fetch`
it back, `stat` it (size and sha256 as recorded), `check` it (size and sha256 of the bytes actually stored,
read back) and `delete` it. Its sha256 is the file's, or for a folder `files.combined_sha256` of its
files'. Nothing is under a final name until it is whole: a local file or folder is written under a
temporary name and renamed; an S3 object appears only when its (multipart) upload completes, and a folder
whose upload failed is removed again. Credentials of S3 locations come from deployment configuration (a
profile of the shared credentials file named by S3_CREDENTIALS_FILE, or the standard AWS variables), never
from the database, and never appear in an error message.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import boto3
import botocore.session
from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings

from backups import files, locations
from backups.models import StorageLocation

Progress = Callable[[int], None]  # called with the number of bytes just transferred
MB = 1024 * 1024


@dataclass(frozen=True)
class Stat:
    size: int
    sha256: str


class StorageError(Exception):
    """A storage operation failed; the message says where and why (never with a credential)."""


def safe_key(key: str) -> str:
    """A relative key without `..`: a key never reaches outside its location."""
    path = PurePosixPath(key)
    if not key or path.is_absolute() or ".." in path.parts:
        raise StorageError(f"refusing key {key!r}: keys are relative paths without '..'")
    return path.as_posix()


def source_stat(source: Path) -> Stat:
    """Size and sha256 of a local file or folder, read from disk."""
    if source.is_dir():
        size, digest, _ = files.tree_digest(source)
        return Stat(size, digest)
    return Stat(source.stat().st_size, files.sha256_of(source))


def tree_stat(stats: dict[str, Stat]) -> Stat:
    """A folder's size and sha256 from its files' (relative name -> Stat)."""
    return Stat(sum(s.size for s in stats.values()), files.combined_sha256({r: s.sha256 for r, s in stats.items()}))


def checksum_mismatch(where: str, expected: str, found: str) -> StorageError:
    return StorageError(f"{where}: checksum mismatch: expected sha256 {expected[:16]}…, found {found[:16]}…")


class Storage(ABC):
    def __init__(self, location: StorageLocation) -> None:
        self.location = location

    @abstractmethod
    def where(self, key: str) -> str:
        """A human-readable address of `key`: a path or an s3:// URL (no credential)."""

    @abstractmethod
    def put(self, source: Path, key: str, *, sha256: str, progress: Progress | None = None) -> None:
        """Store the file or folder `source` under `key`; refuse if its bytes do not hash to `sha256`."""

    @abstractmethod
    def fetch(self, key: str, dest: Path, *, progress: Progress | None = None) -> Stat:
        """Bring `key` back to the local path `dest` (a file or a folder, whole or not at all)."""

    @abstractmethod
    def stat(self, key: str) -> Stat | None:
        """Size and sha256 as recorded (S3: object metadata; local: the bytes); None if absent."""

    @abstractmethod
    def check(self, key: str) -> Stat | None:
        """Size and sha256 of the bytes as stored, read back in full; None if absent."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove `key` (a file or a folder); absent is fine."""

    @abstractmethod
    def keys(self, suffix: str) -> Iterator[str]:
        """Every file's key that ends with `suffix`, leaving out hidden names (temporary files, the marker)."""


def visible(key: str) -> bool:
    return not any(part.startswith(".") for part in PurePosixPath(key).parts)


def for_location(location: StorageLocation) -> Storage:
    if location.kind == StorageLocation.Kind.S3:
        return S3Storage(location)
    return LocalStorage(location)


# --- Local folders -------------------------------------------------------------------------------------


class LocalStorage(Storage):
    """Every operation first checks the folder (`locations.check_ready`): allowed, and carrying this
    location's marker. A disk that is not mounted is refused, never written to (or read as empty) in its stead."""

    def __init__(self, location: StorageLocation) -> None:
        super().__init__(location)
        self.root = Path(location.root)

    def path(self, key: str) -> Path:
        return self.root / safe_key(key)

    def ready(self) -> None:
        try:
            locations.check_ready(self.location)
        except locations.LocationError as exc:
            raise StorageError(str(exc)) from exc

    def checked_path(self, key: str) -> Path:
        self.ready()
        return self.path(key)

    def where(self, key: str) -> str:
        return str(self.path(key))

    def put(self, source: Path, key: str, *, sha256: str, progress: Progress | None = None) -> None:
        final = self.checked_path(key)
        copy = copy_tree if source.is_dir() else copy_file
        try:
            copy(source, final, sha256, progress)
        except OSError as exc:
            raise StorageError(f"{final}: {exc.strerror or exc}") from exc

    def fetch(self, key: str, dest: Path, *, progress: Progress | None = None) -> Stat:
        source = self.checked_path(key)
        if not source.exists():
            raise StorageError(f"{source}: not found")
        try:
            copy = copy_tree if source.is_dir() else copy_file
            return copy(source, dest, None, progress)
        except OSError as exc:
            raise StorageError(f"{dest}: {exc.strerror or exc}") from exc

    def stat(self, key: str) -> Stat | None:
        return self.check(key)

    def check(self, key: str) -> Stat | None:
        path = self.checked_path(key)
        if not path.exists():
            return None
        try:
            return source_stat(path)
        except OSError as exc:
            raise StorageError(f"{path}: {exc.strerror or exc}") from exc

    def delete(self, key: str) -> None:
        path = self.checked_path(key)
        try:
            _remove(path)
        except OSError as exc:
            raise StorageError(f"{path}: {exc.strerror or exc}") from exc

    def keys(self, suffix: str) -> Iterator[str]:
        self.ready()
        for top, folders, names in os.walk(self.root):
            folders[:] = sorted(f for f in folders if not f.startswith("."))
            for name in sorted(n for n in names if n.endswith(suffix) and not n.startswith(".")):
                yield Path(top, name).relative_to(self.root).as_posix()


def copy_file(source: Path, final: Path, sha256: str | None, progress: Progress | None = None) -> Stat:
    """Copy a file to `final` through `files.atomic_file`; with `sha256`, nothing is renamed into place
    unless the bytes read hash to it."""
    with files.atomic_file(final) as out, open(source, "rb") as src:
        while chunk := src.read(files.CHUNK):
            out.write(chunk)
            if progress:
                progress(len(chunk))
        if sha256 is not None and out.sha256 != sha256:
            raise checksum_mismatch(str(source), sha256, out.sha256)
    return Stat(out.size, out.sha256)


def copy_tree(source: Path, final: Path, sha256: str | None, progress: Progress | None = None) -> Stat:
    """Copy a folder to a temporary folder beside `final`, fsync it, then rename it into place; with
    `sha256`, only if the files read hash to it."""
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = files.temp_name(final)
    shutil.rmtree(temp, ignore_errors=True)
    try:
        stats = {path.relative_to(source).as_posix(): copy_file(path, temp / path.relative_to(source), None, progress)
                 for path in sorted(p for p in source.rglob("*") if p.is_file())}
        found = tree_stat(stats)
        if sha256 is not None and found.sha256 != sha256:
            raise checksum_mismatch(str(source), sha256, found.sha256)
        temp.mkdir(exist_ok=True)
        files.fsync_tree(temp)
        _replace_folder(temp, final)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return found


def _replace_folder(temp: Path, final: Path) -> None:
    old = final.with_name(f".old-{final.name}")
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(temp, final)
    files.fsync_dir(final.parent)
    shutil.rmtree(old, ignore_errors=True)


def _remove(path: Path) -> None:
    """Remove a file or folder; a folder is first renamed, so no half-deleted folder keeps its name."""
    if path.is_dir():
        doomed = path.with_name(f".deleting-{path.name}")
        os.replace(path, doomed)
        files.fsync_dir(path.parent)
        shutil.rmtree(doomed)
    elif path.exists():
        path.unlink()
        files.fsync_dir(path.parent)


# --- S3-compatible object storage -----------------------------------------------------------------------


def s3_client(location: StorageLocation) -> Any:
    core = botocore.session.Session()
    if settings.S3_CREDENTIALS_FILE:
        core.set_config_variable("credentials_file", str(settings.S3_CREDENTIALS_FILE))
    try:
        session = boto3.Session(botocore_session=core, profile_name=location.credentials_profile or None)
    except BotoCoreError as exc:
        raise StorageError(f"S3 location {location.name}: {exc}") from exc
    config = Config(
        connect_timeout=settings.S3_CONNECT_TIMEOUT,
        read_timeout=settings.S3_READ_TIMEOUT,
        retries={"max_attempts": settings.S3_MAX_ATTEMPTS, "mode": "standard"},
        s3={"addressing_style": settings.S3_ADDRESSING_STYLE},
    )
    return session.client("s3", endpoint_url=location.endpoint_url or None, region_name=location.region or None,
                          config=config)


def transfer_config() -> TransferConfig:
    # Memory stays near max_concurrency x multipart_chunksize whatever the file's size.
    return TransferConfig(
        multipart_threshold=settings.S3_MULTIPART_THRESHOLD_MB * MB,
        multipart_chunksize=settings.S3_MULTIPART_CHUNK_MB * MB,
        max_concurrency=settings.S3_MAX_CONCURRENCY,
    )


class S3Storage(Storage):
    """A folder backup is one object per file under `<key>/`; each object carries its sha256 as metadata
    and is uploaded with an SHA256 checksum that the server checks on receipt."""

    def __init__(self, location: StorageLocation) -> None:
        super().__init__(location)
        self.bucket = location.bucket
        self.prefix = location.prefix.strip("/")
        self.client = s3_client(location)

    def object_key(self, key: str) -> str:
        key = safe_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def where(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.object_key(key)}"

    @contextmanager
    def errors(self, doing: str, key: str) -> Iterator[None]:
        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise StorageError(f"{doing} {self.where(key)}: {error.get('Code')}: {error.get('Message')}") from exc
        except (BotoCoreError, Boto3Error, OSError) as exc:
            raise StorageError(f"{doing} {self.where(key)}: {exc}") from exc

    def put(self, source: Path, key: str, *, sha256: str, progress: Progress | None = None) -> None:
        with self.errors("upload to", key):
            if source.is_dir():
                self._put_tree(source, key, sha256, progress)
            else:
                found = files.sha256_of(source)
                if found != sha256:
                    raise checksum_mismatch(str(source), sha256, found)
                self._upload(source, self.object_key(key), found, progress)

    def _upload(self, source: Path, object_key: str, sha256: str, progress: Progress | None) -> None:
        self.client.upload_file(
            str(source), self.bucket, object_key, Config=transfer_config(), Callback=progress,
            ExtraArgs={"Metadata": {"sha256": sha256}, "ChecksumAlgorithm": "SHA256"},
        )

    def _put_tree(self, source: Path, key: str, sha256: str, progress: Progress | None) -> None:
        hashes = {path.relative_to(source).as_posix(): files.sha256_of(path)
                  for path in source.rglob("*") if path.is_file()}
        found = files.combined_sha256(hashes)
        if found != sha256:
            raise checksum_mismatch(str(source), sha256, found)
        try:
            for rel, file_sha in hashes.items():
                self._upload(source / rel, f"{self.object_key(key)}/{rel}", file_sha, progress)
        except BaseException:
            self._delete_tree(key)
            raise

    def _head(self, object_key: str) -> dict[str, Any] | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=object_key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def _tree_keys(self, key: str) -> list[str]:
        prefix = f"{self.object_key(key)}/"
        keys: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            keys += [item["Key"] for item in page.get("Contents", [])]
        return keys

    def _rel(self, key: str, object_key: str) -> str:
        return object_key[len(self.object_key(key)) + 1:]

    def stat(self, key: str) -> Stat | None:
        with self.errors("stat", key):
            head = self._head(self.object_key(key))
            if head is not None:
                return Stat(head["ContentLength"], head.get("Metadata", {}).get("sha256", ""))
            heads = {self._rel(key, k): self._head(k) or {} for k in self._tree_keys(key)}
            recorded = {r: Stat(h.get("ContentLength", 0), h.get("Metadata", {}).get("sha256", ""))
                        for r, h in heads.items()}
            return tree_stat(recorded) if recorded else None

    def check(self, key: str) -> Stat | None:
        with self.errors("read back", key):
            if self._head(self.object_key(key)) is not None:
                return self._read(self.object_key(key), None)
            keys = self._tree_keys(key)
            if not keys:
                return None
            return tree_stat({self._rel(key, k): self._read(k, None) for k in keys})

    def _read(self, object_key: str, sink: BinaryIO | None, progress: Progress | None = None) -> Stat:
        """Stream one object through sha256 (and into `sink`), in bounded memory."""
        body = self.client.get_object(Bucket=self.bucket, Key=object_key)["Body"]
        sha, size = hashlib.sha256(), 0
        for chunk in body.iter_chunks(files.CHUNK):
            sha.update(chunk)
            size += len(chunk)
            if sink is not None:
                sink.write(chunk)
            if progress:
                progress(len(chunk))
        return Stat(size, sha.hexdigest())

    def fetch(self, key: str, dest: Path, *, progress: Progress | None = None) -> Stat:
        with self.errors("download", key):
            if self._head(self.object_key(key)) is not None:
                return self._fetch_file(self.object_key(key), dest, progress)
            keys = self._tree_keys(key)
            if not keys:
                raise StorageError(f"{self.where(key)}: not found")
            temp = files.temp_name(dest)
            shutil.rmtree(temp, ignore_errors=True)
            try:
                rels = {safe_key(self._rel(key, k)): k for k in keys}
                stats = {rel: self._fetch_file(k, temp / rel, progress) for rel, k in rels.items()}
                files.fsync_tree(temp)
                _replace_folder(temp, dest)
            except BaseException:
                shutil.rmtree(temp, ignore_errors=True)
                raise
            return tree_stat(stats)

    def _fetch_file(self, object_key: str, dest: Path, progress: Progress | None) -> Stat:
        expected = (self._head(object_key) or {}).get("Metadata", {}).get("sha256", "")
        with files.atomic_file(dest) as out:
            stat = self._read(object_key, out, progress)  # type: ignore[arg-type]
            if expected and stat.sha256 != expected:
                raise checksum_mismatch(f"s3://{self.bucket}/{object_key}", expected, stat.sha256)
        return stat

    def delete(self, key: str) -> None:
        with self.errors("delete", key):
            self.client.delete_object(Bucket=self.bucket, Key=self.object_key(key))
            self._delete_tree(key)

    def keys(self, suffix: str) -> Iterator[str]:
        start = f"{self.prefix}/" if self.prefix else ""
        with self.errors("list", f"*{suffix}"):
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=start):
                for item in page.get("Contents", []):
                    key = item["Key"][len(start):]
                    if key.endswith(suffix) and visible(key):
                        yield key

    def _delete_tree(self, key: str) -> None:
        keys = self._tree_keys(key)
        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start:start + 1000]]
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})


# --- Both -----------------------------------------------------------------------------------------------


def probe(location: StorageLocation) -> str:
    """Write, read back and delete a small object: the outcome of "test connection"."""
    store = for_location(location)
    key = f".portal-connection-test/{uuid.uuid4().hex}"
    payload = os.urandom(4096)
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "probe"
        source.write_bytes(payload)
        expected = hashlib.sha256(payload).hexdigest()
        store.put(source, key, sha256=expected)
        try:
            found = store.check(key)
        finally:
            store.delete(key)
    if found != Stat(len(payload), expected):
        raise StorageError(f"{store.where(key)}: read back {found}, wrote {len(payload)} bytes sha256 {expected}")
    if store.stat(key) is not None:
        raise StorageError(f"{store.where(key)}: still present after delete")
    return f"wrote, read back and deleted {len(payload)} bytes at {store.where(key)}"


class ByteCounter:
    """A thread-safe running total for progress callbacks (S3 transfers call back from several threads)."""

    def __init__(self, report: Callable[[int], None]) -> None:
        self.done = 0
        self._lock = threading.Lock()
        self._report = report

    def __call__(self, count: int) -> None:
        with self._lock:
            self.done += count
            self._report(self.done)
