"""What a backup's progress bar shows, in the admin (JSON, polled) and on the terminal (`backup_now`)."""

from __future__ import annotations

from typing import Any

from backups.models import Backup
from portal.progress import job_progress
from portal.templatetags.portal_format import size


def progress_data(backup: Backup) -> dict[str, Any]:
    """What the progress bar shows: bytes written against the estimate, and the state."""
    total = backup.progress_total
    percent = None if not total else min(100 if backup.is_finished else 99, round(100 * backup.progress_done / total))
    return job_progress(backup, progress_label(backup, percent), percent) | {
        "verification": backup.verification,
        "verification_display": backup.get_verification_display(),
    }


def progress_label(backup: Backup, percent: int | None) -> str:
    if backup.is_finished:
        return f"{backup.get_status_display()}: {size(backup.size_bytes)}"
    if backup.status == Backup.Status.QUEUED:
        return "queued"
    if not backup.progress_done and not backup.progress_total:
        return "running" + (f" · {backup.progress_note}" if backup.progress_note else "")
    written = size(backup.progress_done)
    estimate = f" of ~{size(backup.progress_total)} ({percent}%)" if backup.progress_total else ""
    return f"{written}{estimate}" + (f" · {backup.progress_note}" if backup.progress_note else "")
