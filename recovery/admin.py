"""Recovery requests in the admin: the request form (Operators and DBAs), each request's page with its live step
list, progress bar, approval buttons (a second DBA) and results, and the list. Auditors see everything and change
nothing; nobody edits or deletes a request (the worker writes its outcome)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from portal import audit
from portal import progress as job_progress
from portal.forms import posted_text
from recovery import approvals, objectives, services, validation
from recovery.forms import RecoveryRequestForm
from recovery.models import Approval, DrillSchedule, RecoveryRequest
from recovery.progress import duration, progress_data, step_data

REQUEST_PERMISSION = "portal.request_recovery"
APPROVE_PERMISSION = "portal.approve_recovery"
STATUS_CSS = {"succeeded": "ok", "failed": "fail", "cancelled": "fail", "rejected": "fail", "requested": "waiting",
              "running": "running", "queued": "waiting"}
FIELDSETS = [
    (None, {"fields": ["kind", "database", "cluster", "backup"]}),
    ("Point in time", {"fields": ["target_time"], "classes": ["kind-pitr"]}),
    ("Single table", {"fields": ["tables", "merge_policy"], "classes": ["kind-table"]}),
    ("Where to", {"fields": ["destination", "destination_name"], "classes": ["kind-complete"]}),
    ("Why", {"fields": ["reason"]}),
]


def badge(request: RecoveryRequest) -> str:
    return format_html('<span class="status {}">{}</span>', STATUS_CSS.get(request.status, "unknown"),
                       request.get_status_display())


def promotion_context(request: HttpRequest, recovery: RecoveryRequest) -> dict[str, Any]:
    """What the page says about making a recovered cluster production: the button on a succeeded point-in-time
    recovery, and on a promotion request the data directories it swaps."""
    if recovery.kind == RecoveryRequest.Kind.PROMOTE:
        pitr = recovery.source_recovery
        data = recovery.cluster.data_directory
        return {"promotion": {"recovered": pitr.result_cluster if pitr else None, "data": data,
                              "target_time": pitr.target_time if pitr else None}}
    recovered = recovery.result_cluster
    offer = (recovery.kind == RecoveryRequest.Kind.PITR and recovery.status == RecoveryRequest.Status.SUCCEEDED
             and recovered is not None and recovered.is_local and request.user.has_perm(REQUEST_PERMISSION))
    return {"may_promote": offer, "promotions": recovery.promotions.order_by("-created")}


def objective(seconds: float | None, goal: float, what: str) -> str:
    if seconds is None:
        return "—"
    met = seconds <= goal
    return format_html('{} <span class="status {}">{} the {} objective of {}</span>', duration(seconds),
                       "ok" if met else "fail", "within" if met else "over", what, duration(goal))


class RecoveryMedia:
    css = {"all": ["recovery/recovery.css"]}
    js = ["portal/progress.js", "recovery/recovery.js"]


@admin.register(RecoveryRequest)
class RecoveryRequestAdmin(admin.ModelAdmin):
    list_display = ["title", "status_badge", "progress", "destination_short"]  # the bar's label carries the RTO
    list_display_links = ["title"]
    list_filter = ["status", "kind", "destination", "cluster"]
    search_fields = ["reason", "destination_name", "requester__username", "error"]
    date_hierarchy = "created"
    fieldsets = [
        ("The request", {"fields": ["kind", "what", "source_link", "backup_link", "target_time_utc", "tables_display",
                                    "merge_policy", "destination_display", "requester", "reason", "created"]}),
        ("Outcome", {"fields": ["status_badge", "error", "result_database", "rto", "rpo", "started", "finished"]}),
        ("Verification", {"fields": ["verification_display"]}),
        ("Log", {"fields": ["log_display"], "classes": ["collapse"]}),
    ]
    readonly_fields = ["what", "source_link", "backup_link", "target_time_utc", "tables_display", "destination_display",
                       "status_badge", "rto", "rpo", "verification_display", "log_display"]
    change_form_template = "admin/recovery/recoveryrequest/change_form.html"
    Media = RecoveryMedia

    def get_fieldsets(self, request: HttpRequest, obj: RecoveryRequest | None = None) -> list:
        """Only what applies to the request's kind."""
        applies = {"target_time_utc": RecoveryRequest.Kind.PITR, "tables_display": RecoveryRequest.Kind.TABLE,
                   "merge_policy": RecoveryRequest.Kind.TABLE, "source_link": RecoveryRequest.Kind.PROMOTE}
        if obj is not None and obj.kind == RecoveryRequest.Kind.PROMOTE:
            applies["backup_link"] = RecoveryRequest.Kind.PITR
        shown = []
        for name, options in self.fieldsets:
            fields = [f for f in options["fields"] if obj is None or applies.get(f, obj.kind) == obj.kind]
            shown.append((name, {**options, "fields": fields}))
        return shown

    # Nobody edits or deletes a request through the admin: the form submits it, the worker records its outcome.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(REQUEST_PERMISSION)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[RecoveryRequest]:
        return super().get_queryset(request).select_related("cluster", "database", "backup", "requester")

    def get_urls(self) -> list:
        wrap = self.admin_site.admin_view
        return [
            path("<int:pk>/progress/", wrap(never_cache(self.progress_view)), name="recovery_recoveryrequest_progress"),
            path("<int:pk>/approve/", wrap(require_POST(self.approve_view)), name="recovery_recoveryrequest_approve"),
            path("<int:pk>/reject/", wrap(require_POST(self.reject_view)), name="recovery_recoveryrequest_reject"),
            path("<int:pk>/promote/", wrap(require_POST(self.promote_view)), name="recovery_recoveryrequest_promote"),
            *super().get_urls(),
        ]

    # --- requesting ---

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: dict | None = None) -> HttpResponse:
        if not self.has_add_permission(request):
            audit.record("recovery.request", actor=request.user, outcome=audit.Outcome.DENIED,
                         details={"reason": "no permission", "via": "request form"})
            raise PermissionDenied("Requesting a recovery needs the Operator or DBA role.")
        form = RecoveryRequestForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                validation.validate(form.instance)  # the catalogue, the clusters, the files: here, not in clean()
                recovery = approvals.submit(form.instance, request.user)
            except approvals.Refused as exc:
                form.add_error(None, str(exc))
            except ValidationError as exc:  # the kind's checks: the catalogue, the clusters, the files
                form.add_check_errors(exc)
            else:
                messages.success(request, self._submitted_message(recovery))
                return HttpResponseRedirect(reverse("admin:recovery_recoveryrequest_change", args=[recovery.pk]))
        context = {
            **self.admin_site.each_context(request), "opts": self.opts, "title": "Request a recovery",
            "adminform": helpers.AdminForm(form, FIELDSETS, {}), "form": form, "media": self.media + form.media,
            "errors": helpers.AdminErrorList(form, []), "has_view_permission": self.has_view_permission(request),
        }
        return TemplateResponse(request, "admin/recovery/recoveryrequest/request_form.html", context)

    @staticmethod
    def _submitted_message(recovery: RecoveryRequest) -> str:
        if recovery.status == RecoveryRequest.Status.REQUESTED:
            return f"{recovery} requested: it waits for a second DBA's approval."
        return f"{recovery} queued."

    # --- approving ---

    def approve_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        recovery = get_object_or_404(RecoveryRequest, pk=pk)
        comment, refused = posted_text(request, "comment")
        if refused:
            messages.error(request, f"Not approved: the comment: {refused}")
            return HttpResponseRedirect(reverse("admin:recovery_recoveryrequest_change", args=[pk]))
        try:
            approval = approvals.approve(recovery, request.user, comment)
        except approvals.Refused as exc:
            messages.error(request, f"Not approved: {exc}.")
        else:
            messages.success(request, f"Approved; {recovery} is queued. The approval is used once and expires at "
                                      f"{approval.expires:%Y-%m-%d %H:%M} UTC.")
        return HttpResponseRedirect(reverse("admin:recovery_recoveryrequest_change", args=[pk]))

    def reject_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        recovery = get_object_or_404(RecoveryRequest, pk=pk)
        comment, refused = posted_text(request, "comment")
        if refused:
            messages.error(request, f"Not rejected: the comment: {refused}")
        elif not comment:
            messages.error(request, "Not rejected: say why in the comment.")
        else:
            try:
                approvals.reject(recovery, request.user, comment)
            except approvals.Refused as exc:
                audit.record("recovery.reject", actor=request.user, obj=recovery, outcome=audit.Outcome.DENIED,
                             details={"reason": str(exc)})
                messages.error(request, f"Not rejected: {exc}.")
            else:
                messages.success(request, f"{recovery} rejected.")
        return HttpResponseRedirect(reverse("admin:recovery_recoveryrequest_change", args=[pk]))

    def promote_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """"Make this cluster production" on a succeeded point-in-time recovery: the request, awaiting approval."""
        pitr = get_object_or_404(RecoveryRequest, pk=pk, kind=RecoveryRequest.Kind.PITR)
        reason, refused = posted_text(request, "reason")
        if refused or not reason:
            messages.error(request, f"Not requested: the reason: {refused}" if refused else
                           "Not requested: give the reason and the ticket.")
            return HttpResponseRedirect(reverse("admin:recovery_recoveryrequest_change", args=[pk]))
        promotion = RecoveryRequest(kind=RecoveryRequest.Kind.PROMOTE, cluster=pitr.cluster, source_recovery=pitr,
                                    reason=reason)
        try:
            promotion = approvals.submit(promotion, request.user)
        except ValidationError as exc:
            messages.error(request, "Not requested: " + " ".join(exc.messages))
        except approvals.Refused as exc:
            messages.error(request, f"Not requested: {exc}.")
        else:
            messages.success(request, self._submitted_message(promotion))
            return HttpResponseRedirect(reverse("admin:recovery_recoveryrequest_change", args=[promotion.pk]))
        return HttpResponseRedirect(reverse("admin:recovery_recoveryrequest_change", args=[pk]))

    def progress_view(self, request: HttpRequest, pk: int) -> JsonResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied("Seeing recoveries needs the Auditor, Operator or DBA role.")
        return JsonResponse(progress_data(get_object_or_404(RecoveryRequest, pk=pk)))

    def render_change_form(self, request: HttpRequest, context: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        recovery: RecoveryRequest | None = context.get("original")
        if recovery is not None:
            context.update({
                "steps": [step_data(step) for step in recovery.steps.all()],
                "progress_bar": self.progress(recovery),
                "approvals": recovery.approvals.select_related("approver"),
                "may_approve": (recovery.status == RecoveryRequest.Status.REQUESTED
                                and request.user.has_perm(APPROVE_PERMISSION)
                                and recovery.requester_id != request.user.pk),
                "awaiting": recovery.status == RecoveryRequest.Status.REQUESTED,
                "approval_hours": int(Approval.VALID_FOR.total_seconds() // 3600),
                "services": [service.name for service in services.configured()] if recovery.needs_approval else [],
                **promotion_context(request, recovery),
            })
        return super().render_change_form(request, context, *args, **kwargs)

    # --- what the list and the page show ---

    @admin.display(description="Recovery (of, by, when)", ordering="pk")
    def title(self, obj: RecoveryRequest) -> str:
        return format_html('{}<br><span class="recovery-meta">{} · {} · {}</span>', obj, self.what(obj),
                           obj.requester or obj.triggered_by or "—", self.when(obj))

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj: RecoveryRequest) -> str:
        return badge(obj)

    @admin.display(description="Progress")
    def progress(self, obj: RecoveryRequest) -> str:
        url = reverse("admin:recovery_recoveryrequest_progress", args=[obj.pk])
        return job_progress.bar(progress_data(obj), url, "recovery-progress")

    @admin.display(description="Of")
    def what(self, obj: RecoveryRequest) -> str:
        return str(obj.database) if obj.database_id else f"cluster {obj.cluster}"

    @admin.display(description="To")
    def destination_display(self, obj: RecoveryRequest) -> str:
        if obj.kind == RecoveryRequest.Kind.DRILL:
            scratch = "cluster" if obj.drill_kind == DrillSchedule.Kind.PITR else "database"
            return f"a scratch {scratch}, removed afterwards"
        if obj.kind == RecoveryRequest.Kind.PROMOTE:
            return f"Replace production: the data directory of cluster {obj.cluster}"
        name = f" ({obj.destination_name})" if obj.destination_name else ""
        return f"{obj.get_destination_display()}{name}"

    @admin.display(description="To", ordering="destination")
    def destination_short(self, obj: RecoveryRequest) -> str:
        if obj.kind == RecoveryRequest.Kind.DRILL:
            return "scratch"
        return "replace production" if obj.needs_approval else "beside production"

    @admin.display(description="Requested", ordering="created")
    def when(self, obj: RecoveryRequest) -> str:
        return f"{obj.created:%Y-%m-%d %H:%M}"

    @admin.display(description="RTO", ordering="rto_seconds")
    def rto(self, obj: RecoveryRequest) -> str:
        return objective(obj.rto_seconds, objectives.rto_objective(), "RTO")

    @admin.display(description="RPO (data lost)", ordering="rpo_seconds")
    def rpo(self, obj: RecoveryRequest) -> str:
        measured = obj.verification.get("rpo", {}).get("measured", "")
        text = objective(obj.rpo_seconds, objectives.rpo_objective(), "RPO")
        return format_html("{}<br><span class='help'>{}</span>", text, measured) if measured else text

    @admin.display(description="Recovered cluster")
    def source_link(self, obj: RecoveryRequest) -> str:
        pitr = obj.source_recovery
        if pitr is None:
            return "—"
        when = f"{pitr.target_time:%Y-%m-%d %H:%M:%S} UTC" if pitr.target_time else "?"
        return format_html('<a href="{}">{}</a>: cluster {}, recovered to {}',
                           reverse("admin:recovery_recoveryrequest_change", args=[pitr.pk]), pitr,
                           pitr.result_cluster or pitr.destination_name, when)

    @admin.display(description="Backup")
    def backup_link(self, obj: RecoveryRequest) -> str:
        if obj.backup is None:
            return "the newest verified backup, chosen when it runs"
        return format_html('<a href="{}">#{} {}</a> ({})', reverse("admin:backups_backup_change", args=[obj.backup.pk]),
                           obj.backup.pk, obj.backup, obj.backup.get_verification_display().lower())

    @admin.display(description="Target time")
    def target_time_utc(self, obj: RecoveryRequest) -> str:
        return f"{obj.target_time:%Y-%m-%d %H:%M:%S} UTC" if obj.target_time else "—"

    @admin.display(description="Tables")
    def tables_display(self, obj: RecoveryRequest) -> str:
        return ", ".join(obj.tables) or "—"

    @admin.display(description="Results")
    def verification_display(self, obj: RecoveryRequest) -> str:
        if not obj.verification:
            return "—"
        return render_to_string("admin/recovery/recoveryrequest/verification.html",
                                {"v": obj.verification, "tables": obj.verification.get("tables", {}),
                                 "databases": database_totals(obj.verification.get("database_counts", {}))})

    @admin.display(description="Log")
    def log_display(self, obj: RecoveryRequest) -> str:
        return format_html('<pre class="recovery-log">{}</pre>', obj.log or "—")


def database_totals(counts: dict[str, dict[str, int]]) -> list[tuple[str, int, int]]:
    """A recovered cluster's counts (database -> table -> rows) as (database, tables, rows)."""
    return [(name, len(tables), sum(tables.values())) for name, tables in counts.items()]
