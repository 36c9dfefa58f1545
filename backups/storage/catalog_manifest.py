"""Each backup describes itself beside its files, so losing the portal's database loses no backup.

`<backup path>.catalog.json` holds what the backup's catalog row holds: its id and the portal instance that
took it, its policy (name, kind and settings), cluster (name and connection references: host, port, role,
passfile or service path, never a password) and database, name, path, format, size, sha256, the row-count
manifest, its companions (the globals file) with their sha256, when it was created, started and finished,
server and client versions, whether it is encrypted, its verification state and time, LSNs, timeline and first
WAL segment. No secret or key is ever in it (the keys of encrypted backups are files named in deployment
configuration; configuration backups' file contents stay in their archive and the portal's database).

It is written atomically (`files.atomic_file`) once the backup is good (taken, and verified when due),
rewritten when its verification state changes, copied to every other location with the backup and deleted
with it. `manage.py recatalog` reads it back (`backups/storage/recatalog.py`).
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path
from typing import Any

from django.utils import timezone

from backups import files
from backups.models import Backup, BackupCopy, StorageLocation
from backups.storage import backends, locations
from portal import instance

log = logging.getLogger(__name__)

FORMAT = "paws360 backup manifest"
VERSION = 1
BACKUP_FIELDS = ("id", "kind", "name", "path", "format", "size_bytes", "estimated_bytes", "sha256", "manifest",
                 "encrypted", "created", "started", "finished", "backup_seconds", "triggered_by", "server_version",
                 "client_version", "verification", "verified_at", "verification_error", "verification_seconds",
                 "start_lsn", "end_lsn", "timeline", "start_wal")
DATE_FIELDS = ("created", "started", "finished", "verified_at")
POLICY_FIELDS = ("name", "kind", "schedule", "enabled", "retention_days", "min_verified", "encrypt", "dump_format",
                 "jobs", "compression", "verify_every", "checkpoint")
CLUSTER_FIELDS = ("name", "host", "port", "role", "passfile", "service", "control", "data_directory", "os_user")
DATABASE_FIELDS = ("name", "environment")


def _fields(obj: object, names: tuple[str, ...]) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in names}


def describe(backup: Backup) -> dict[str, Any]:
    """The manifest's content: what the backup's catalog row holds (a good backup's: `finished` is now if the
    run that took it is still finishing its copies)."""
    policy = backup.policy
    location_names = sorted(policy.locations.values_list("name", flat=True))
    row = {**_fields(backup, BACKUP_FIELDS), "finished": backup.finished or timezone.now(),
           "companions": [{"path": path, "sha256": sha256} for path, sha256 in backup.companions()]}
    return {
        "format": FORMAT, "version": VERSION,
        "instance": instance.instance_id(), "host": instance.HOST, "written": timezone.now(),
        "backup": row,
        "policy": {**_fields(policy, POLICY_FIELDS), "locations": location_names},
        "cluster": _fields(backup.cluster, CLUSTER_FIELDS),
        "database": _fields(backup.database, DATABASE_FIELDS) if backup.database else None,
    }


def _encode(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()  # to the microsecond (DjangoJSONEncoder keeps milliseconds only)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(content: dict[str, Any]) -> bytes:
    return (json.dumps(content, indent=2, sort_keys=True, default=_encode) + "\n").encode()


def write(backup: Backup) -> Path:
    """Write (or rewrite) the manifest of `backup`, as its row is now, beside it in its primary location."""
    fresh = Backup.objects.select_related("policy", "cluster", "database").get(pk=backup.pk)
    final = fresh.policy.primary_root() / fresh.catalog_manifest_path
    with files.atomic_file(final) as out:
        out.write(dumps(describe(fresh)))
    return final


def refresh(backup: Backup) -> list[str]:
    """The backup's verification changed: rewrite its manifest where it has one (a backup still being taken has
    none yet), then in every location where a copy is present. What could not be rewritten, in words (logged;
    the verification's outcome stands whatever happens here)."""
    primary = backup.policy.primary_location()
    source = Path(primary.root) / backup.catalog_manifest_path
    try:
        locations.check_ready(primary)
        if not source.exists():
            return []
        write(backup)
        problems = _push(backup, source, primary)
    except (locations.LocationError, OSError) as exc:
        problems = [f"{primary}: {exc}"]
    for problem in problems:
        log.warning("backup %s: catalog manifest not rewritten at %s", backup.pk, problem)
    return problems


def _push(backup: Backup, source: Path, primary: StorageLocation) -> list[str]:
    sha256, problems = files.sha256_of(source), []
    present = backup.copies.filter(state=BackupCopy.State.PRESENT).exclude(location=primary)
    for copy in present.select_related("location"):
        try:
            backends.for_location(copy.location).put(source, backup.catalog_manifest_path, sha256=sha256)
        except backends.StorageError as exc:
            problems.append(f"{copy.location}: {exc}")
    return problems


def companion(backup: Backup) -> list[tuple[str, str]]:
    """The manifest as a companion to copy: (path relative to the root, its sha256 now); none if the backup has
    none (taken before manifests were written)."""
    path = backup.policy.primary_root() / backup.catalog_manifest_path
    return [(backup.catalog_manifest_path, files.sha256_of(path))] if backup.path and path.exists() else []


def read(path: Path) -> dict[str, Any]:
    """A manifest read back, its dates parsed; ValueError when it is not one."""
    content = json.loads(path.read_text())
    if not isinstance(content, dict) or content.get("format") != FORMAT or "backup" not in content:
        raise ValueError(f"{path}: not a {FORMAT}")
    if content.get("version") != VERSION:
        raise ValueError(f"{path}: {FORMAT} version {content.get('version')}, this portal reads {VERSION}")
    row = content["backup"]
    for name in DATE_FIELDS:
        row[name] = datetime.fromisoformat(row[name]) if row.get(name) else None
    return content
