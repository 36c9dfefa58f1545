"""The point-in-time recovery itself (the procedure of kind "pitr"): a new cluster beside production, never
replacing it; on any failure, what was built is abandoned."""


from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from backups.models import Backup
from backups.wal import catalog as walcatalog
from portal.jobs import Reporter
from recovery import newcluster, passfile
from recovery.approvals import Refused
from recovery.models import RecoveryRequest
from recovery.pitr.build import Build, restore
from recovery.pitr.outcome import register, verify
from recovery.pitr.plan import PLAN, STEP_REGISTER, STEP_VERIFY, STEP_WINDOW
from recovery.pitr.reaper import kept_log, sweep_leftovers
from recovery.pitr.target import archive_of, check_backup, check_target, window_text
from recovery.pitr.times import shown
from recovery.steps import Steps

log = logging.getLogger(__name__)


@contextmanager
def building(request: RecoveryRequest, reporter: Reporter, plan: list[str]) -> Iterator[Build]:
    """Declare the steps, clean up what dead runs left; on any failure, abandon what was built."""
    steps = Steps(request, reporter, plan)
    sweep_leftovers(reporter.log)
    build = Build(request, steps, reporter, request.target_time, archive_of(request.cluster))
    try:
        yield build
    except BaseException:
        abandon(build)
        raise


def check_window(build: Build) -> None:
    with build.steps.run(STEP_WINDOW):
        scanned = walcatalog.scan(build.archive)
        build.say(STEP_WINDOW)(f"WAL catalog brought up to date: {scanned.new} new file(s) recorded")
        if build.request.backup_id:
            check_backup(Backup.objects.get(pk=build.request.backup_id), build.source, build.target_time)
        covered = check_target(build.source, build.target_time)
        build.say(STEP_WINDOW)(f"target {shown(build.target_time)} is within {window_text([covered])}")


def recover_to_point(request: RecoveryRequest, reporter: Reporter) -> None:
    """The procedure for kind "pitr"."""
    if request.destination == RecoveryRequest.Destination.REPLACE:
        raise Refused("a point-in-time recovery is restored beside production; making it production is a separate "
                      "request (Make a recovered cluster production), approved by a second DBA")
    with building(request, reporter, PLAN) as build:
        check_window(build)
        restore(build)
        with build.steps.run(STEP_VERIFY):
            verify(build)
        with build.steps.run(STEP_REGISTER):
            register(build)


def abandon(build: Build) -> None:
    """After a failure: the steps not run are skipped, the half-built cluster is stopped and its data removed."""
    build.steps.skip_rest()
    if build.cluster is not None and build.request.result_cluster_id is None:
        kept = newcluster.discard(build.cluster, kept_log(build.request, build.cluster))
        passfile.remove(build.cluster.name)
        build.reporter.log(f"stopped and removed {build.cluster.root}; its server log is kept as {kept}")
