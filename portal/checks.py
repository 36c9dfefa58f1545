"""System checks (`manage.py check`, and at every start) of settings a form cannot check."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Warning, register
from django.core.exceptions import ValidationError

from portal.schedules import validate_cron

HEALTH_TOKEN_MIN_LENGTH = 32


@register()
def drill_default_schedule(app_configs: Any, **kwargs: Any) -> list[Error]:
    try:
        validate_cron(settings.DRILL_DEFAULT_SCHEDULE, settings.DRILL_SCHEDULE_MIN_MINUTES,
                      "DRILL_SCHEDULE_MIN_MINUTES")
    except ValidationError as exc:
        return [Error(f"DRILL_DEFAULT_SCHEDULE: {' '.join(exc.messages)}", id="portal.E001")]
    return []


@register(deploy=True)
def health_token(app_configs: Any, **kwargs: Any) -> list[Warning]:
    if settings.HEALTH_TOKEN and len(settings.HEALTH_TOKEN) < HEALTH_TOKEN_MIN_LENGTH:
        return [Warning(f"HEALTH_TOKEN is shorter than {HEALTH_TOKEN_MIN_LENGTH} characters; make a long random "
                        "one (python3 -c 'import secrets; print(secrets.token_urlsafe(32))').", id="portal.W001")]
    return []
