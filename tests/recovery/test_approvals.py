"""Replacing production needs a second DBA; an approval expires and is used once; one recovery per destination."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from portal.models import AuditEvent, ManagedDatabase
from recovery import approvals
from recovery.models import Approval, RecoveryRequest


@pytest.fixture
def paws360(embedded_cluster) -> ManagedDatabase:
    return embedded_cluster.databases.get(name="paws360")


def _request(database: ManagedDatabase, **fields) -> RecoveryRequest:
    defaults = {"kind": RecoveryRequest.Kind.COMPLETE, "cluster": database.cluster, "database": database,
                "destination": RecoveryRequest.Destination.REPLACE, "reason": "INC-1042 corrupted grades"}
    return RecoveryRequest(**(defaults | fields))


def test_a_request_that_replaces_production_waits_for_approval(paws360, operator):
    request = approvals.submit(_request(paws360), operator)
    assert request.status == RecoveryRequest.Status.REQUESTED
    assert AuditEvent.objects.filter(action="recovery.request", actor=operator.username).exists()


def test_a_request_beside_production_is_queued_at_once(paws360, operator):
    request = approvals.submit(_request(paws360, destination=RecoveryRequest.Destination.BESIDE), operator)
    assert request.status == RecoveryRequest.Status.QUEUED


def test_the_requester_cannot_approve_their_own_request(paws360, dba):
    request = approvals.submit(_request(paws360), dba)
    with pytest.raises(approvals.Refused, match="cannot approve their own"):
        approvals.approve(request, dba)
    request.refresh_from_db()
    assert request.status == RecoveryRequest.Status.REQUESTED
    assert AuditEvent.objects.filter(action="recovery.approve", outcome="denied").exists()


def test_an_operator_cannot_approve(paws360, dba, operator):
    request = approvals.submit(_request(paws360), dba)
    with pytest.raises(approvals.Refused, match="only a DBA"):
        approvals.approve(request, operator)


def test_a_second_dba_approves_and_the_approval_is_used_once(paws360, dba, dba2):
    request = approvals.submit(_request(paws360), dba)
    approval = approvals.approve(request, dba2)
    assert request.status == RecoveryRequest.Status.QUEUED
    assert approvals.consume_approval(request) == approval
    with pytest.raises(approvals.Refused, match="already used"):
        approvals.consume_approval(request)


def test_an_expired_approval_is_refused(paws360, dba, dba2):
    request = approvals.submit(_request(paws360), dba)
    approvals.approve(request, dba2)
    Approval.objects.filter(request=request).update(expires=timezone.now() - timedelta(seconds=1))
    with pytest.raises(approvals.Refused, match="expired"):
        approvals.consume_approval(request)


def test_an_approval_cannot_be_given_twice(paws360, dba, dba2):
    request = approvals.submit(_request(paws360), dba)
    approvals.approve(request, dba2)
    with pytest.raises(approvals.Refused, match="not awaiting approval"):
        approvals.approve(request, dba2)


def test_two_recoveries_into_the_same_destination_are_refused(paws360, operator):
    first = _request(paws360, destination=RecoveryRequest.Destination.BESIDE, destination_name="paws360_restored")
    approvals.submit(first, operator)
    second = _request(paws360, destination=RecoveryRequest.Destination.BESIDE, destination_name="paws360_restored")
    with pytest.raises(approvals.Refused, match=f"#{first.pk} is already restoring into 'paws360_restored'"):
        approvals.submit(second, operator)
    assert RecoveryRequest.objects.count() == 1


def test_an_auditor_cannot_request(paws360, auditor):
    with pytest.raises(approvals.Refused, match="may not request"):
        approvals.submit(_request(paws360), auditor)
    assert not RecoveryRequest.objects.exists()
