"""A request id for every request: sent back as `X-Request-ID`, put on every log record of the request, and shown
on the error page, so that what a person quotes from the page is found in `portal.log`.

The id is always made here (never taken from the client): it must be safe to write to the log as it is.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from contextvars import ContextVar

from django.http import HttpRequest, HttpResponse

HEADER = "X-Request-ID"
NONE = "-"  # records outside a request: the worker, commands

_current: ContextVar[str] = ContextVar("request_id", default=NONE)


def current() -> str:
    return _current.get()


def new_id() -> str:
    return secrets.token_hex(8)


class RequestIdMiddleware:
    """First in the chain, so that errors of the other middleware (a session read while the database is down)
    carry the id too."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.request_id = new_id()
        token = _current.set(request.request_id)
        try:
            response = self.get_response(request)
        finally:
            _current.reset(token)
        response[HEADER] = request.request_id
        return response


class RequestIdFilter(logging.Filter):
    """Puts `request_id` on every record (`-` outside a request), for the formatter. Django logs an error
    response after the middleware returned it, with the request on the record: its id is taken from there."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            request = getattr(record, "request", None)
            record.request_id = getattr(request, "request_id", None) or current()
        return True
