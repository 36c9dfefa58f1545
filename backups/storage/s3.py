"""S3-compatible object storage: multipart uploads that carry their sha256, a folder as one object per file, and
credentials from deployment configuration only (a profile of S3_CREDENTIALS_FILE), never in an error message."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import boto3
import botocore.session
from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings

from backups import files
from backups.models import StorageLocation
from backups.storage.base import (
    MB,
    Progress,
    Stat,
    Storage,
    StorageError,
    checksum_mismatch,
    safe_key,
    tree_stat,
    visible,
)
from backups.storage.local import replace_folder


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
                replace_folder(temp, dest)
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
