"""Admin of the WAL archive: the archives with their health, the segments, and a timeline page per archive
(the archive filling, the achieved RPO over time, base backups, gaps and the recoverable window)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django_q.tasks import async_task

from backups.models import Backup, BackupPolicy, WalArchive, WalArchiveSample, WalSegment
from backups.wal import catalog
from backups.wal.window import recoverable_window
from portal import audit
from portal.admin import status_badge
from portal.templatetags.portal_format import size

CHART_WIDTH = 1000


@dataclass
class Mark:
    left: float
    label: str
    css: str
    title: str = ""
    width: float = 0.0


class Scale:
    """Maps moments between `start` and `end` to percentages of the timeline's width."""

    def __init__(self, start: datetime, end: datetime) -> None:
        self.start, self.end = start, max(end, start + timedelta(minutes=1))

    def at(self, moment: datetime) -> float:
        span = (self.end - self.start).total_seconds()
        return round(max(0.0, min(100.0, 100 * (moment - self.start).total_seconds() / span)), 3)

    def band(self, start: datetime, end: datetime) -> tuple[float, float]:
        left = self.at(start)
        return left, max(0.3, self.at(end) - left)


def timeline_marks(archive: WalArchive, window, scale: Scale) -> dict[str, list[Mark]]:
    backups = (Backup.objects.filter(cluster=archive.cluster, kind=BackupPolicy.Kind.BASE,
                                     created__gte=scale.start).order_by("created"))
    marks: dict[str, list[Mark]] = {"backups": [], "gaps": [], "window": [], "segments": []}
    for backup in backups:
        moment = backup.finished or backup.started or backup.created
        good = backup.is_good and backup.verification != Backup.Verification.FAILED
        css = "good" if good else ("running" if backup.status in ("queued", "running") else "bad")
        title = f"{backup.name or backup.pk}: {backup.status}, {backup.get_verification_display()}"
        left = scale.at(moment)
        css += " flip" if left > 70 else ""  # the label goes to the left of the pin near the right edge
        marks["backups"].append(Mark(left, backup.name or f"#{backup.pk}", css, title))
    for gap in window.gaps:
        before = archive.segments.filter(kind="segment", segno__lt=gap.first).order_by("-segno").first()
        after = archive.segments.filter(kind="segment", segno__gt=gap.last).order_by("segno").first()
        moment = (after or before).arrived_at if (after or before) else scale.end
        marks["gaps"].append(Mark(scale.at(moment), str(gap), "gap"))
    for run in window.ranges:
        left, width = scale.band(run.start, run.end)
        marks["window"].append(Mark(left, str(run), "window", width=width))
    present = (archive.segments.filter(kind="segment", state=WalSegment.State.PRESENT, arrived_at__gte=scale.start)
               .order_by("arrived_at").values_list("arrived_at", flat=True))
    first = last = None
    for moment in present:  # arrivals closer than 3 archive_timeouts apart form one band
        if last is not None and (moment - last).total_seconds() > 3 * archive.archive_timeout:
            left, width = scale.band(first, last)
            marks["segments"].append(Mark(left, "archived", "archived", width=width))
            first = None
        first, last = first or moment, moment
    if first is not None:
        left, width = scale.band(first, last)
        marks["segments"].append(Mark(left, "archived", "archived", width=width))
    return marks


def rpo_chart(samples: list[WalArchiveSample], scale: Scale, archive_timeout: int) -> dict[str, object]:
    """An SVG polyline of the achieved RPO (seconds) over the timeline's span."""
    values = [s.rpo_seconds or 0 for s in samples]
    top = max([*values, archive_timeout * 1.2, 1])
    points = " ".join(f"{scale.at(s.taken_at) * CHART_WIDTH / 100:.1f},{100 - 100 * (v / top):.1f}"
                      for s, v in zip(samples, values, strict=True))
    return {"points": points, "top": round(top), "timeout_y": round(100 - 100 * archive_timeout / top, 1),
            "worst": max(values) if values else None, "width": CHART_WIDTH}


def filling_chart(archive: WalArchive, hours: int = 24) -> dict[str, object]:
    rows = catalog.recent_arrivals(archive, hours)
    top = max([count for _, count, _ in rows] + [1])
    bars = [{"hour": hour, "count": count, "bytes": size(total), "height": round(100 * count / top, 1)}
            for hour, count, total in rows]
    return {"bars": bars, "segments": sum(c for _, c, _ in rows), "bytes": size(sum(b for _, _, b in rows))}


def timeline_context(archive: WalArchive) -> dict[str, object]:
    now = timezone.now()
    window = recoverable_window(archive.cluster)
    first_segment = archive.segments.exclude(state=WalSegment.State.REMOVED).order_by("arrived_at").first()
    starts = [r.start for r in window.ranges] + ([first_segment.arrived_at] if first_segment else [])
    oldest = min(starts, default=now - timedelta(hours=1))
    span = max(now - oldest, timedelta(minutes=5))
    scale = Scale(now - span * 1.05, now)
    samples = list(archive.samples.filter(taken_at__gte=scale.start).order_by("taken_at"))
    return {
        "archive": archive, "sample": archive.latest_sample(), "window": window, "scale": scale,
        "marks": timeline_marks(archive, window, scale), "rpo": rpo_chart(samples, scale, archive.archive_timeout),
        "filling": filling_chart(archive), "segments": catalog.totals(archive),
        "recent_segments": archive.segments.order_by("-arrived_at")[:12],
        "ticks": [{"left": scale.at(scale.start + (scale.end - scale.start) * i / 6),
                   "label": timezone.localtime(scale.start + (scale.end - scale.start) * i / 6)} for i in range(7)],
    }


@admin.register(WalArchive)
class WalArchiveAdmin(admin.ModelAdmin):
    list_display = ["cluster", "health", "last_archived", "backlog", "rpo", "archived", "window_end", "timeline"]
    readonly_fields = ["cluster", "path", "compression", "archive_timeout", "system_identifier", "segment_size",
                       "configured_at", "proven_at", "proof_segment", "slot_name", "stream_synchronous"]
    fields = [*readonly_fields[:4], "retention_days", *readonly_fields[4:]]
    actions = ["sample_now"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # manage.py configure_archiving creates archives: it changes the server's settings

    def get_urls(self):
        view = self.admin_site.admin_view(self.timeline_view)
        return [path("<int:pk>/timeline/", view, name="backups_walarchive_timeline"), *super().get_urls()]

    def timeline_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        archive = get_object_or_404(WalArchive.objects.select_related("cluster"), pk=pk)
        if not self.has_view_permission(request, archive):
            raise PermissionDenied("Seeing WAL archives needs the Auditor, Operator or DBA role.")
        context = {**self.admin_site.each_context(request), "opts": self.model._meta,
                   "title": f"WAL archive of {archive.cluster}", **timeline_context(archive)}
        return TemplateResponse(request, "backups/wal_timeline.html", context)

    def save_model(self, request: HttpRequest, obj: WalArchive, form, change: bool) -> None:
        super().save_model(request, obj, form, change)
        audit.record("walarchive.change", actor=request.user, obj=obj, target=str(obj.cluster),
                     details={"fields": sorted(form.changed_data)})

    @admin.display(description="Health")
    def health(self, obj: WalArchive) -> str:
        sample = obj.latest_sample()
        if sample is None:
            return status_badge(None, "", "")
        text = "; ".join(p["text"] for p in sample.problems)
        if sample.alert == WalArchiveSample.Alert.WARNING:
            return format_html('<span class="status unknown" title="{}">warning</span>', text)
        return status_badge(sample.alert == WalArchiveSample.Alert.OK, "ok", sample.alert, text)

    @admin.display(description="Last archived")
    def last_archived(self, obj: WalArchive) -> str:
        sample = obj.latest_sample()
        if not sample or not sample.last_archived_wal:
            return "—"
        return f"{sample.last_archived_wal} at {timezone.localtime(sample.last_archived_at):%H:%M:%S}"

    @admin.display(description="Waiting (.ready)")
    def backlog(self, obj: WalArchive) -> str:
        sample = obj.latest_sample()
        return "—" if not sample or sample.ready_count is None else str(sample.ready_count)

    @admin.display(description="Achieved RPO")
    def rpo(self, obj: WalArchive) -> str:
        sample = obj.latest_sample()
        if not sample or sample.rpo_seconds is None:
            return "—"
        return f"{sample.rpo_seconds:.1f} s / {size(sample.rpo_bytes)}"

    @admin.display(description="Archived")
    def archived(self, obj: WalArchive) -> str:
        count, total = catalog.totals(obj)
        return f"{count} files, {size(total)}"

    @admin.display(description="Recoverable until")
    def window_end(self, obj: WalArchive) -> str:
        window = recoverable_window(obj.cluster)
        return f"{timezone.localtime(window.end):%Y-%m-%d %H:%M:%S}" if window.end else "no base backup yet"

    @admin.display(description="")
    def timeline(self, obj: WalArchive) -> str:
        return format_html('<a href="{}">timeline</a>', reverse("admin:backups_walarchive_timeline", args=[obj.pk]))

    @admin.action(description="Rescan the archive and sample the archiver now", permissions=["change"])
    def sample_now(self, request: HttpRequest, queryset: QuerySet[WalArchive]) -> None:
        for archive in queryset:  # the worker connects (the web server has no managed cluster's password)
            transaction.on_commit(partial(async_task, "backups.tasks.sample_wal_archive", archive.pk,
                                          request.user.get_username(), task_name=f"sample {archive}"[:100]))
        names = ", ".join(str(archive.cluster) for archive in queryset)
        self.message_user(request, f"Sampling the WAL archive of {names} now: its health shows here in a moment.")


@admin.register(WalSegment)
class WalSegmentAdmin(admin.ModelAdmin):
    list_display = ["name", "archive", "kind", "state", "size_display", "compressed", "arrived_at", "last_commit_at"]
    list_filter = ["state", "kind", "archive"]
    search_fields = ["name"]
    date_hierarchy = "arrived_at"

    def get_readonly_fields(self, request: HttpRequest, obj: WalSegment | None = None) -> list[str]:
        return [f.name for f in WalSegment._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: WalSegment | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: WalSegment | None = None) -> bool:
        return False  # retention removes segments, with an audit event

    @admin.display(description="Size", ordering="size_bytes")
    def size_display(self, obj: WalSegment) -> str:
        return size(obj.size_bytes)
