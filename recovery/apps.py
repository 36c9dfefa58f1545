from django.apps import AppConfig


class RecoveryConfig(AppConfig):
    name = "recovery"

    def ready(self) -> None:
        # Each scenario module registers its procedure (and clean-up) in recovery.perform.
        from recovery import drills, pitr  # noqa: F401
