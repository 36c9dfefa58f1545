from __future__ import annotations

from django.urls import path

from backups import admin_retention
from backups.storage import download

app_name = "backups"

urlpatterns = [
    path("policies/<int:pk>/retention/", admin_retention.preview, name="retention"),
    path("policies/<int:pk>/retention/expire/", admin_retention.apply, name="retention_apply"),
    path("<int:pk>/download/", download.download, name="download"),
]
