from django.apps import AppConfig


class RecoveryConfig(AppConfig):
    name = "recovery"

    def ready(self) -> None:
        """What this app contributes, all of it here: the procedure of each kind of request and what undoes a run
        of it whose worker died, the kinds of drill, the hold a promotion puts on backups, /health's drill checks,
        and the drill schedules of the embedded default."""
        from backups import pipeline
        from portal import embedded, health, jobs
        from recovery import (
            approvals,
            cleanup,
            complete,
            drills,
            logical_drill,
            perform,
            pitr,
            promote,
            single_table,
            validation,
        )
        from recovery.models import DrillSchedule, RecoveryRequest

        kind = RecoveryRequest.Kind
        perform.PROCEDURES.update({
            kind.COMPLETE: complete.restore_complete,
            kind.TABLE: single_table.recover_tables,
            kind.PITR: pitr.recover_to_point,
            kind.DRILL: drills.run,
            kind.PROMOTE: promote.promote,
        })
        for request_kind, undo in [
            (kind.COMPLETE, cleanup.undo_restore),
            (kind.TABLE, cleanup.undo_restore),
            (kind.DRILL, cleanup.undo_restore),  # a logical drill's scratch database
            (kind.DRILL, pitr.undo_dead_run),  # a point-in-time drill's scratch cluster
            (kind.PITR, pitr.undo_dead_run),
            (kind.PROMOTE, promote.undo_dead_run),
        ]:
            cleanup.register(request_kind, undo)
        approvals.SUBMISSION_CHECKS.update({kind.PITR: pitr.validate_request, kind.PROMOTE: promote.validate_request})
        validation.register(kind.PITR)(pitr.validate_request)  # the request form shows them on their fields too
        drills.DRILLS.update({
            DrillSchedule.Kind.LOGICAL: logical_drill.logical_drill,
            DrillSchedule.Kind.PITR: pitr.drill,
        })
        jobs.on_reaped(RecoveryRequest, cleanup.after_reaped)
        pipeline.HOLDS.append(promote.backups_held)  # no backup of a cluster a promotion is swapping
        health.register("drills", "Drills", drills.health)
        embedded.register_setup(drills.schedule_embedded)
