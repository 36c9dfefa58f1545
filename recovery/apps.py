from django.apps import AppConfig


class RecoveryConfig(AppConfig):
    name = "recovery"

    def ready(self) -> None:
        # Each procedure registers itself in recovery.perform.PROCEDURES (and its undo in recovery.cleanup.UNDO).
        from recovery import complete, logical_drill, single_table  # noqa: F401
