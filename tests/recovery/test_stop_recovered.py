"""`bin/portal down` stops the clusters the portal started beside production (RECOVERY_ROOT) and leaves, and
names, the ones it did not start."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import call_command

from portal.models import AuditEvent
from recovery import newcluster
from tests.clusters import ScratchCluster, _give_to_owner


@pytest.fixture
def recovered(settings) -> Iterator[ScratchCluster]:
    """A real running cluster in RECOVERY_ROOT/<name>/data, as a point-in-time recovery leaves one."""
    root = Path(tempfile.mkdtemp(prefix="paws360-recovered-"))
    root.chmod(0o755)
    settings.RECOVERY_ROOT = root
    cluster = ScratchCluster()
    shutil.rmtree(cluster.root)
    cluster.root = root / "embedded-pitr-20261202t0500z"
    cluster.root.mkdir(mode=0o700)
    _give_to_owner(cluster.root)
    cluster.data = cluster.root / "data"
    cluster.create()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.destroy()
        shutil.rmtree(root, ignore_errors=True)


def test_portal_down_stops_the_recovered_clusters_and_lists_the_others(recovered, scratch_cluster, db, capsys):
    scratch_cluster.register("elsewhere")
    call_command("stop_recovered")
    out = capsys.readouterr().out
    assert f"stopped the recovered cluster {recovered.root.name}" in out
    assert newcluster.postmaster_pid(newcluster.NewCluster(recovered.root, "postgres")) is None
    assert "left alone: elsewhere" in out and "not started by the portal" in out
    assert scratch_cluster.target() and (scratch_cluster.data / "postmaster.pid").exists(), "the other one runs on"
    assert AuditEvent.objects.filter(action="cluster.stop", target=str(recovered.data)).exists()
