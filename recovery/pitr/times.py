"""Times: stored aware, written for PostgreSQL with an explicit offset, shown in UTC."""


from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.utils import timezone


def utc(moment: datetime) -> str:
    spec = "seconds" if moment.microsecond == 0 else "milliseconds"
    return moment.astimezone(UTC).isoformat(sep=" ", timespec=spec)


def shown(moment: datetime) -> str:
    """UTC, and the portal's local time too when that is another zone."""
    local = timezone.localtime(moment)
    if local.utcoffset() == timedelta(0):
        return utc(moment)
    spec = "seconds" if moment.microsecond == 0 else "milliseconds"
    return f"{local.isoformat(sep=' ', timespec=spec)} ({utc(moment)})"


def for_postgres(moment: datetime) -> str:
    """recovery_target_time: UTC, microseconds, explicit offset; never the server's own time zone."""
    return moment.astimezone(UTC).isoformat(sep=" ", timespec="microseconds")
