"""Storage locations (with a connection test) and backup copies (check, copy again) in the admin."""

from __future__ import annotations

from functools import partial
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import models, transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django_q.tasks import async_task

from backups.models import Backup, BackupCopy, StorageLocation
from backups.storage import backends, locations
from portal import audit
from portal.admin import AuditedAdmin, status_badge
from portal.templatetags.portal_format import size


class StorageLocationForm(forms.ModelForm):
    """The folder is checked (`locations.path_problem`: not `/`, a system folder, a cluster's data directory or a WAL
    archive, nor inside one), and that its marker can be written: a folder with another location's or portal's
    marker, or not empty without one, is refused with the reason."""

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        candidate = StorageLocation(pk=self.instance.pk, **{
            name: cleaned.get(name, getattr(self.instance, name)) for name in ("name", "kind", "path")})
        moved = self.instance.pk is None or bool({"kind", "path"} & set(self.changed_data))
        candidate.marker_written = None if moved else self.instance.marker_written
        if candidate.kind != StorageLocation.Kind.LOCAL or "path" in self.errors:
            return cleaned
        if (problem := locations.path_problem(candidate)) or (problem := locations.marker_problem(candidate)):
            self.add_error("path", problem)
        return cleaned


@admin.register(StorageLocation)
class StorageLocationAdmin(AuditedAdmin):
    form = StorageLocationForm
    list_display = ["name", "kind", "address", "marker", "credentials_profile"]
    list_filter = ["kind"]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    fieldsets = [
        (None, {"fields": ["name", "kind"]}),
        ("Local folder", {"fields": ["path"]}),
        ("S3-compatible object storage", {
            "fields": ["endpoint_url", "region", "bucket", "prefix", "credentials_profile"],
            "description": "Keys are never stored here: the profile names an entry of the AWS shared credentials "
                           "file given by S3_CREDENTIALS_FILE in deployment configuration (or the standard AWS "
                           "variables when empty).",
        }),
    ]
    actions = ["test_connection"]

    def save_model(self, request: HttpRequest, obj: StorageLocation, form: Any, change: bool) -> None:
        """Saved, then (created, or its folder or name changed) its folder gets the marker."""
        moved = not change or bool({"kind", "path"} & set(form.changed_data))
        if moved:
            obj.marker_written = None
        super().save_model(request, obj, form, change)
        if obj.kind == StorageLocation.Kind.LOCAL and (moved or "name" in form.changed_data):
            try:
                self.message_user(request, locations.initialise(obj, actor=request.user))
            except locations.LocationError as exc:
                self.message_user(request, f"Saved, but its folder is not usable yet: {exc}", messages.ERROR)

    @admin.display(description="Marker")
    def marker(self, obj: StorageLocation) -> str:
        if obj.kind != StorageLocation.Kind.LOCAL:
            return "—"
        if obj.marker_written is None:
            return status_badge(False, "", "not written", "manage.py init_location " + obj.name)
        return status_badge(True, "written", "", f"{obj.marker_written:%Y-%m-%d %H:%M} UTC")

    @admin.display(description="Where")
    def address(self, obj: StorageLocation) -> str:
        if obj.kind == StorageLocation.Kind.S3:
            where = f"s3://{obj.bucket}/{obj.prefix}".rstrip("/")
            return f"{where} at {obj.endpoint_url}" if obj.endpoint_url else where
        return obj.path or f"{obj.root} (BACKUP_ROOT)"

    @admin.action(description="Test connection (write, read back and delete a small object)", permissions=["change"])
    def test_connection(self, request: HttpRequest, queryset: QuerySet[StorageLocation]) -> None:
        for location in queryset:
            try:
                outcome, level = backends.probe(location), messages.SUCCESS
            except backends.StorageError as exc:
                outcome, level = str(exc), messages.ERROR
            audit.record("storage.test", actor=request.user, obj=location, target=str(location),
                         outcome=audit.Outcome.SUCCESS if level == messages.SUCCESS else audit.Outcome.FAILURE,
                         details={"outcome": outcome})
            self.message_user(request, f"{location}: {outcome}", level)


def copy_state(copy: BackupCopy) -> str:
    if copy.state == BackupCopy.State.PRESENT:
        return status_badge(True, "present", "", f"checked {copy.checked_at:%Y-%m-%d %H:%M}" if copy.checked_at else "")
    if copy.state == BackupCopy.State.FAILED:
        return status_badge(False, "", "failed", copy.error)
    return format_html('<span class="status unknown" title="{}">{}</span>', copy.error, copy.get_state_display())


class RunBackupPermission:
    """Copy and check actions: for whoever may run backups (Operators and DBAs)."""

    def has_run_backup_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("portal.run_backup")


class BackupCopyInline(admin.TabularInline):
    """Where a backup is kept: add to the Backup admin's inlines."""

    model = BackupCopy
    extra = 0
    can_delete = False
    fields = ["location", "state_badge", "key", "size_display", "sha256", "copied_at", "checked_at", "error"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="State")
    def state_badge(self, obj: BackupCopy) -> str:
        return copy_state(obj)

    @admin.display(description="Size")
    def size_display(self, obj: BackupCopy) -> str:
        return size(obj.size_bytes)


@admin.register(BackupCopy)
class BackupCopyAdmin(RunBackupPermission, admin.ModelAdmin):
    list_display = ["backup", "location", "state_badge", "size_display", "short_sha256", "copied_at", "checked_at",
                    "error"]
    list_filter = ["state", "location"]
    search_fields = ["backup__name", "key"]
    list_select_related = ["backup", "location"]
    actions = ["check_now", "retry_copy"]

    def get_readonly_fields(self, request: HttpRequest, obj: BackupCopy | None = None) -> list[str]:
        return [f.name for f in BackupCopy._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: BackupCopy | None = None) -> bool:
        return False  # copies are deleted by retention, which records each deletion

    @admin.display(description="State", ordering="state")
    def state_badge(self, obj: BackupCopy) -> str:
        return copy_state(obj)

    @admin.display(description="Size", ordering="size_bytes")
    def size_display(self, obj: BackupCopy) -> str:
        return size(obj.size_bytes)

    @admin.display(description="sha256")
    def short_sha256(self, obj: BackupCopy) -> str:
        return format_html('<code title="{}">{}</code>', obj.sha256, obj.sha256[:12]) if obj.sha256 else "—"

    @admin.action(description="Check now (read back, compare size and sha256)", permissions=["run_backup"])
    def check_now(self, request: HttpRequest, queryset: QuerySet[BackupCopy]) -> None:
        copies = list(queryset.exclude(state__in=[BackupCopy.State.DELETED, BackupCopy.State.COPYING]))
        for copy in copies:
            audit.record("backup.copy.check", actor=request.user, obj=copy.backup, target=str(copy),
                         outcome=audit.Outcome.STARTED, details={"location": copy.location.name})
            transaction.on_commit(partial(async_task, "backups.tasks.check_copy", copy.pk, request.user.get_username(),
                                          task_name=f"check copy {copy.pk}"))
        self.message_user(request, f"Checking {len(copies)} copies; refresh to see the outcome.")

    @admin.action(description="Copy again where missing or failed", permissions=["run_backup"])
    def retry_copy(self, request: HttpRequest, queryset: QuerySet[BackupCopy]) -> None:
        failed = queryset.filter(state__in=[BackupCopy.State.FAILED, BackupCopy.State.PENDING],
                                 backup__status=Backup.Status.SUCCEEDED, backup__expired_at__isnull=True)
        backups = {copy.backup for copy in failed}
        for backup in backups:
            audit.record("backup.copy", actor=request.user, obj=backup, target=str(backup),
                         outcome=audit.Outcome.STARTED, details={"retry": True})
            transaction.on_commit(partial(async_task, "backups.tasks.copy_backup", backup.pk,
                                          request.user.get_username(), task_name=f"copy backup {backup.pk}"))
        self.message_user(request, f"Copying {len(backups)} backup(s) again; refresh to see the outcome.")


# Placeholders until issue 3's other half (policies, runs) lands: the lead keeps that half's BackupPolicy and
# Backup admin, adds BackupCopyInline to its Backup admin, and keeps the change-form templates under
# templates/admin/backups/ (the "Retention" and "Download" buttons).
