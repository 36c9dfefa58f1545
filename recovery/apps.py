from django.apps import AppConfig


class RecoveryConfig(AppConfig):
    name = "recovery"

    def ready(self) -> None:
        # Each scenario registers its procedure in recovery.perform.PROCEDURES (a drill in recovery.drills.DRILLS)
        # and what undoes a dead run of it in recovery.cleanup.UNDO.
        from recovery import complete, drills, logical_drill, pitr, promote, single_table  # noqa: F401
