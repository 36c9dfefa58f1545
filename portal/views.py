from __future__ import annotations

import hashlib
import hmac
import logging

from django.conf import settings
from django.contrib import admin
from django.contrib.auth.decorators import login_required
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from portal import health as health_checks
from portal.models import ManagedCluster

log = logging.getLogger(__name__)


def bearer_token_matches(request: HttpRequest) -> bool:
    """`Authorization: Bearer <HEALTH_TOKEN>`, compared in constant time; never true while the setting is empty.
    A wrong token is logged without its value."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if not settings.HEALTH_TOKEN or scheme.lower() != "bearer":
        return False
    digest = [hashlib.sha256(value.strip().encode()).digest() for value in (given, settings.HEALTH_TOKEN)]
    if hmac.compare_digest(*digest):
        return True
    log.warning("/health: a wrong bearer token from %s", request.META.get("REMOTE_ADDR", "?"))
    return False


def signed_in_staff(request: HttpRequest) -> bool:
    user = request.user  # reads the session from the database
    return user.is_authenticated and user.is_active and user.is_staff


@require_GET
@never_cache
def health(request: HttpRequest) -> JsonResponse:
    """{"status": "ok"} (200) or {"status": "fail"} (503) for anyone; the details for a signed-in staff user or the
    bearer token. JSON whatever fails, the portal's own database included."""
    token = bearer_token_matches(request)
    try:
        healthy, body = health_checks.report()
        detailed = token or signed_in_staff(request)
    except DatabaseError as exc:
        log.warning("/health: the portal's database failed: %s", exc)
        body, healthy = {"status": "fail"}, False
        detailed = token
        if token:
            body["portal_database"] = {"ok": False, "detail": f"the portal's database failed: {exc}"}
    return JsonResponse(body if detailed else {"status": body["status"]}, status=200 if healthy else 503)


@login_required
@never_cache
def dashboard(request: HttpRequest) -> HttpResponse:
    """The stored status of each cluster with its age (the worker samples every minute), and the monitoring
    checks. Nothing is measured here."""
    clusters = [(cluster, health_checks.managed_cluster(cluster))
                for cluster in ManagedCluster.objects.prefetch_related("databases")]
    context = {**admin.site.each_context(request), "title": "Dashboard", "clusters": clusters,
               "checks": health_checks.monitoring(),
               "stale_after": health_checks.age_text(settings.STATUS_STALE_SECONDS)}
    return render(request, "portal/dashboard.html", context)
