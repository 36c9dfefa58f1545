"""The steps of making a recovered cluster production, in order (`plan`)."""


from __future__ import annotations

from collections.abc import Callable

from recovery import services

Say = Callable[[str], None]

CHECK = "Check both clusters"
STOP_RECOVERED = "Stop the recovered cluster"
STOP_PRODUCTION = "Stop production"
MOVE = "Move production's data directory aside and the recovered one into its place"
SETTINGS = "Remove the recovery's settings, so production's own apply"
START = "Start production"
VERIFY = "Verify production: out of recovery, row counts, archiving on the new timeline"
RETIRE = "Retire the recovered cluster's registration"

ARCHIVE_TIMEOUT = 120
READY_TIMEOUT = 120


def plan(with_services: bool) -> list[str]:
    stop, start = ([services.STOP_STEP], [services.START_STEP]) if with_services else ([], [])
    return [CHECK, *stop, STOP_RECOVERED, STOP_PRODUCTION, MOVE, SETTINGS, START, VERIFY, RETIRE, *start]
