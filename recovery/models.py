"""Recovery requests: what to restore, from which backup, to where; who asked, who approved; every step."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from backups.models import Backup
from portal import schedules
from portal.jobs import Job
from portal.models import ManagedCluster, ManagedDatabase

ACTIVE_STATES = ("requested", "queued", "running")


class RecoveryRequest(Job):
    """One recovery, from request to outcome. Replacing production needs a second DBA's approval."""

    audit_action = "recovery"

    class Kind(models.TextChoices):
        COMPLETE = "complete", "Complete restore"
        PITR = "pitr", "Point-in-time recovery"
        TABLE = "table", "Single-table recovery"
        DRILL = "drill", "Restore drill"
        PROMOTE = "promote", "Make a recovered cluster production"

    class Destination(models.TextChoices):
        BESIDE = "beside", "A new database or cluster beside production"
        REPLACE = "replace", "Replace production"

    class MergePolicy(models.TextChoices):
        NEW_TABLE = "new_table", "Into a new table <table>_restored_<time>"
        INSERT_MISSING = "insert_missing", "Insert the rows that are missing"
        REPLACE_ROWS = "replace_rows", "Replace all rows"

    kind = models.CharField(max_length=10, choices=Kind)
    cluster = models.ForeignKey(ManagedCluster, on_delete=models.PROTECT, related_name="recoveries")
    database = models.ForeignKey(ManagedDatabase, on_delete=models.PROTECT, null=True, blank=True,
                                 related_name="recoveries")
    backup = models.ForeignKey(Backup, on_delete=models.PROTECT, null=True, blank=True, related_name="recoveries",
                               help_text="Empty: the newest verified backup that can serve.")
    target_time = models.DateTimeField(null=True, blank=True, help_text="Point-in-time: recover up to here.")
    tables = models.JSONField(default=list, blank=True, help_text="Single table: schema-qualified names.")
    merge_policy = models.CharField(max_length=16, choices=MergePolicy, default=MergePolicy.NEW_TABLE)
    destination = models.CharField(max_length=8, choices=Destination, default=Destination.BESIDE)
    destination_name = models.CharField(max_length=63, blank=True,
                                        help_text="The new database or cluster's name; chosen when empty.")
    requester = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
                                  related_name="recovery_requests")
    reason = models.TextField(help_text="Why, and the ticket number.")

    result_cluster = models.ForeignKey(ManagedCluster, on_delete=models.SET_NULL, null=True, blank=True,
                                       related_name="+", help_text="Point-in-time: the recovered cluster.")
    result_database = models.CharField(max_length=63, blank=True)
    scratch_cluster = models.ForeignKey(
        ManagedCluster, on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        help_text="Drills and single-table recoveries: the scratch cluster their working database (result_database "
                  "while they work) is on, recorded before it is made, so a clean-up finds it.")
    rto_seconds = models.FloatField(null=True, blank=True, help_text="First step to services healthy / verified.")
    rpo_seconds = models.FloatField(null=True, blank=True, help_text="Target against the newest archived change.")
    verification = models.JSONField(default=dict, blank=True)
    promotion = models.JSONField(
        default=dict, blank=True, help_text="A promotion's journal: the data directories' places and the stage "
        "reached, recorded before each step acts, so that a dead run is undone the same way.")
    work_directory = models.CharField(
        max_length=500, blank=True,
        help_text="Point-in-time: the folder of the cluster being built (data, socket, server log), recorded "
                  "before anything is written there, so a run that died can be cleaned up.")
    drill_kind = models.CharField(max_length=16, blank=True, help_text="Drill: which drill (pitr, logical).")
    source_recovery = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="promotions",
        help_text="Make production: the point-in-time recovery whose cluster becomes production.")

    class Meta:
        ordering = ["-created"]
        constraints = [
            models.UniqueConstraint(
                fields=["cluster", "destination_name"],
                condition=Q(status__in=ACTIVE_STATES) & ~Q(destination_name=""),
                name="one_active_recovery_per_destination",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk}"

    @property
    def needs_approval(self) -> bool:
        return self.destination == self.Destination.REPLACE or self.kind == self.Kind.PROMOTE

    def settle_destination(self) -> None:
        """Where a logical recovery writes, decided before it is saved, so that two recoveries never write to the
        same place at once (the constraint below): production's own name when it replaces production or merges
        rows into one of its tables (so a merge and a complete restore of one database exclude each other), a new
        database's name beside it. A single-table merge that writes into production's table replaces production
        as far as approval goes; one into a new table does not, and runs beside anything."""
        if self.kind == self.Kind.DRILL and not self.drill_kind:
            self.drill_kind = DrillSchedule.Kind.LOGICAL  # a drill requested by hand; the schedules name theirs
        if self.kind == self.Kind.PROMOTE and self.cluster_id:
            self.destination, self.destination_name = self.Destination.REPLACE, self.cluster.name
        if self.database is None or self.kind not in (self.Kind.COMPLETE, self.Kind.TABLE):
            return
        if self.kind == self.Kind.TABLE:
            writes = self.merge_policy != self.MergePolicy.NEW_TABLE
            self.destination = self.Destination.REPLACE if writes else self.Destination.BESIDE
        if self.destination == self.Destination.REPLACE:
            self.destination_name = self.database.name
        elif self.kind == self.Kind.TABLE:
            self.destination_name = ""  # a new table beside production's
        elif not self.destination_name:
            suffix = f"_restored_{timezone.now():%Y%m%d_%H%M%S}"
            self.destination_name = self.database.name[:63 - len(suffix)] + suffix

    def clean(self) -> None:
        if self.cluster_id and self.cluster.scratch:
            raise ValidationError({"cluster": f"{self.cluster} is a scratch cluster: it is never recovered."})
        if self.kind == self.Kind.PITR and not self.target_time:
            raise ValidationError({"target_time": "A point-in-time recovery needs a target time."})
        if self.kind == self.Kind.TABLE and not self.tables:
            raise ValidationError({"tables": "Name the table(s) to recover."})
        if self.kind in (self.Kind.COMPLETE, self.Kind.TABLE) and not self.database_id:
            raise ValidationError({"database": "Choose the database to recover."})
        if self.kind == self.Kind.DRILL and self.destination == self.Destination.REPLACE:
            raise ValidationError({"destination": "A drill never replaces production."})


class Approval(models.Model):
    """A second DBA's yes to a request that replaces production. It expires, and it is used once."""

    VALID_FOR = timedelta(hours=4)

    request = models.ForeignKey(RecoveryRequest, on_delete=models.CASCADE, related_name="approvals")
    approver = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created = models.DateTimeField(auto_now_add=True)
    expires = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    comment = models.TextField(blank=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"approval of {self.request} by {self.approver}"

    @property
    def is_usable(self) -> bool:
        return self.used_at is None and self.expires > timezone.now()


class RecoveryStep(models.Model):
    """One step of a recovery, with its own outcome and log, shown live as a step list."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"

    request = models.ForeignKey(RecoveryRequest, on_delete=models.CASCADE, related_name="steps")
    position = models.PositiveSmallIntegerField()
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=10, choices=Status, default=Status.PENDING)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)
    log = models.TextField(blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["request", "position"]
        constraints = [models.UniqueConstraint(fields=["request", "position"], name="one_step_per_position")]

    def __str__(self) -> str:
        return f"{self.position}. {self.name}"

    @property
    def duration(self) -> timedelta | None:
        if not self.started:
            return None
        return (self.finished or timezone.now()) - self.started


class DrillSchedule(models.Model):
    """A restore drill that runs on a schedule (weekly by default) into scratch, verified, its RTO measured."""

    class Kind(models.TextChoices):
        PITR = "pitr", "Point-in-time recovery of a cluster"
        LOGICAL = "logical", "Restore of a logical backup"

    kind = models.CharField(max_length=16, choices=Kind)
    cluster = models.ForeignKey(ManagedCluster, on_delete=models.PROTECT, related_name="drill_schedules")
    database = models.ForeignKey(ManagedDatabase, on_delete=models.PROTECT, null=True, blank=True,
                                 related_name="drill_schedules", help_text="Logical drills: the database.")
    cron = models.CharField(max_length=100, blank=True, help_text="Cron: minute hour day month weekday. "
                            "Empty: DRILL_DEFAULT_SCHEDULE (weekly).")
    enabled = models.BooleanField(default=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["cluster__name", "kind"]
        constraints = [models.UniqueConstraint(fields=["kind", "cluster", "database"], nulls_distinct=False,
                                               name="one_drill_schedule_per_source")]

    def __str__(self) -> str:
        source = self.database or self.cluster
        return f"{self.get_kind_display()} drill of {source}"

    @property
    def schedule_name(self) -> str:
        return f"recovery: drill {self.pk}"

    @property
    def effective_cron(self) -> str:
        return self.cron or settings.DRILL_DEFAULT_SCHEDULE

    def clean(self) -> None:
        if self.cron:
            try:
                schedules.validate_cron(self.cron, settings.DRILL_SCHEDULE_MIN_MINUTES, "DRILL_SCHEDULE_MIN_MINUTES")
            except ValidationError as exc:
                raise ValidationError({"cron": exc.messages}) from exc
        if self.kind == self.Kind.LOGICAL and not self.database_id:
            raise ValidationError({"database": "A logical drill restores one database: choose it."})
        if self.cluster_id and self.cluster.scratch:
            raise ValidationError({"cluster": f"{self.cluster} is a scratch cluster: drills restore its sources' "
                                              "backups there, never its own."})
        if self.database_id and self.cluster_id and self.database.cluster_id != self.cluster_id:
            raise ValidationError({"database": "This database is not in the chosen cluster."})

    def save(self, *args, **kwargs) -> None:
        super().save(*args, **kwargs)
        schedules.ensure(self.schedule_name, "recovery.tasks.run_scheduled_drill", self.effective_cron,
                         args=str(self.pk), enabled=self.enabled)

    def delete(self, *args, **kwargs):
        schedules.remove(self.schedule_name)
        return super().delete(*args, **kwargs)
