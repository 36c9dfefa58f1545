"""The WAL archive's catalog: each archive, the segments in it, and the archiver sampled every minute."""

from __future__ import annotations

from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models

from backups.models.catalog import MAX_RETENTION_DAYS
from portal.models import ManagedCluster


class WalArchive(models.Model):
    """Continuous archiving of one cluster's WAL into a folder: how it is set up, and what it holds."""

    class Compression(models.TextChoices):
        NONE = "none", "None"
        ZSTD = "zstd", "zstd (level 1)"
        AUTO = "auto", "zstd for segments a switch ended early, full ones as they are"

    cluster = models.OneToOneField(ManagedCluster, on_delete=models.PROTECT, related_name="wal_archive")
    path = models.CharField(max_length=500, help_text="The archive folder, on the cluster's host.")
    compression = models.CharField(max_length=8, choices=Compression, default=Compression.AUTO)
    archive_timeout = models.PositiveIntegerField(default=60, help_text="Seconds: a segment is archived at least "
                                                  "this often when there was any write.")
    retention_days = models.PositiveIntegerField(default=7, validators=[MinValueValidator(1)])
    system_identifier = models.CharField(max_length=20, blank=True)
    segment_size = models.BigIntegerField(default=16 * 1024 * 1024)
    configured_at = models.DateTimeField(null=True, blank=True)
    proven_at = models.DateTimeField(null=True, blank=True, help_text="When the proof segment reached the archive.")
    proof_segment = models.CharField(max_length=24, blank=True)

    slot_name = models.CharField(max_length=63, blank=True, help_text="Streaming: pg_receivewal's replication slot.")
    stream_synchronous = models.BooleanField(default=False, help_text="Streaming: the receiver is a synchronous "
                                             "standby (commits wait for it).")

    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "WAL archive"

    def __str__(self) -> str:
        return f"WAL archive of {self.cluster}"

    def clean(self) -> None:
        if self.retention_days is not None and self.retention_days > MAX_RETENTION_DAYS:
            raise ValidationError({"retention_days": f"At most {MAX_RETENTION_DAYS} days (ten years)."})

    @property
    def folder(self) -> Path:
        return Path(self.path)

    @property
    def stream_folder(self) -> Path:
        return self.folder / "stream"

    def latest_sample(self) -> WalArchiveSample | None:
        return self.samples.order_by("-taken_at").first()


class WalSegment(models.Model):
    """One file in a WAL archive, recorded when the catalog first saw it."""

    class State(models.TextChoices):
        PRESENT = "present", "Present"
        MISSING = "missing", "Missing (vanished from the archive)"
        CORRUPT = "corrupt", "Corrupt (checksum mismatch)"
        REMOVED = "removed", "Removed by retention"

    archive = models.ForeignKey(WalArchive, on_delete=models.CASCADE, related_name="segments")
    name = models.CharField(max_length=40, help_text="PostgreSQL's name, e.g. 000000010000000A000000FF.")
    kind = models.CharField(max_length=8, help_text="segment, partial, history or backup")
    stored_name = models.CharField(max_length=48)
    timeline = models.PositiveIntegerField(null=True, blank=True)
    segno = models.BigIntegerField(null=True, blank=True, help_text="Segment number across log ids.")
    size_bytes = models.BigIntegerField(help_text="As stored (compressed or not).")
    sha256 = models.CharField(max_length=64, help_text="Of the stored file, when first seen.")
    compressed = models.BooleanField(default=False)
    arrived_at = models.DateTimeField(help_text="When the archive command finished it (the file's mtime).")
    last_commit_at = models.DateTimeField(null=True, blank=True,
                                          help_text="The newest commit or abort recorded in the segment.")
    recorded_at = models.DateTimeField(auto_now_add=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    state = models.CharField(max_length=8, choices=State, default=State.PRESENT)
    problem = models.TextField(blank=True)
    removed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["archive", "segno", "timeline", "name"]
        verbose_name = "WAL segment"
        constraints = [models.UniqueConstraint(fields=["archive", "name"], name="unique_wal_file_per_archive")]
        indexes = [
            # Gaps, the recoverable window and retention walk an archive's segments in order.
            models.Index(fields=["archive", "kind", "segno"], name="walsegment_order"),
            # Checksum verification takes the segments checked longest ago.
            models.Index(fields=["archive", "state", "checked_at"], name="walsegment_check"),
        ]

    def __str__(self) -> str:
        return self.name


class WalArchiveSample(models.Model):
    """The archiver's state and the achieved RPO at one moment, taken every minute."""

    class Alert(models.TextChoices):
        OK = "ok", "OK"
        WARNING = "warning", "Warning"
        CRITICAL = "critical", "Critical"

    archive = models.ForeignKey(WalArchive, on_delete=models.CASCADE, related_name="samples")
    taken_at = models.DateTimeField()
    reachable = models.BooleanField(default=True)
    archived_count = models.BigIntegerField(null=True, blank=True)
    last_archived_wal = models.CharField(max_length=40, blank=True)
    last_archived_at = models.DateTimeField(null=True, blank=True)
    failed_count = models.BigIntegerField(null=True, blank=True)
    last_failed_wal = models.CharField(max_length=40, blank=True)
    last_failed_at = models.DateTimeField(null=True, blank=True)
    ready_count = models.IntegerField(null=True, blank=True, help_text="Segments waiting for the archiver (.ready).")
    flush_lsn = models.CharField(max_length=20, blank=True, help_text="The server's WAL flushed to its disk.")
    safe_lsn = models.CharField(max_length=20, blank=True, help_text="WAL safe outside the server (archived or "
                                "streamed and flushed).")
    rpo_bytes = models.BigIntegerField(null=True, blank=True)
    rpo_seconds = models.FloatField(null=True, blank=True)
    segments = models.IntegerField(default=0)
    archive_bytes = models.BigIntegerField(default=0)
    gaps = models.IntegerField(default=0)
    corrupt = models.IntegerField(default=0)
    stream_active = models.BooleanField(null=True)
    stream_flush_lag = models.FloatField(null=True, blank=True)
    slot_wal_status = models.CharField(max_length=12, blank=True)
    slot_retained_bytes = models.BigIntegerField(null=True, blank=True)
    slot_safe_wal_size = models.BigIntegerField(null=True, blank=True)
    alert = models.CharField(max_length=8, choices=Alert, default=Alert.OK)
    problems = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-taken_at"]
        verbose_name = "WAL archive sample"
        indexes = [
            # The admin's RPO chart and /health read an archive's newest samples.
            models.Index(fields=["archive", "-taken_at"], name="walsample_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.archive.cluster} at {self.taken_at:%Y-%m-%d %H:%M:%S}"
