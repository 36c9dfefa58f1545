"""The backup catalog: where backups go, what is backed up when, and every backup taken."""


from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from portal.jobs import Job
from portal.models import ManagedCluster, ManagedDatabase
from portal.schedules import validate_cron

MAX_RETENTION_DAYS = 3650


class StorageLocation(models.Model):
    """A place backups are kept: a local folder, or S3-compatible object storage for offsite copies."""

    class Kind(models.TextChoices):
        LOCAL = "local", "Local folder"
        S3 = "s3", "S3-compatible object storage"

    # Created by migration: BACKUP_ROOT, where a policy without a local location of its own writes.
    DEFAULT_NAME = "local"

    name = models.SlugField(max_length=63, unique=True)
    kind = models.CharField(max_length=8, choices=Kind, default=Kind.LOCAL)
    path = models.CharField(max_length=500, blank=True,
                            help_text="Local: an absolute folder (not a system folder, nor in or around a cluster's "
                            "data directory or a WAL archive). Empty: BACKUP_ROOT.")
    endpoint_url = models.URLField(blank=True, help_text="S3: the endpoint, e.g. https://s3.example.edu")
    bucket = models.CharField(max_length=63, blank=True)
    prefix = models.CharField(max_length=255, blank=True)
    region = models.CharField(max_length=32, blank=True)
    credentials_profile = models.CharField(
        max_length=63,
        blank=True,
        help_text="S3: a profile of the AWS shared credentials file named in deployment configuration. "
        "Keys are never stored in the portal.",
    )
    marker_written = models.DateTimeField(null=True, blank=True, editable=False,
                                          help_text="Local: when the folder's marker file was written.")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        """What can be said without looking at the disk or the catalogue; the folder itself is checked where a
        location is made or used (`backups.storage.locations.validate`)."""
        if self.kind == self.Kind.S3 and not self.bucket:
            raise ValidationError({"bucket": "An S3 location needs a bucket."})
        if self.kind == self.Kind.LOCAL and self.path and not self.path.startswith("/"):
            raise ValidationError({"path": "Give an absolute path."})

    @property
    def root(self) -> str:
        return self.path or str(settings.BACKUP_ROOT)

    @classmethod
    def default_local(cls) -> StorageLocation:
        return cls.objects.get_or_create(name=cls.DEFAULT_NAME, defaults={"kind": cls.Kind.LOCAL})[0]


class BackupPolicy(models.Model):
    """What to back up, when, how, where, and for how long."""

    class Kind(models.TextChoices):
        LOGICAL = "logical", "Full logical (pg_dump)"
        CONFIG = "config", "Configuration"
        APPDATA = "appdata", "Application data"
        BASE = "base", "Physical base backup (pg_basebackup)"

    class DumpFormat(models.TextChoices):
        CUSTOM = "custom", "Custom archive (-Fc)"
        DIRECTORY = "directory", "Directory, parallel (-Fd -j)"

    class Checkpoint(models.TextChoices):
        FAST = "fast", "Fast"
        SPREAD = "spread", "Spread"

    # The runbook's schedule and retention, per kind.
    DEFAULT_SCHEDULE = {Kind.LOGICAL: "0 2 * * *", Kind.CONFIG: "30 2 * * *", Kind.APPDATA: "0 3 * * *",
                        Kind.BASE: "0 1 * * *"}
    DEFAULT_RETENTION_DAYS = {Kind.LOGICAL: 30, Kind.CONFIG: 90, Kind.APPDATA: 30, Kind.BASE: 7}

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=10, choices=Kind)
    cluster = models.ForeignKey(ManagedCluster, on_delete=models.PROTECT, related_name="backup_policies")
    database = models.ForeignKey(
        ManagedDatabase, on_delete=models.PROTECT, null=True, blank=True, related_name="backup_policies",
        help_text="Full logical backups: the database to dump.",
    )
    schedule = models.CharField(
        max_length=100, blank=True,
        help_text="Cron: minute hour day month weekday. Empty: the runbook's time for the kind "
        "(full 02:00, configuration 02:30, application data 03:00).",
    )
    enabled = models.BooleanField(default=True, help_text="Off: no scheduled runs; “Run now” still works.")
    retention_days = models.PositiveIntegerField(
        blank=True, validators=[MinValueValidator(1), MaxValueValidator(MAX_RETENTION_DAYS)],
        help_text="Empty: the runbook's retention for the kind (full 30, configuration 90, application data 30).",
    )
    min_verified = models.PositiveIntegerField(
        "keep at least", default=3, validators=[MinValueValidator(1)],
        help_text="Verified backups that retention never goes below, whatever their age.",
    )
    locations = models.ManyToManyField(StorageLocation, blank=True, related_name="policies",
                                       help_text="Empty: the local BACKUP_ROOT only.")
    encrypt = models.BooleanField(default=False, help_text="Encrypt at rest with the deployment's key.")

    # Defaults measured on the ~1 GB sample (bench/dump_options.py, bench/RESULTS.md): gzip level 1 in the
    # directory format with two jobs is several times faster than the seed's -Fc --compress=9 for a
    # slightly larger file. PostgreSQL 15's pg_dump compresses with gzip only.
    dump_format = models.CharField(
        max_length=10, choices=DumpFormat, default=DumpFormat.DIRECTORY,
        help_text="Encrypted backups are one file streamed through age: they use the custom format.",
    )
    jobs = models.PositiveSmallIntegerField(
        default=2, validators=[MinValueValidator(1), MaxValueValidator(16)],
        help_text="Parallel jobs for the directory format's dump, and for restores where the format allows.",
    )
    compression = models.PositiveSmallIntegerField(
        default=1, validators=[MaxValueValidator(9)], help_text="gzip level, 0 (none) to 9."
    )
    verify_every = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1)], help_text="Verify every Nth backup by restoring it."
    )
    checkpoint = models.CharField(max_length=6, choices=Checkpoint, default=Checkpoint.FAST)

    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "backup policies"

    def __str__(self) -> str:
        return self.name

    def primary_location(self) -> StorageLocation:
        """Where backups are written: the policy's first local location (lowest id), else the default one.
        Every other location of the policy receives a copy."""
        local = self.locations.filter(kind=StorageLocation.Kind.LOCAL).order_by("pk").first() if self.pk else None
        return local or StorageLocation.default_local()

    def primary_root(self) -> Path:
        return Path(self.primary_location().root)

    def clean(self) -> None:
        self.apply_defaults()
        try:
            validate_cron(self.schedule, settings.BACKUP_SCHEDULE_MIN_MINUTES, "BACKUP_SCHEDULE_MIN_MINUTES")
        except ValidationError as exc:
            raise ValidationError({"schedule": exc.messages}) from exc
        if self.encrypt and not settings.BACKUP_AGE_RECIPIENTS_FILE:
            raise ValidationError({"encrypt": "Encryption needs BACKUP_AGE_RECIPIENTS_FILE in the deployment's "
                                   "configuration (see .env.example)."})
        if self.encrypt and self.kind == self.Kind.LOGICAL and self.dump_format == self.DumpFormat.DIRECTORY:
            raise ValidationError({"dump_format": "An encrypted backup is one file streamed through age: choose "
                                   "the custom format."})
        if self.kind == self.Kind.LOGICAL and not self.database_id:
            raise ValidationError({"database": "A full logical backup needs the database to dump."})
        if self.database_id and self.cluster_id and self.database.cluster_id != self.cluster_id:
            raise ValidationError({"database": "This database is not in the chosen cluster."})
        if self.cluster_id and self.cluster.scratch:
            raise ValidationError({"cluster": f"{self.cluster} is a scratch cluster: restores that only prove "
                                              "something run there, and it is never backed up."})

    def apply_defaults(self) -> None:
        """Empty schedule and retention take the runbook's values for the kind."""
        if not self.schedule and self.kind in self.DEFAULT_SCHEDULE:
            self.schedule = self.DEFAULT_SCHEDULE[self.kind]
        if self.retention_days is None and self.kind in self.DEFAULT_RETENTION_DAYS:
            self.retention_days = self.DEFAULT_RETENTION_DAYS[self.kind]

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.apply_defaults()
        super().save(*args, **kwargs)

    def is_verification_due(self) -> bool:
        """Every Nth backup of the policy is verified by restoring it (the first one always)."""
        taken = self.backups.filter(status=Backup.Status.SUCCEEDED).count()
        return taken % self.verify_every == 0


# A backup's catalog manifest is `<its path><this>`, beside it in every location (backups/storage/catalog_manifest.py).
CATALOG_MANIFEST_SUFFIX = ".catalog.json"


class Backup(Job):
    """One backup taken, whatever its kind. Catalogued as good only when `succeeded`."""

    audit_action = "backup"

    class Verification(models.TextChoices):
        PENDING = "pending", "Not verified yet"
        VERIFYING = "verifying", "Verifying"
        VERIFIED = "verified", "Verified"
        FAILED = "failed", "Verification failed"
        SKIPPED = "skipped", "Not verified (policy)"

    policy = models.ForeignKey(BackupPolicy, on_delete=models.PROTECT, related_name="backups")
    kind = models.CharField(max_length=10, choices=BackupPolicy.Kind)
    cluster = models.ForeignKey(ManagedCluster, on_delete=models.PROTECT, related_name="backups")
    database = models.ForeignKey(ManagedDatabase, on_delete=models.PROTECT, null=True, blank=True,
                                 related_name="backups")
    name = models.CharField(max_length=255, blank=True,
                            help_text="e.g. paws360_20261125T020000Z_42.dump: when, and the backup's id.")
    path = models.CharField(max_length=500, blank=True, help_text="Relative to the location's root.")
    format = models.CharField(max_length=20, blank=True)
    size_bytes = models.BigIntegerField(null=True, blank=True)
    estimated_bytes = models.BigIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    manifest = models.JSONField(default=dict, blank=True, help_text="Exact row counts per table, and what else "
                                "verification compares against.")
    backup_seconds = models.FloatField(null=True, blank=True, help_text="Time the backup itself took, "
                                       "without its verification.")
    server_version = models.CharField(max_length=32, blank=True)
    client_version = models.CharField(max_length=32, blank=True)
    encrypted = models.BooleanField(default=False)

    verification = models.CharField(max_length=10, choices=Verification, default=Verification.PENDING)
    verified_at = models.DateTimeField(null=True, blank=True)
    verification_error = models.TextField(blank=True)
    verification_seconds = models.FloatField(null=True, blank=True)

    # Physical base backups.
    start_lsn = models.CharField(max_length=20, blank=True)
    end_lsn = models.CharField(max_length=20, blank=True)
    timeline = models.PositiveIntegerField(null=True, blank=True)
    start_wal = models.CharField(max_length=24, blank=True, help_text="The first WAL segment a restore needs.")

    expired_at = models.DateTimeField(null=True, blank=True, help_text="Removed by retention.")

    class Meta:
        ordering = ["-created"]
        constraints = [
            # One run per policy at a time.
            models.UniqueConstraint(fields=["policy"], condition=Q(status__in=["queued", "running"]),
                                    name="one_active_backup_per_policy"),
        ]
        indexes = [
            # Retention and recovery pick the newest good backups of a policy.
            models.Index(fields=["policy", "status", "verification", "-created"], name="backup_policy_good"),
        ]

    def __str__(self) -> str:
        return self.name or f"{self.get_kind_display()} #{self.pk}"

    @property
    def local_path(self) -> Path:
        """The backup's file or folder in the policy's primary (local) location."""
        return self.policy.primary_root() / self.path

    @property
    def is_good(self) -> bool:
        return self.status == self.Status.SUCCEEDED and self.expired_at is None

    @property
    def catalog_manifest_path(self) -> str:
        """The backup's self-describing manifest (`backups.storage.catalog_manifest`), relative to the root."""
        return f"{self.path}{CATALOG_MANIFEST_SUFFIX}" if self.path else ""

    def artifact_paths(self) -> list[str]:
        """Every file or folder of this backup, relative to the location's root: the backup itself, what was
        taken beside it (a logical backup's cluster globals) and its catalog manifest. Copies and retention
        handle all of them."""
        return [p for p in [self.path, *(path for path, _ in self.companions()), self.catalog_manifest_path] if p]

    def companions(self) -> list[tuple[str, str]]:
        """What was taken beside the backup, as (path relative to the root, sha256): a logical backup's
        cluster globals. Copied and deleted with the backup."""
        extra = self.manifest.get("globals") or {}
        return [(extra["path"], extra["sha256"])] if extra.get("path") else []


class ConfigFileVersion(models.Model):
    """One configuration source (a file, or a catalog view read through SQL) as it was at one backup."""

    backup = models.ForeignKey(Backup, on_delete=models.CASCADE, related_name="config_files")
    source = models.CharField(max_length=500, help_text="e.g. postgresql.conf, pg_settings, app:/etc/paws360/api.yml")
    origin = models.CharField(max_length=500, blank=True, help_text="Where it was read: a path, or SQL.")
    content = models.TextField(blank=True)
    sha256 = models.CharField(max_length=64)
    size_bytes = models.BigIntegerField()
    changed = models.BooleanField(default=True, help_text="Different from the previous version of this source.")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["source", "-created"]
        indexes = [
            # The admin's version list and diff pick the versions of one source of one cluster.
            models.Index(fields=["source", "-created"], name="config_source_versions"),
        ]

    def __str__(self) -> str:
        return f"{self.source} @ {self.created:%Y-%m-%d %H:%M}"


class BackupCopy(models.Model):
    """Where one backup is kept, checked by size and checksum."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        COPYING = "copying", "Copying"
        PRESENT = "present", "Present"
        FAILED = "failed", "Failed"
        DELETED = "deleted", "Deleted"

    backup = models.ForeignKey(Backup, on_delete=models.CASCADE, related_name="copies")
    location = models.ForeignKey(StorageLocation, on_delete=models.PROTECT, related_name="copies")
    key = models.CharField(max_length=500, help_text="Path under the location's root, or object key.")
    state = models.CharField(max_length=8, choices=State, default=State.PENDING)
    size_bytes = models.BigIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    started = models.DateTimeField(null=True, blank=True, help_text="When the copy that is (or was) running began.")
    copied_at = models.DateTimeField(null=True, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        verbose_name_plural = "backup copies"
        constraints = [models.UniqueConstraint(fields=["backup", "location"], name="one_copy_per_location")]

    def __str__(self) -> str:
        return f"{self.backup} @ {self.location}"


class BackupLease(models.Model):
    """A backup in use by a verification or a restore: retention never expires a leased backup."""

    backup = models.ForeignKey(Backup, on_delete=models.CASCADE, related_name="leases")
    holder = models.CharField(max_length=100, help_text="e.g. verification, recovery:12")
    created = models.DateTimeField(auto_now_add=True)
    expires = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.backup} held by {self.holder}"
