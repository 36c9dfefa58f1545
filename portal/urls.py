from django.contrib import admin
from django.urls import include, path

from portal import views

admin.site.site_header = "PAWS360 DB Ops Portal"
admin.site.site_title = "PAWS360 DB Ops"
admin.site.index_title = "Operations"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("health", views.health, name="health"),
    path("backups/", include("backups.urls")),
    path("admin/", admin.site.urls),
]

handler400 = "portal.errors.bad_request"
handler403 = "portal.errors.permission_denied"
handler404 = "portal.errors.page_not_found"
handler500 = "portal.errors.server_error"
