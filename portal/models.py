from __future__ import annotations

import hashlib
import json
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, models
from django.utils import timezone

from portal import pg

GENESIS_HASH = "0" * 64
SYSTEM_IDENTIFIER = "SELECT system_identifier FROM pg_control_system()"


class PortalDatabaseServer(Exception):
    """this is the server of the portal's own database (catalog, audit trail, task queue): the portal never manages
    it, so that no recovery can roll its own records back. Register another server, or move the portal's database."""


def portal_system_identifier() -> str:
    """Which server holds the portal's own database (any role may read pg_control_system())."""
    with connection.cursor() as cursor:
        cursor.execute(SYSTEM_IDENTIFIER)
        return str(cursor.fetchone()[0])


class ManagedCluster(models.Model):
    """A PostgreSQL server the portal backs up, restores and maintains."""

    class Control(models.TextChoices):
        NONE = "none", "Not controlled by the portal"
        PG_CTL = "pg_ctl", "pg_ctl on the portal host"

    name = models.SlugField(max_length=63, unique=True)
    host = models.CharField(max_length=255, default="127.0.0.1")
    port = models.PositiveIntegerField(default=5432)
    role = models.CharField("PostgreSQL role", max_length=63, default="postgres")
    passfile = models.CharField(
        max_length=500,
        blank=True,
        help_text="Absolute path of a libpq passfile (mode 0600) on the portal hosts. The password stays there.",
    )
    service = models.CharField(
        max_length=100, blank=True, help_text="A pg_service.conf entry, as an alternative to a passfile."
    )
    control = models.CharField(max_length=10, choices=Control, default=Control.NONE)
    data_directory = models.CharField(max_length=500, blank=True, help_text="For a local cluster: its PGDATA.")
    os_user = models.CharField("OS user", max_length=32, default="postgres", help_text="Owner of a local cluster.")

    server_version = models.CharField(max_length=32, blank=True)
    server_version_num = models.PositiveIntegerField(null=True, blank=True)
    reachable = models.BooleanField(null=True)
    in_recovery = models.BooleanField(null=True)
    size_bytes = models.BigIntegerField(null=True, blank=True)
    status_error = models.TextField(blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    system_identifier = models.CharField(max_length=20, blank=True, help_text="pg_control_system(): which server.")
    holds_portal_database = models.BooleanField(
        default=False, help_text="The portal's own database is on this server: the portal refuses to manage it.")
    scratch = models.BooleanField(
        "scratch cluster", default=False,
        help_text="Verification restores, logical drills and single-table restores run here (SCRATCH_CLUSTER names "
                  "the one used), never on production. Never backed up or recovered itself; its databases are never "
                  "production.")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.port is not None and not 1 <= self.port <= 65535:
            raise ValidationError({"port": "A TCP port: 1 to 65535."})
        if self.passfile and not Path(self.passfile).is_absolute():
            raise ValidationError({"passfile": "Give an absolute path."})
        if self.control == self.Control.PG_CTL and not self.data_directory:
            raise ValidationError({"data_directory": "A cluster controlled with pg_ctl needs its data directory."})

    @property
    def major(self) -> int | None:
        return self.server_version_num // 10000 if self.server_version_num else None

    @property
    def is_local(self) -> bool:
        return self.control == self.Control.PG_CTL

    def target(self, dbname: str = "postgres") -> pg.Target:
        return pg.Target(
            host=self.host,
            port=self.port,
            user=self.role,
            dbname=dbname,
            passfile=self.passfile,
            service=self.service,
            major=self.major,
        )


class ManagedDatabase(models.Model):
    class Environment(models.TextChoices):
        PRODUCTION = "production", "Production"
        STAGING = "staging", "Staging"
        SCRATCH = "scratch", "Scratch"

    cluster = models.ForeignKey(ManagedCluster, on_delete=models.PROTECT, related_name="databases")
    name = models.CharField(max_length=63)
    environment = models.CharField(max_length=12, choices=Environment, default=Environment.PRODUCTION)
    exists = models.BooleanField(null=True)
    size_bytes = models.BigIntegerField(null=True, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["cluster__name", "name"]
        constraints = [models.UniqueConstraint(fields=["cluster", "name"], name="unique_database_per_cluster")]

    def __str__(self) -> str:
        return f"{self.name}@{self.cluster.name}"

    def clean(self) -> None:
        if self.cluster_id and self.environment == self.Environment.PRODUCTION and self.cluster.scratch:
            raise ValidationError({"environment": f"{self.cluster} is a scratch cluster: its databases are never "
                                                  "production."})

    def target(self) -> pg.Target:
        return self.cluster.target(self.name)

    def record_size(self, size: int | None) -> None:
        self.exists, self.size_bytes, self.checked_at = size is not None, size, timezone.now()
        self.save(update_fields=["exists", "size_bytes", "checked_at"])


class AuditEvent(models.Model):
    """One action, append-only. The database rejects UPDATE, DELETE and TRUNCATE (migrations 0002 and 0004); the
    table belongs to a role the portal does not connect as, which gives the portal's role only INSERT and SELECT
    (`manage.py audit_privileges`). Each row carries the hash of the previous one, so a changed or removed row
    breaks the chain, and the chain's head is anchored outside the database (`portal.anchors`).

    Not managed by Django: no migration alters it and no test flush empties it (its owner is not the portal)."""

    class Outcome(models.TextChoices):
        STARTED = "started", "Started"
        SUCCESS = "success", "Success"
        FAILURE = "failure", "Failure"
        DENIED = "denied", "Denied"

    created = models.DateTimeField(db_index=True)
    actor = models.CharField(max_length=150, help_text="Username, or system:<component> for scheduled work.")
    action = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=100, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    target = models.CharField(max_length=255, blank=True)
    outcome = models.CharField(max_length=10, choices=Outcome)
    details = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["-id"]
        managed = False

    def __str__(self) -> str:
        return f"{self.created:%Y-%m-%d %H:%M:%S} {self.actor} {self.action} {self.outcome}"

    def compute_hash(self) -> str:
        payload = {
            "prev": self.prev_hash,
            "created": self.created.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "object_type": self.object_type,
            "object_id": self.object_id,
            "target": self.target,
            "outcome": self.outcome,
            "details": self.details,
        }
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), cls=DjangoJSONEncoder)
        return hashlib.sha256(canonical.encode()).hexdigest()


class Capability(models.Model):
    """No table: holds the portal's permissions that are not about one model (see portal/roles.py)."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("run_backup", "Can run backups now"),
            ("download_backup", "Can download backup files"),
            ("run_maintenance", "Can run maintenance now"),
            ("request_recovery", "Can request a recovery"),
            ("approve_recovery", "Can approve a recovery"),
            ("control_cluster", "Can start and stop local clusters"),
        ]
