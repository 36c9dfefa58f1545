"""The retention preview of a policy (read-only, for anyone who may view policies) and the real expiry
(a POST with CSRF, DBA only: it needs `backups.delete_backup`, which only the DBA group has).

The expiry applies only to the backups the person saw marked "expire" in the preview, and only if the
policy's current plan still expires them.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from backups import retention
from backups.models import Backup, BackupCopy, BackupPolicy
from portal import audit

EXPIRE_PERMISSION = "backups.delete_backup"


def _leftovers(policy: BackupPolicy) -> int:
    """Expired backups with a copy still to delete (a deletion that failed; the next run retries it)."""
    undeleted = BackupCopy.objects.filter(backup__policy=policy, backup__expired_at__isnull=False).exclude(
        state=BackupCopy.State.DELETED)
    return undeleted.values("backup").distinct().count()


@staff_member_required
@never_cache
@require_GET
def preview(request: HttpRequest, pk: int) -> HttpResponse:
    if not request.user.has_perm("backups.view_backuppolicy"):
        raise PermissionDenied("Seeing backup policies needs the Auditor, Operator or DBA role.")
    policy = get_object_or_404(BackupPolicy, pk=pk)
    plan = retention.plan(policy)
    copies: dict[int, list[BackupCopy]] = {}
    for copy in BackupCopy.objects.filter(backup__in=[d.backup for d in plan.decisions]).select_related("location"):
        copies.setdefault(copy.backup_id, []).append(copy)
    rows = [(d, copies.get(d.backup.pk, [])) for d in plan.decisions]
    context = {
        **admin.site.each_context(request),
        "title": f"Retention of {policy}",
        "policy": policy,
        "plan": plan,
        "rows": rows,
        "leftovers": _leftovers(policy),
        "may_expire": request.user.has_perm(EXPIRE_PERMISSION),
        "opts": BackupPolicy._meta,
    }
    return render(request, "backups/retention_preview.html", context)


@staff_member_required
@require_POST
def apply(request: HttpRequest, pk: int) -> HttpResponse:
    policy = get_object_or_404(BackupPolicy, pk=pk)
    if not request.user.has_perm(EXPIRE_PERMISSION):
        audit.record("retention.apply", actor=request.user, obj=policy, target=str(policy),
                     outcome=audit.Outcome.DENIED, details={"reason": f"needs {EXPIRE_PERMISSION}"})
        raise PermissionDenied("Only a DBA may expire backups.")
    seen = {int(value) for value in request.POST.getlist("backup") if value.isascii() and value.isdigit()}
    result = retention.apply(policy, actor=request.user, only=seen)
    expired = [d.backup for d in result.expired]
    audit.record("retention.apply", actor=request.user, obj=policy, target=str(policy),
                 outcome=audit.Outcome.FAILURE if result.errors else audit.Outcome.SUCCESS,
                 details={"expired": [b.pk for b in expired], "copies_deleted": len(result.deleted),
                          "errors": result.errors, "previewed": sorted(seen)})
    _report(request, expired, result, len(seen))
    return HttpResponseRedirect(reverse("backups:retention", args=[policy.pk]))


def _report(request: HttpRequest, expired: list[Backup], result: retention.Applied, seen: int) -> None:
    freed = filesizeformat(sum(b.size_bytes or 0 for b in expired))
    if expired:
        names = ", ".join(str(b) for b in expired)
        messages.success(request, f"Expired {len(expired)} backup(s), {freed}, {len(result.deleted)} copies "
                                  f"deleted: {names}.")
    if len(expired) < seen:
        messages.warning(request, f"{seen - len(expired)} backup(s) from the preview were kept: they are in "
                                  "use now, or the plan changed since the preview.")
    for error in result.errors:
        messages.error(request, f"Not deleted (retried by the next run): {error}")
    if not expired and not seen and not result.errors:
        messages.info(request, "Nothing to expire.")
