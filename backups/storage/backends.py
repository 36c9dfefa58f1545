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
import tempfile
import uuid
from pathlib import Path

from backups.models import StorageLocation
from backups.storage.base import (  # noqa: F401 (the interface, here for every caller)
    ByteCounter,
    Progress,
    Stat,
    Storage,
    StorageError,
    checksum_mismatch,
    safe_key,
    source_stat,
    tree_stat,
)
from backups.storage.local import LocalStorage, copy_file, copy_tree  # noqa: F401
from backups.storage.s3 import S3Storage, s3_client, transfer_config  # noqa: F401


def for_location(location: StorageLocation) -> Storage:
    if location.kind == StorageLocation.Kind.S3:
        return S3Storage(location)
    return LocalStorage(location)



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
