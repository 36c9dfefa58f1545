"""The error pages (400, 403, 404, 500 and a refused CSRF check), in the admin's style, each saying why.

The 500 page renders from the template alone, with no context processor and no query: it must work while the
portal's own database is down. It shows the request id that the log file has with the traceback.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.db import DatabaseError
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseForbidden,
    HttpResponseNotFound,
    HttpResponseServerError,
)
from django.template import loader
from django.urls import Resolver404

from portal import requestid

NOT_ALLOWED = "Your account may not do this."
MAX_SHOWN = 200  # characters of a path or message shown back


def _shown(text: str) -> str:
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "…"


def _request_id(request: HttpRequest | None) -> str:
    return getattr(request, "request_id", "") or requestid.current()


def _user_context(request: HttpRequest) -> dict[str, object]:
    """Who is signed in and in which groups, for the page's header and the 403 page; nothing when the database
    cannot say."""
    user = getattr(request, "user", None)
    try:
        if user is None or not user.is_authenticated:
            return {}
        roles = ", ".join(user.groups.order_by("name").values_list("name", flat=True))
    except DatabaseError:
        return {}
    return {"has_permission": user.is_active and user.is_staff, "roles": roles or "none"}


def _render(request: HttpRequest | None, template: str, context: dict[str, object]) -> str:
    context = {"request_id": _request_id(request), **context}
    return loader.get_template(template).render(context, request)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    context = {"title": "Bad request", "reason": "The request could not be understood (a malformed or refused "
               "address or header)."}
    return HttpResponseBadRequest(_render(request, "400.html", context))


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    reason = _shown(str(exception)) if exception is not None and str(exception) else NOT_ALLOWED
    context = {"title": "Not allowed", "reason": reason, **_user_context(request)}
    return HttpResponseForbidden(_render(request, "403.html", context))


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """What was not found: the page's address, or the message of the code that looked (never the URL patterns
    tried, which the resolver's error carries)."""
    message = str(exception) if exception is not None and not isinstance(exception, Resolver404) else ""
    reason = _shown(message) if message else f"There is no page at {_shown(request.path)}."
    context = {"title": "Not found", "reason": reason, **_user_context(request)}
    return HttpResponseNotFound(_render(request, "404.html", context))


def server_error(request: HttpRequest) -> HttpResponse:
    context = {"title": "Server error", "reason": "Something went wrong on the portal's side. The error was "
               "logged with the id below."}
    return HttpResponseServerError(_render(None, "500.html", {**context, "request_id": _request_id(request)}))


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """CSRF_FAILURE_VIEW: the form was stale or came from elsewhere."""
    text = ("The form could not be checked (its security token was missing or had expired, or it was sent from "
            f"another site): {reason or 'refused'}. Reload the page and try again.")
    return permission_denied(request, PermissionDenied(text))
