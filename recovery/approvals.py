"""Asking for a recovery, and the second DBA's approval that replacing production needs."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone
from django_q.tasks import async_task

from portal import audit
from recovery.models import ACTIVE_STATES, Approval, RecoveryRequest

RUN_TASK = "recovery.tasks.run_recovery"


class Refused(Exception):
    """The request or approval is not allowed; the message says why."""


def queue(request: RecoveryRequest) -> None:
    transaction.on_commit(partial(async_task, RUN_TASK, request.pk, task_name=f"recovery-{request.pk}"))


def _check_destination_free(request: RecoveryRequest) -> None:
    if not request.destination_name:
        return
    busy = RecoveryRequest.objects.filter(cluster=request.cluster, destination_name=request.destination_name,
                                          status__in=ACTIVE_STATES).exclude(pk=request.pk)
    if busy.exists():
        raise Refused(f"recovery #{busy.first().pk} is already restoring into {request.destination_name!r}")


# What must hold of a request of a kind however it is submitted (the form, a button, a schedule), raising
# ValidationError: a point-in-time request's window and base backup, a promotion's clusters. Registered by
# RecoveryConfig.ready(). The request form runs all of `recovery.validation`'s checks before it submits.
SUBMISSION_CHECKS: dict[str, Callable[[RecoveryRequest], None]] = {}


def submit(request: RecoveryRequest, requester: AbstractBaseUser) -> RecoveryRequest:
    """Record the request; queue it now, or wait for approval when it replaces production."""
    if not requester.has_perm("portal.request_recovery"):
        audit.record("recovery.request", actor=requester, outcome=audit.Outcome.DENIED, target=str(request.cluster))
        raise Refused("you may not request recoveries")
    request.requester = requester
    request.settle_destination()
    request.status = RecoveryRequest.Status.REQUESTED if request.needs_approval else RecoveryRequest.Status.QUEUED
    # The kind's own checks may name the destination (a point-in-time recovery's default), so the check comes after
    # them; the one-destination constraint is checked below with a better message than full_clean's.
    request.full_clean(exclude=["requester"], validate_constraints=False)
    if check := SUBMISSION_CHECKS.get(request.kind):
        check(request)
    _check_destination_free(request)
    try:
        with transaction.atomic():
            request.save()
            if not request.needs_approval:
                queue(request)
    except IntegrityError as exc:
        raise Refused(f"another recovery is already restoring into {request.destination_name!r}") from exc
    audit.record("recovery.request", actor=requester, obj=request, target=str(request.cluster),
                 details={"kind": request.kind, "destination": request.destination, "reason": request.reason})
    return request


def approve(request: RecoveryRequest, approver: AbstractBaseUser, comment: str = "") -> Approval:
    """A second DBA, not the requester, approves; the approval expires after Approval.VALID_FOR."""
    refusal = _approval_refusal(request, approver)
    if refusal:
        audit.record("recovery.approve", actor=approver, obj=request, outcome=audit.Outcome.DENIED,
                     details={"reason": refusal})
        raise Refused(refusal)
    with transaction.atomic():
        approval = Approval.objects.create(request=request, approver=approver, comment=comment,
                                           expires=timezone.now() + Approval.VALID_FOR)
        moved = RecoveryRequest.objects.filter(pk=request.pk, status=RecoveryRequest.Status.REQUESTED).update(
            status=RecoveryRequest.Status.QUEUED)
        if moved != 1:
            raise Refused("the request is no longer awaiting approval")
        queue(request)
    request.refresh_from_db()
    audit.record("recovery.approve", actor=approver, obj=request, details={"expires": approval.expires})
    return approval


def _approval_refusal(request: RecoveryRequest, approver: AbstractBaseUser) -> str:
    if not approver.has_perm("portal.approve_recovery"):
        return "only a DBA may approve a recovery"
    if request.requester_id == approver.pk:
        return "the requester cannot approve their own request; a second DBA must"
    if request.status != RecoveryRequest.Status.REQUESTED:
        return f"the request is {request.get_status_display().lower()}, not awaiting approval"
    return ""


def reject(request: RecoveryRequest, approver: AbstractBaseUser, comment: str) -> None:
    if not approver.has_perm("portal.approve_recovery"):
        raise Refused("only a DBA may reject a recovery")
    moved = RecoveryRequest.objects.filter(pk=request.pk, status=RecoveryRequest.Status.REQUESTED).update(
        status=RecoveryRequest.Status.REJECTED, finished=timezone.now(), error=f"rejected: {comment}")
    if moved != 1:
        raise Refused("the request is no longer awaiting approval")
    audit.record("recovery.reject", actor=approver, obj=request, details={"comment": comment})


def consume_approval(request: RecoveryRequest) -> Approval | None:
    """Use the approval once, at the start of the work; refuse when it expired or was already used."""
    if not request.needs_approval:
        return None
    now = timezone.now()
    approval = request.approvals.filter(used_at__isnull=True, expires__gt=now).order_by("-created").first()
    if approval is None or Approval.objects.filter(pk=approval.pk, used_at__isnull=True).update(used_at=now) != 1:
        raise Refused("no usable approval: it expired or was already used; a DBA must approve again")
    return approval
