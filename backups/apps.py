from django.apps import AppConfig


class BackupsConfig(AppConfig):
    verbose_name = "Backups"
    name = "backups"
