"""/health against a managed cluster that is really stopped and started again, with a real worker."""

from __future__ import annotations

import pytest
from django.urls import reverse

from portal.models import ManagedCluster
from tests.conftest import wait_for


@pytest.fixture
def managed_scratch(db, scratch_cluster) -> ManagedCluster:
    return ManagedCluster.objects.create(
        name="scratch", host="127.0.0.1", port=scratch_cluster.port, role=scratch_cluster.role,
        passfile=str(scratch_cluster.passfile), control=ManagedCluster.Control.PG_CTL,
        data_directory=str(scratch_cluster.data),
    )


def _health(client) -> tuple[int, dict]:
    response = client.get(reverse("health"))
    return response.status_code, response.json()


def test_it_is_503_with_the_reason_while_a_cluster_is_stopped_and_200_when_back(
    client, qcluster, scratch_cluster, managed_scratch
):
    wait_for(lambda: _health(client)[1]["task_cluster"]["ok"], message="the task cluster to report")
    status, body = _health(client)
    assert status == 200, body
    assert body["clusters"]["scratch"]["ok"] is True
    assert body["clusters"]["scratch"]["detail"].startswith("PostgreSQL 15.")

    scratch_cluster.stop()
    status, body = _health(client)
    assert status == 503
    assert body["status"] == "fail"
    assert body["clusters"]["scratch"]["ok"] is False
    assert "Connection refused" in body["clusters"]["scratch"]["detail"]

    scratch_cluster.start()
    status, body = _health(client)
    assert status == 200, body
    assert body["portal_database"]["ok"] and body["task_cluster"]["ok"]


def test_it_is_503_when_no_worker_runs(client, db):
    status, body = _health(client)
    assert status == 503
    assert "no django-q2 cluster is running" in body["task_cluster"]["detail"]
