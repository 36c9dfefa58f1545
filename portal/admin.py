from __future__ import annotations

from functools import partial
from typing import Any

from django.contrib import admin
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.utils.html import format_html
from django_q.tasks import async_task

from portal import audit, health
from portal.models import AuditEvent, ManagedCluster, ManagedDatabase
from portal.templatetags.portal_format import size


def status_badge(ok: bool | None, good: str, bad: str, title: str = "") -> str:
    if ok is None:
        return format_html('<span class="status unknown">{}</span>', "not checked")
    css, text = ("ok", good) if ok else ("fail", bad)
    return format_html('<span class="status {}" title="{}">{}</span>', css, title, text)


class AuditedAdmin(admin.ModelAdmin):
    """Every change made through the admin is an audit event."""

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        action = f"{obj._meta.model_name}.{'change' if change else 'create'}"
        audit.record(action, actor=request.user, obj=obj, target=str(obj),
                     details={"fields": sorted(form.changed_data)})

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        label, pk = str(obj), obj.pk
        super().delete_model(request, obj)
        audit.record(f"{obj._meta.model_name}.delete", actor=request.user, target=label, details={"id": pk})

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for obj in queryset:
            self.delete_model(request, obj)


class ManagedDatabaseInline(admin.TabularInline):
    model = ManagedDatabase
    extra = 0
    fields = ["name", "environment", "exists", "size_display", "checked_at"]
    readonly_fields = ["exists", "size_display", "checked_at"]

    @admin.display(description="Size")
    def size_display(self, obj: ManagedDatabase) -> str:
        return size(obj.size_bytes)


@admin.register(ManagedCluster)
class ManagedClusterAdmin(AuditedAdmin):
    list_display = ["name", "address", "scratch", "status", "server_version", "recovery", "size_display",
                    "checked_at"]
    readonly_fields = ["status", "server_version", "in_recovery", "size_display", "status_error", "checked_at"]
    fieldsets = [
        (None, {"fields": ["name", "host", "port", "role", "scratch"]}),
        ("Credentials, by reference", {"fields": ["passfile", "service"]}),
        ("Local control", {"fields": ["control", "data_directory", "os_user"]}),
        ("Status", {"fields": readonly_fields}),
    ]
    inlines = [ManagedDatabaseInline]
    actions = ["check_now"]

    @admin.display(description="Address")
    def address(self, obj: ManagedCluster) -> str:
        return f"{obj.host}:{obj.port}"

    @admin.display(description="Status (sampled every minute)")
    def status(self, obj: ManagedCluster) -> str:
        """The stored sample and its age: a list or page view never connects to the cluster."""
        return render_to_string("portal/cluster_status.html", {"cluster": obj, "status": health.managed_cluster(obj)})

    @admin.display(description="In recovery", boolean=True)
    def recovery(self, obj: ManagedCluster) -> bool | None:
        return obj.in_recovery

    @admin.display(description="Size")
    def size_display(self, obj: ManagedCluster) -> str:
        return size(obj.size_bytes)

    @admin.action(description="Check status now", permissions=["change"])
    def check_now(self, request: HttpRequest, queryset: QuerySet[ManagedCluster]) -> None:
        for cluster in queryset:  # the worker connects (the web server has no managed cluster's password)
            transaction.on_commit(partial(async_task, "portal.tasks.check_cluster", cluster.pk,
                                          request.user.get_username(), task_name=f"check {cluster}"[:100]))
        names = ", ".join(str(cluster) for cluster in queryset)
        self.message_user(request, f"Checking {names} now: the status here shows the result in a moment.")


@admin.register(ManagedDatabase)
class ManagedDatabaseAdmin(AuditedAdmin):
    list_display = ["name", "cluster", "environment", "present", "size_display", "checked_at"]
    list_filter = ["environment", "cluster"]
    readonly_fields = ["exists", "size_bytes", "checked_at"]

    @admin.display(description="Present")
    def present(self, obj: ManagedDatabase) -> str:
        return status_badge(obj.exists, "present", "missing")

    @admin.display(description="Size")
    def size_display(self, obj: ManagedDatabase) -> str:
        return size(obj.size_bytes)


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["id", "created", "actor", "action", "target", "outcome"]
    list_filter = ["outcome", "action"]
    search_fields = ["actor", "action", "target", "object_id"]
    date_hierarchy = "created"

    def get_readonly_fields(self, request: HttpRequest, obj: AuditEvent | None = None) -> list[str]:
        return [f.name for f in AuditEvent._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False
