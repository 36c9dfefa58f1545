"""The portal's URLs and one view that raises, for the error page's tests."""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse
from django.urls import path

from portal.urls import handler400, handler403, handler404, handler500  # noqa: F401 (the error views)
from portal.urls import urlpatterns as portal_urlpatterns

log = logging.getLogger(__name__)


def boom(request: HttpRequest) -> HttpResponse:
    log.info("about to fail")
    raise RuntimeError("boom: the secret detail of a bug")


urlpatterns = [path("boom", boom), *portal_urlpatterns]
