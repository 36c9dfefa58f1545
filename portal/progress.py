"""A job's live progress bar, shared by every outcome model: the JSON an admin page polls
(portal/static/portal/progress.js) and the bar's HTML, drawn the same on the first render and by the script."""

from __future__ import annotations

from typing import Any

from django.utils.html import format_html

from portal.jobs import Job


def job_progress(job: Job, label: str, percent: int | None) -> dict[str, Any]:
    """What every progress bar shows; a model adds its own fields to it."""
    return {
        "id": job.pk,
        "status": job.status,
        "status_display": job.get_status_display(),  # type: ignore[attr-defined]
        "finished": job.is_finished,
        "done": job.progress_done,
        "total": job.progress_total,
        "percent": percent,
        "note": job.progress_note,
        "label": label,
    }


def bar(data: dict[str, Any], url: str, css_class: str = "") -> str:
    """The bar for `data` (from `job_progress`), polled at `url` until the job is finished."""
    width = 100 if data["finished"] else (data["percent"] or 0)
    return format_html(
        '<div class="job-progress {}" data-url="{}" data-finished="{}" data-status="{}">'
        '<div class="progress{}"><div class="bar" style="width: {}%"></div></div>'
        '<span class="progress-label">{}</span></div>',
        css_class, url, "true" if data["finished"] else "false", data["status"],
        " indeterminate" if data["percent"] is None and not data["finished"] else "", width, data["label"],
    )
