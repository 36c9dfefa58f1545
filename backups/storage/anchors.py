"""Where the audit chain's head is anchored: every backup location (`portal.anchors` says why).

A local location keeps `audit-anchors.jsonl` at its root, one anchor a line, appended and fsynced; a folder that is
not there (an unmounted disk) is an error, never created. An S3 location keeps one small object per anchor under
`<prefix>/audit-anchors/<instance>/<database>/`, since objects cannot be appended to.
"""

from __future__ import annotations

import os
from pathlib import Path

from backups import files
from backups.models import StorageLocation
from backups.storage.backends import S3Storage
from portal.anchors import Anchor, AnchorStore

FILE_NAME = "audit-anchors.jsonl"
S3_FOLDER = "audit-anchors"


class LocalAnchors:
    def __init__(self, location: StorageLocation) -> None:
        self.root = Path(location.root)
        self.path = self.root / FILE_NAME
        self.name = str(self.path)

    def append(self, anchor: Anchor) -> None:
        if not self.root.is_dir():
            raise OSError(f"{self.root} is not there (is its disk mounted?)")
        created = not self.path.exists()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, (anchor.to_json() + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            files.fsync_dir(self.root)

    def read(self, instance: str, database: str) -> tuple[list[Anchor], list[str]]:
        if not self.path.exists():
            return [], []
        found, problems = [], []
        with open(self.path, encoding="utf-8", errors="replace") as lines:
            for number, line in enumerate(lines, 1):
                try:
                    anchor = Anchor.from_json(line, f"{self.path}:{number}")
                except (ValueError, KeyError, TypeError):
                    problems.append(f"{self.path}:{number}: not an anchor (the file was edited?)")
                    continue
                if (anchor.instance, anchor.database) == (instance, database):
                    found.append(anchor)
        return found, problems


class S3Anchors:
    def __init__(self, location: StorageLocation) -> None:
        self.storage = S3Storage(location)
        self.name = self.storage.where(S3_FOLDER)

    def folder(self, instance: str, database: str) -> str:
        return f"{S3_FOLDER}/{instance}/{database}"

    def append(self, anchor: Anchor) -> None:
        key = f"{self.folder(anchor.instance, anchor.database)}/{anchor.last_id:012d}-{anchor.last_hash[:16]}.json"
        with self.storage.errors("anchor in", key):
            self.storage.client.put_object(Bucket=self.storage.bucket, Key=self.storage.object_key(key),
                                           Body=anchor.to_json().encode())

    def read(self, instance: str, database: str) -> tuple[list[Anchor], list[str]]:
        folder = self.folder(instance, database)
        found, problems = [], []
        with self.storage.errors("read anchors in", folder):
            pages = self.storage.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.storage.bucket, Prefix=self.storage.object_key(folder) + "/")
            for page in pages:
                for item in page.get("Contents", []):
                    body = self.storage.client.get_object(Bucket=self.storage.bucket, Key=item["Key"])["Body"].read()
                    where = f"s3://{self.storage.bucket}/{item['Key']}"
                    try:
                        found.append(Anchor.from_json(body.decode(), where))
                    except (ValueError, KeyError, TypeError):
                        problems.append(f"{where}: not an anchor (the object was changed?)")
        return found, problems


def location_stores() -> list[AnchorStore]:
    """Every storage location, as an anchor store."""
    return [S3Anchors(location) if location.kind == StorageLocation.Kind.S3 else LocalAnchors(location)
            for location in StorageLocation.objects.order_by("pk")]
