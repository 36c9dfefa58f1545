from django.apps import AppConfig


class BackupsConfig(AppConfig):
    verbose_name = "Backups"
    name = "backups"

    def ready(self) -> None:
        from backups import schedules

        schedules.connect()
