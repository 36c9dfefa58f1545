from django.apps import AppConfig


class BackupsConfig(AppConfig):
    verbose_name = "Backups"
    name = "backups"

    def ready(self) -> None:
        """What this app contributes, all of it here: how each kind of backup is taken and verified, /health's
        backup and WAL archive checks, the audit chain's anchors in every storage location, the schedules that follow
        the policies, and the embedded default's archiving and runbook policies."""
        from backups import defaults, freshness, leftovers, pipeline, schedules, verify
        from backups.kinds import appdata, base, config, logical
        from backups.models import Backup, BackupPolicy
        from backups.storage import anchors
        from backups.wal import status as wal_status
        from portal import anchors as audit_anchors
        from portal import embedded, health, jobs

        kind = BackupPolicy.Kind
        pipeline.TAKERS.update({
            kind.LOGICAL: logical.take_logical_backup,
            kind.CONFIG: config.take_config_backup,
            kind.APPDATA: appdata.take_appdata_backup,
            kind.BASE: base.take_base_backup,
        })
        verify.VERIFIERS.update({
            kind.LOGICAL: verify.verify_logical,
            kind.CONFIG: verify.verify_archive,
            kind.APPDATA: verify.verify_archive,
            kind.BASE: base.check,
        })
        jobs.on_reaped(Backup, leftovers.after_reaped)
        health.register("wal_archives", "WAL archive", wal_status.all_health)
        health.register("backups", "Backups", freshness.health)
        audit_anchors.register(anchors.location_stores)
        schedules.connect()
        embedded.register_setup(defaults.protect_embedded)
