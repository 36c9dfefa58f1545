"""Run one recovery request: use its approval, then the procedure for its kind."""

from __future__ import annotations

from collections.abc import Callable

from portal.jobs import Reporter
from recovery.approvals import consume_approval
from recovery.models import RecoveryRequest

Procedure = Callable[[RecoveryRequest, Reporter], None]

# kind -> procedure, registered by RecoveryConfig.ready().
PROCEDURES: dict[str, Procedure] = {}


class ScratchClusterRefused(Exception):
    """The request names a scratch cluster: restores that only prove something run there; it is never recovered."""


def perform(request: RecoveryRequest, reporter: Reporter) -> None:
    if request.cluster.scratch:
        raise ScratchClusterRefused(f"{request.cluster} is a scratch cluster: it is never recovered")
    consume_approval(request)
    procedure = PROCEDURES.get(request.kind)
    if procedure is None:
        raise NotImplementedError(f"{request.get_kind_display()} is not available yet")
    procedure(request, reporter)

