"""What a recovery request must pass before it is submitted, by kind: a form error now rather than a failed run
later. The run checks again (the backup may be corrupted or expired meanwhile).

A check takes the unsaved request and raises `ValidationError` (a dict of field -> message); it may fill in what
the request left to the portal (the backup: the newest good one). They read the catalogue and reach clusters and
files, so the request form's view runs them (`validate`) before it submits, never a model's or a form's clean().
The logical scenarios' checks are here; a point-in-time request's is registered with them by RecoveryConfig.ready()
(and runs again at every submission: `approvals.SUBMISSION_CHECKS`).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable

from django.core.exceptions import ValidationError

from backups.models import BackupPolicy
from portal import scratch
from recovery import choose, databases
from recovery.models import RecoveryRequest

Check = Callable[[RecoveryRequest], None]
CHECKS: dict[str, list[Check]] = defaultdict(list)
DATABASE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
Kind = RecoveryRequest.Kind


def register(*kinds: str) -> Callable[[Check], Check]:
    def add(check: Check) -> Check:
        for kind in kinds:
            CHECKS[kind].append(check)
        return check

    return add


def validate(request: RecoveryRequest) -> None:
    """Run every check of the request's kind; all their errors together."""
    errors: dict[str, list[str]] = {}
    for check in CHECKS.get(request.kind, []):
        try:
            check(request)
        except ValidationError as exc:
            for field, messages in exc.update_error_dict({}).items():
                errors.setdefault(field, []).extend(messages)
    if errors:
        raise ValidationError(errors)


@register(Kind.COMPLETE, Kind.TABLE, Kind.DRILL)
def backup_can_serve(request: RecoveryRequest) -> None:
    """The chosen backup is good and its files are there with their size; with none chosen, the newest that is."""
    if request.kind == Kind.DRILL and request.backup is not None and request.backup.kind != BackupPolicy.Kind.LOGICAL:
        return  # a point-in-time drill: its own checks
    if request.kind != Kind.DRILL and request.database is None:
        return  # the model's own check says so
    try:
        request.backup = choose.resolve(request.backup, request.database,
                                        request.cluster if request.kind == Kind.DRILL else None, lambda line: None,
                                        full=False)  # the whole sha256 is the worker's first step
    except choose.Unusable as exc:
        raise ValidationError({"backup": str(exc)}) from exc


@register(Kind.TABLE, Kind.DRILL)
def scratch_cluster_can_serve(request: RecoveryRequest) -> None:
    """A single-table recovery and a logical drill restore into the scratch cluster: one must be able to take the
    backup (from its last sampled status; the run samples it again)."""
    backup = request.backup
    if backup is None or backup.kind != BackupPolicy.Kind.LOGICAL:
        return  # no backup can serve (its own check says so), or a point-in-time drill: no scratch database
    if reason := scratch.refusal(scratch.named(), backup.cluster, backup.server_version):
        raise ValidationError({"backup": f"refused: {reason}"})


@register(Kind.TABLE)
def tables_in_backup(request: RecoveryRequest) -> None:
    from recovery.single_table import missing_tables

    if request.backup is not None and request.tables:
        absent = missing_tables(request.backup, request.tables)
        if absent:
            raise ValidationError({"tables": absent})


@register(Kind.COMPLETE)
def destination_is_new(request: RecoveryRequest) -> None:
    """Beside production, the restored database gets a name of its own that does not exist yet."""
    name = request.destination_name
    if request.destination != RecoveryRequest.Destination.BESIDE or not name or request.database is None:
        return
    if not DATABASE_NAME.match(name):
        raise ValidationError({"destination_name": "Use lower-case letters, digits and _ (at most 63), starting "
                                                   "with a letter: a name that needs no quoting."})
    if databases.exists(request.cluster, name):
        raise ValidationError({"destination_name": f"A database {name} exists already on {request.cluster}."})


@register(Kind.COMPLETE, Kind.TABLE, Kind.DRILL)
def no_target_time(request: RecoveryRequest) -> None:
    if request.target_time is not None:
        raise ValidationError({"target_time": "A target time is for point-in-time recovery: a logical backup "
                                              "restores its snapshot."})
