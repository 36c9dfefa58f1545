from django.apps import AppConfig


class BackupsConfig(AppConfig):
    verbose_name = "Backups"
    name = "backups"

    def ready(self) -> None:
        from backups import anchors, schedules
        from portal import anchors as audit_anchors

        schedules.connect()
        audit_anchors.register(anchors.location_stores)
