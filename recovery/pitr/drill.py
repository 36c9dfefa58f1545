"""The point-in-time drill: recover into a scratch cluster, check it with pg_amcheck and row counts, measure the
RTO, then stop and remove the scratch cluster."""


from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.utils import timezone

from backups.wal import catalog as walcatalog
from backups.wal.window import recoverable_window
from portal.jobs import Reporter
from recovery import drills, newcluster, passfile
from recovery.approvals import Refused
from recovery.models import RecoveryRequest
from recovery.pitr.build import Build, restore
from recovery.pitr.outcome import objectives, record_reached, save_outcome, server_facts
from recovery.pitr.plan import DRILL_PLAN, STEP_DRILL_CHECK, STEP_DRILL_REMOVE, STEP_DRILL_TARGET
from recovery.pitr.procedure import building
from recovery.pitr.times import shown, utc

log = logging.getLogger(__name__)


def drill_target(build: Build) -> datetime:
    """A minute ago, or just before the newest archived commit when that is older (PostgreSQL stops at the
    first commit after the target, so the target must be before one)."""
    walcatalog.scan(build.archive)
    window = recoverable_window(build.source)
    if not window.ranges:
        raise Refused(f"no point-in-time recovery of {build.source} is possible: no kept base backup with its WAL")
    newest = window.ranges[-1]
    before_last_commit = newest.end - timedelta(milliseconds=1)
    target = min(timezone.now() - timedelta(minutes=1), before_last_commit)
    if target < newest.start:
        target = before_last_commit
    if target < newest.start:
        raise Refused(f"no commit was archived after the newest base backup of {build.source} ended "
                      f"({utc(newest.start)}): there is no moment to recover to yet")
    return target


def drill(request: RecoveryRequest, reporter: Reporter) -> None:
    """The point-in-time drill: recover into scratch, check with pg_amcheck and row counts, measure the RTO,
    then stop and remove the scratch cluster."""
    with building(request, reporter, DRILL_PLAN) as build:
        with build.steps.run(STEP_DRILL_TARGET):
            build.target_time = request.target_time = drill_target(build)
            RecoveryRequest.objects.filter(pk=request.pk).update(target_time=build.target_time)
            build.say(STEP_DRILL_TARGET)(f"target {shown(build.target_time)}")
        restore(build)
        with build.steps.run(STEP_DRILL_CHECK):
            check_scratch(build)
        with build.steps.run(STEP_DRILL_REMOVE):
            remove_scratch(build)


def check_scratch(build: Build) -> None:
    """pg_amcheck on every database and every table counted; the RTO is measured once they passed."""
    say = build.say(STEP_DRILL_CHECK)
    record_reached(build)
    build.facts.update(server_facts(build))
    build.facts["amcheck"] = drills.amcheck(build.target(), say)
    build.facts["database_counts"] = drills.count_rows(build.target(), list(build.facts["databases"]), say)
    objectives(build)
    save_outcome(build)


def remove_scratch(build: Build) -> None:
    assert build.cluster is not None
    newcluster.remove(build.cluster)
    passfile.remove(build.cluster.name)
    build.say(STEP_DRILL_REMOVE)(f"stopped; {build.cluster.root} removed")
