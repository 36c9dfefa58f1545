"""The backup catalogue in the admin: policies (run now), backups (read-only, with live progress) and
configuration versions (with a diff between any two)."""

from __future__ import annotations

import difflib
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST
from django_q.models import Schedule

from backups import runs
from backups.models import Backup, BackupPolicy, ConfigFileVersion
from backups.progress import progress_data
from backups.schedules import schedule_name
from backups.storage.admin import BackupCopyInline
from backups.wal import admin as wal_admin  # noqa: F401 (registers the WAL archive's pages)
from portal import audit, progress
from portal.admin import AuditedAdmin
from portal.templatetags.portal_format import size

RUN_PERMISSION = "portal.run_backup"
ENCRYPTED_CONTENT = ("Encrypted policy: the content is kept only in the encrypted archive, not in the portal's "
                     "database; the checksum says whether it changed.")
STATUS_CSS = {"succeeded": "ok", "failed": "fail", "cancelled": "fail", "verified": "ok"}


def badge(value: str, label: str) -> str:
    return format_html('<span class="status {}">{}</span>', STATUS_CSS.get(value, "unknown"), label)


def seconds(value: float | None) -> str:
    if value is None:
        return "—"
    minutes, secs = divmod(value, 60)
    return f"{int(minutes)} min {secs:.0f} s" if minutes else f"{secs:.1f} s"


def progress_bar(backup: Backup, url: str) -> str:
    return progress.bar(progress_data(backup), url, "backup-progress")


class ReadOnly:
    """Shown to whoever may view it; changed by no one through the admin (the code that makes it does)."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class BackupInline(ReadOnly, admin.TabularInline):
    model = Backup
    extra = 0
    fields = ["link", "status", "verification", "size_display", "created", "triggered_by"]
    readonly_fields = fields
    ordering = ["-created"]
    verbose_name_plural = "backups of this policy"

    @admin.display(description="Backup")
    def link(self, obj: Backup) -> str:
        return format_html('<a href="{}">{}</a>', reverse("admin:backups_backup_change", args=[obj.pk]), obj)

    @admin.display(description="Size")
    def size_display(self, obj: Backup) -> str:
        return size(obj.size_bytes)


@admin.register(BackupPolicy)
class BackupPolicyAdmin(AuditedAdmin):
    list_display = ["name", "kind", "what", "schedule", "enabled", "retention_days", "encrypt", "last_backup",
                    "next_run"]
    list_filter = ["kind", "enabled", "encrypt", "cluster"]
    search_fields = ["name"]
    fieldsets = [
        (None, {"fields": ["name", "kind", "cluster", "database", "enabled"]}),
        ("When, and for how long", {"fields": ["schedule", "next_run", "retention_days", "min_verified"]}),
        ("Where and how", {"fields": ["locations", "encrypt", "dump_format", "jobs", "compression"]}),
        ("Verification", {"fields": ["verify_every"]}),
        ("Physical base backups", {"fields": ["checkpoint"], "classes": ["collapse"]}),
    ]
    readonly_fields = ["next_run"]
    formfield_overrides = {models.ManyToManyField: {"widget": forms.CheckboxSelectMultiple}}
    inlines = [BackupInline]
    actions = ["run_now"]
    change_form_template = "admin/backups/backuppolicy/change_form.html"

    @admin.display(description="Backs up")
    def what(self, obj: BackupPolicy) -> str:
        return str(obj.database) if obj.database_id else str(obj.cluster)

    @admin.display(description="Next run")
    def next_run(self, obj: BackupPolicy) -> str:
        schedule = Schedule.objects.filter(name=schedule_name(obj.pk)).first() if obj.pk else None
        if schedule is None or schedule.next_run is None:
            return "not scheduled"
        return f"{schedule.next_run:%Y-%m-%d %H:%M} UTC"

    @admin.display(description="Last backup")
    def last_backup(self, obj: BackupPolicy) -> str:
        last = obj.backups.order_by("-created").first()
        if last is None:
            return "—"
        state = last.verification if last.status == Backup.Status.SUCCEEDED else last.status
        label = last.get_verification_display() if last.status == Backup.Status.SUCCEEDED else last.get_status_display()
        return format_html('<a href="{}">{}</a> {}', reverse("admin:backups_backup_change", args=[last.pk]),
                           f"{last.created:%Y-%m-%d %H:%M}", badge(state, label))

    def has_run_backup_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(RUN_PERMISSION)

    @admin.action(description="Run now", permissions=["run_backup"])
    def run_now(self, request: HttpRequest, queryset: QuerySet[BackupPolicy]) -> HttpResponse | None:
        started = [b for policy in queryset if (b := self._queue(request, policy, via="admin action"))]
        if len(started) == 1:
            return HttpResponseRedirect(reverse("admin:backups_backup_change", args=[started[0].pk]))
        return None

    def _queue(self, request: HttpRequest, policy: BackupPolicy, via: str) -> Backup | None:
        try:
            backup = runs.queue(policy, actor=request.user, via=via)
        except runs.AlreadyRunning as exc:
            self.message_user(request, str(exc), messages.WARNING)
            return None
        self.message_user(request, f"Backup #{backup.pk} of “{policy}” queued.", messages.SUCCESS)
        return backup

    def get_urls(self) -> list:
        run = self.admin_site.admin_view(require_POST(self.run_view))
        return [path("<int:pk>/run/", run, name="backups_backuppolicy_run"), *super().get_urls()]

    def run_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        policy = get_object_or_404(BackupPolicy, pk=pk)
        if not self.has_run_backup_permission(request):
            audit.record("backup.request", actor=request.user, obj=policy, target=str(policy),
                         outcome=audit.Outcome.DENIED, details={"via": "policy page", "reason": "no permission"})
            raise PermissionDenied("Running a backup needs the Operator or DBA role.")
        backup = self._queue(request, policy, via="policy page")
        target = ("admin:backups_backup_change", [backup.pk]) if backup else ("admin:backups_backuppolicy_change", [pk])
        return HttpResponseRedirect(reverse(target[0], args=target[1]))

    def render_change_form(self, request: HttpRequest, context: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        context["can_run_backup"] = self.has_run_backup_permission(request)
        return super().render_change_form(request, context, *args, **kwargs)


class ProgressMedia:
    css = {"all": ["backups/backups.css"]}
    js = ["portal/progress.js"]


@admin.register(Backup)
class BackupAdmin(ReadOnly, admin.ModelAdmin):
    """The catalogue, read-only: backups are made by running a policy, removed by retention."""

    list_display = ["name_display", "status_badge", "progress", "verification_badge", "size_display", "when"]
    list_display_links = ["name_display"]
    list_filter = ["status", "verification", "kind", "encrypted", "policy"]
    search_fields = ["name", "sha256", "triggered_by"]
    date_hierarchy = "created"
    fieldsets = [
        (None, {"fields": ["policy", "kind", "cluster", "database", "triggered_by", "status_badge", "error"]}),
        ("Progress", {"fields": ["progress", "created", "started", "finished", "backup_time"]}),
        ("The backup", {"fields": ["name", "path", "format", "encrypted", "size_exact", "sha256",
                                   "server_version", "client_version", "globals_file"]}),
        ("Verification", {"fields": ["verification_badge", "verified_at", "verification_time",
                                     "verification_error"]}),
        ("Row counts in the dump's snapshot", {"fields": ["row_counts"]}),
        ("Log", {"fields": ["log_display"]}),
    ]
    inlines = [BackupCopyInline]
    Media = ProgressMedia

    def get_urls(self) -> list:
        progress = self.admin_site.admin_view(never_cache(self.progress_view))
        return [path("<int:pk>/progress/", progress, name="backups_backup_progress"), *super().get_urls()]

    def progress_view(self, request: HttpRequest, pk: int) -> JsonResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied("Seeing backups needs the Auditor, Operator or DBA role.")
        return JsonResponse(progress_data(get_object_or_404(Backup, pk=pk)))

    @admin.display(description="Created", ordering="created")
    def when(self, obj: Backup) -> str:
        return f"{obj.created:%Y-%m-%d %H:%M}"

    @admin.display(description="Backup (policy)", ordering="name")
    def name_display(self, obj: Backup) -> str:
        return format_html('{}<br><span class="policy-name">#{} · {}</span>', obj, obj.pk, obj.policy)

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj: Backup) -> str:
        return badge(obj.status, obj.get_status_display())

    @admin.display(description="Verification", ordering="verification")
    def verification_badge(self, obj: Backup) -> str:
        return badge(obj.verification, obj.get_verification_display())

    @admin.display(description="Progress")
    def progress(self, obj: Backup) -> str:
        return progress_bar(obj, reverse("admin:backups_backup_progress", args=[obj.pk]))

    @admin.display(description="Size", ordering="size_bytes")
    def size_display(self, obj: Backup) -> str:
        return size(obj.size_bytes)

    @admin.display(description="Size")
    def size_exact(self, obj: Backup) -> str:
        return size(obj.size_bytes) + (f" ({obj.size_bytes:,} bytes)" if obj.size_bytes else "")

    @admin.display(description="Time taken", ordering="backup_seconds")
    def backup_time(self, obj: Backup) -> str:
        return seconds(obj.backup_seconds)

    @admin.display(description="Time taken (its cost)", ordering="verification_seconds")
    def verification_time(self, obj: Backup) -> str:
        return seconds(obj.verification_seconds)

    @admin.display(description="Globals (roles, tablespaces)")
    def globals_file(self, obj: Backup) -> str:
        extra = obj.manifest.get("globals")
        return f"{extra['path']} ({size(extra['size'])}, sha256 {extra['sha256']})" if extra else "—"

    @admin.display(description="Rows per table")
    def row_counts(self, obj: Backup) -> str:
        tables = obj.manifest.get("tables")
        if not tables:
            return "—"
        rows = format_html_join("", "<tr><td>{}</td><td class='num'>{}</td></tr>",
                                ((name, f"{count:,}") for name, count in sorted(tables.items())))
        total = sum(tables.values())
        return format_html('<table class="row-counts"><thead><tr><th>Table</th><th>Rows</th></tr></thead>'
                           '<tbody>{}</tbody><tfoot><tr><th>{} tables</th><th class="num">{}</th></tr></tfoot>'
                           '</table>', rows, len(tables), f"{total:,}")

    @admin.display(description="Log")
    def log_display(self, obj: Backup) -> str:
        return format_html('<pre class="backup-log">{}</pre>', obj.log or "—")


@admin.register(ConfigFileVersion)
class ConfigFileVersionAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ["source", "cluster", "created", "changed", "size_bytes", "short_sha", "backup"]
    list_filter = ["source", "changed", "backup__cluster"]
    search_fields = ["source", "origin", "sha256"]
    fields = ["source", "origin", "backup", "created", "sha256", "size_bytes", "changed", "other_versions",
              "content_display"]
    readonly_fields = fields
    actions = ["compare"]

    def has_compare_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    @admin.display(description="Cluster", ordering="backup__cluster__name")
    def cluster(self, obj: ConfigFileVersion) -> str:
        return obj.backup.cluster.name

    @admin.display(description="sha256")
    def short_sha(self, obj: ConfigFileVersion) -> str:
        return obj.sha256[:12]

    @admin.display(description="Content")
    def content_display(self, obj: ConfigFileVersion) -> str:
        if obj.backup.encrypted:
            return ENCRYPTED_CONTENT
        return format_html('<pre class="config-content">{}</pre>', obj.content)

    @admin.display(description="Compare with")
    def other_versions(self, obj: ConfigFileVersion) -> str:
        others = versions_of(obj).exclude(pk=obj.pk)[:30]
        links = format_html_join(
            mark_safe("<br>"), '<a href="{}">{}</a>{}',
            ((reverse("admin:backups_configfileversion_diff", args=[other.pk, obj.pk]),
              f"{other.created:%Y-%m-%d %H:%M:%S}", " (changed)" if other.changed else "") for other in others))
        return links or "no other version"

    @admin.action(description="Compare the two selected versions")
    def compare(self, request: HttpRequest, queryset: QuerySet[ConfigFileVersion]) -> HttpResponse | None:
        chosen = list(queryset.order_by("created")[:3])
        if len(chosen) != 2 or chosen[0].source != chosen[1].source:
            self.message_user(request, "Select exactly two versions of the same source.", messages.WARNING)
            return None
        return HttpResponseRedirect(reverse("admin:backups_configfileversion_diff",
                                            args=[chosen[0].pk, chosen[1].pk]))

    def get_urls(self) -> list:
        diff = self.admin_site.admin_view(self.diff_view)
        return [path("<int:old>/diff/<int:new>/", diff, name="backups_configfileversion_diff"), *super().get_urls()]

    def diff_view(self, request: HttpRequest, old: int, new: int) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied("Seeing configuration versions needs the Auditor, Operator or DBA role.")
        before, after = get_object_or_404(ConfigFileVersion, pk=old), get_object_or_404(ConfigFileVersion, pk=new)
        if before.source != after.source:
            messages.warning(request, "These are versions of two different sources.")
        table = difflib.HtmlDiff(wrapcolumn=90).make_table(
            before.content.splitlines(), after.content.splitlines(),
            f"{before.created:%Y-%m-%d %H:%M:%S} (backup #{before.backup_id})",
            f"{after.created:%Y-%m-%d %H:%M:%S} (backup #{after.backup_id})", context=True, numlines=3)
        context = {**self.admin_site.each_context(request), "opts": self.opts, "before": before, "after": after,
                   "identical": before.sha256 == after.sha256, "title": f"{after.source}: what changed",
                   "encrypted": ENCRYPTED_CONTENT if before.backup.encrypted or after.backup.encrypted else "",
                   "diff_table": mark_safe(table)}  # noqa: S308 -- HtmlDiff escapes the lines it shows
        return TemplateResponse(request, "admin/backups/configfileversion/diff.html", context)

    class Media:
        css = {"all": ["backups/backups.css"]}


def versions_of(version: ConfigFileVersion) -> QuerySet[ConfigFileVersion]:
    """Every version of the same source of the same cluster, newest first."""
    return (ConfigFileVersion.objects.filter(source=version.source, backup__cluster_id=version.backup.cluster_id)
            .select_related("backup").order_by("-created"))
