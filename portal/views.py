from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from portal import health as health_checks
from portal import targets
from portal.models import ManagedCluster


@require_GET
@never_cache
def health(request: HttpRequest) -> JsonResponse:
    healthy, body = health_checks.report()
    return JsonResponse(body, status=200 if healthy else 503)


@login_required
@never_cache
def dashboard(request: HttpRequest) -> HttpResponse:
    targets.refresh_stale()
    clusters = ManagedCluster.objects.prefetch_related("databases")
    context = {**admin.site.each_context(request), "title": "Dashboard", "clusters": clusters,
               "checks": health_checks.monitoring()}
    return render(request, "portal/dashboard.html", context)
