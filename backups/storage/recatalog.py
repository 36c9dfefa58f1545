"""Rebuilding the catalog from a storage location after the portal's database was lost (`manage.py recatalog`).

Every backup's catalog manifest in the location (`backups.storage.catalog_manifest`) is read, and the backup's files
are read back and compared with the manifest's size and sha256 (its companions' too). A backup already in the
catalog (the same path: the same instance's same backup) is left alone, its copy in this location recorded if
it was not; a damaged one (missing, another size or sha256, an unreadable manifest) is reported and never
catalogued. Otherwise its rows are created in one transaction — the cluster, database and policy by name when
missing (a re-created policy is disabled until a DBA looks at it), the backup `succeeded` with the verification
the manifest records (under its old id when that id is free), and its copy in this location — each an audit
event. Nothing is written in a dry run.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.core.management.color import no_style
from django.db import DatabaseError, connection, transaction
from django.db.models import Model
from django.utils import timezone

from backups.models import CATALOG_MANIFEST_SUFFIX, Backup, BackupCopy, BackupPolicy, StorageLocation
from backups.storage import backends, catalog_manifest
from portal import audit
from portal.models import ManagedCluster, ManagedDatabase

RECATALOGUED, KNOWN, DAMAGED, REFUSED = "recatalogued", "already known", "damaged", "refused"
Progress = Callable[[int, int, str], None]  # (manifests done, of how many, what now)


@dataclass
class Outcome:
    key: str  # the manifest's key in the location
    state: str
    detail: str

    @property
    def good(self) -> bool:
        return self.state in (RECATALOGUED, KNOWN)

    def __str__(self) -> str:
        return f"{self.state}: {self.key.removesuffix(CATALOG_MANIFEST_SUFFIX)}: {self.detail}"


class NotCatalogued(Exception):
    def __init__(self, state: str, detail: str) -> None:
        super().__init__(detail)
        self.state = state


def run(location: StorageLocation, *, actor: audit.Actor, dry_run: bool = False,
        progress: Progress | None = None) -> list[Outcome]:
    """Recatalog every manifest in `location`; one outcome each. StorageError when the location cannot be read
    at all (an S3 server that does not answer; a local folder whose marker is missing or not its own)."""
    store = backends.for_location(location)
    keys = list(store.keys(CATALOG_MANIFEST_SUFFIX))
    outcomes = []
    for done, key in enumerate(keys):
        if progress:
            progress(done, len(keys), key.removesuffix(CATALOG_MANIFEST_SUFFIX))
        try:
            state, detail = one(store, key, actor=actor, dry_run=dry_run)
        except NotCatalogued as exc:
            state, detail = exc.state, str(exc)
        outcomes.append(Outcome(key, state, detail))
    if progress:
        progress(len(keys), len(keys), "done")
    return outcomes


def one(store: backends.Storage, key: str, *, actor: audit.Actor, dry_run: bool) -> tuple[str, str]:
    content = read(store, key)
    row = content["backup"]
    if key != f"{row['path']}{CATALOG_MANIFEST_SUFFIX}":
        raise NotCatalogued(DAMAGED, f"the manifest describes {row['path']}, but lies at {key}")
    known = Backup.objects.filter(path=row["path"]).first()
    if known is not None and known.sha256 != row["sha256"]:
        raise NotCatalogued(REFUSED, f"backup #{known.pk} is catalogued at the same path with another sha256")
    here = store.location.pk is not None and known is not None and known.copies.filter(
        location=store.location, state=BackupCopy.State.PRESENT).exists()
    if here:
        return KNOWN, f"#{known.pk}"
    check_files(store, row)
    if known is not None:
        if not dry_run:
            _record(actor, store.location, key, [_copy(known, store.location)])
        return KNOWN, f"#{known.pk}; its copy in {store.location} " + ("would be " if dry_run else "") + "recorded"
    if dry_run:
        return RECATALOGUED, f"would be catalogued ({_summary(row)})"
    backup, created = create(content, store.location)
    _record(actor, store.location, key, created)
    was = "" if backup.pk == row["id"] else f" (#{row['id']} in the lost catalog)"
    return RECATALOGUED, f"#{backup.pk}{was}: {_summary(row)}{_primary_note(backup, store.location)}"


def read(store: backends.Storage, key: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="paws360-recatalog-") as folder:
        try:
            local = Path(folder) / "manifest.json"
            store.fetch(key, local)
            return catalog_manifest.read(local)
        except (OSError, ValueError, KeyError, backends.StorageError) as exc:
            raise NotCatalogued(DAMAGED, f"unreadable manifest: {exc}") from exc


def check_files(store: backends.Storage, row: dict[str, Any]) -> None:
    """The backup's files as stored, read back in full: the manifest's size and sha256, and its companions'."""
    expected = [(row["path"], row["sha256"], row["size_bytes"])]
    expected += [(c["path"], c["sha256"], None) for c in row.get("companions", [])]
    for path, sha256, size in expected:
        try:
            found = store.check(path)
        except backends.StorageError as exc:
            raise NotCatalogued(DAMAGED, str(exc)) from exc
        if found is None:
            raise NotCatalogued(DAMAGED, f"{store.where(path)} is missing")
        if size is not None and found.size != size:
            raise NotCatalogued(DAMAGED, f"{store.where(path)}: {found.size} bytes, the manifest says {size}")
        if found.sha256 != sha256:
            raise NotCatalogued(DAMAGED, str(backends.checksum_mismatch(store.where(path), sha256, found.sha256)))


def create(content: dict[str, Any], location: StorageLocation) -> tuple[Backup, list[Model]]:
    """The backup's rows, and those of its cluster, database and policy where missing: (backup, rows created)."""
    created: list[Model] = []
    try:
        with transaction.atomic():
            cluster = _get_or_create(ManagedCluster, {"name": content["cluster"]["name"]}, content["cluster"], created)
            database = None
            if content.get("database"):
                database = _get_or_create(ManagedDatabase, {"cluster": cluster, "name": content["database"]["name"]},
                                          content["database"], created)
            policy = _policy(content, cluster, database, created)
            backup = _backup(content["backup"], policy, cluster, database)
            created += [backup, _copy(backup, location)]
    except DatabaseError as exc:
        raise NotCatalogued(REFUSED, f"the catalog refused the rows: {exc}") from exc
    return backup, created


def _get_or_create(model: type[Model], lookup: dict[str, Any], fields: dict[str, Any], created: list[Model]) -> Any:
    obj = model.objects.filter(**lookup).first()  # type: ignore[attr-defined]
    if obj is None:
        obj = model.objects.create(**{**fields, **lookup})  # type: ignore[attr-defined]
        created.append(obj)
    return obj


def _policy(content: dict[str, Any], cluster: ManagedCluster, database: ManagedDatabase | None,
            created: list[Model]) -> BackupPolicy:
    fields = dict(content["policy"])
    names = fields.pop("locations", [])
    policy = BackupPolicy.objects.filter(name=fields["name"]).first()
    if policy is not None:
        if (policy.kind, policy.cluster_id) != (fields["kind"], cluster.pk):
            raise NotCatalogued(REFUSED, f"policy {policy.name!r} exists for another kind or cluster "
                                f"({policy.kind} of {policy.cluster}), not {fields['kind']} of {cluster}")
        return policy
    policy = BackupPolicy.objects.create(**{**fields, "enabled": False}, cluster=cluster, database=database)
    policy.locations.set(StorageLocation.objects.filter(name__in=names))
    created.append(policy)
    return policy


def _backup(row: dict[str, Any], policy: BackupPolicy, cluster: ManagedCluster,
            database: ManagedDatabase | None) -> Backup:
    """The row as it was, under its old id when that is free (the sequence is moved past it)."""
    fields = {name: row[name] for name in catalog_manifest.BACKUP_FIELDS if name != "id"}
    backup = Backup(**fields, policy=policy, cluster=cluster, database=database, status=Backup.Status.SUCCEEDED)
    if not Backup.objects.filter(pk=row["id"]).exists():
        backup.pk = row["id"]
    backup.save(force_insert=True)
    Backup.objects.filter(pk=backup.pk).update(created=row["created"])  # auto_now_add set it to now
    backup.created = row["created"]
    if backup.pk == row["id"]:
        with connection.cursor() as cursor:
            for statement in connection.ops.sequence_reset_sql(no_style(), [Backup]):
                cursor.execute(statement)
    return backup


def _copy(backup: Backup, location: StorageLocation) -> BackupCopy:
    """The backup's copy in `location`, just read back in full."""
    now = timezone.now()
    copy, _ = BackupCopy.objects.update_or_create(backup=backup, location=location, defaults={
        "key": backup.path, "state": BackupCopy.State.PRESENT, "size_bytes": backup.size_bytes,
        "sha256": backup.sha256, "copied_at": backup.finished or now, "checked_at": now, "error": ""})
    return copy


def _record(actor: audit.Actor, location: StorageLocation, key: str, created: list[Model]) -> None:
    for obj in created:
        audit.record(f"{obj._meta.model_name}.recatalog", actor=actor, obj=obj, target=str(obj),
                     details={"location": location.name, "manifest": key})


def _summary(row: dict[str, Any]) -> str:
    return f"{row['kind']}, {row['size_bytes']} bytes, sha256 {row['sha256'][:12]}…, {row['verification']}"


def _primary_note(backup: Backup, location: StorageLocation) -> str:
    primary = backup.policy.primary_location()
    if primary.pk == location.pk:
        return ""
    return f"; its policy's primary location is {primary}: copy it there before restoring"
