"""manage.py configure_archiving <cluster>: continuous WAL archiving on a managed cluster, proved."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from backups.models import WalArchive
from backups.wal import setup
from portal.models import ManagedCluster


class Command(BaseCommand):
    help = ("Configure a managed cluster to archive its WAL into the portal's archive (ALTER SYSTEM, then reload, "
            "or restart when archive_mode must change), then prove it: pg_switch_wal() and wait for the segment.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("cluster", help="The managed cluster's name.")
        parser.add_argument("--folder", type=Path, help="Archive folder (default: WAL_ARCHIVE_ROOT/<cluster>).")
        parser.add_argument("--compression", choices=WalArchive.Compression.values)
        parser.add_argument("--archive-timeout", type=int, help="Seconds (default: WAL_ARCHIVE_TIMEOUT, 60).")

    def handle(self, *args, cluster: str, folder: Path | None, compression: str | None,
               archive_timeout: int | None, **options) -> None:
        try:
            managed = ManagedCluster.objects.get(name=cluster)
        except ManagedCluster.DoesNotExist:
            raise CommandError(f"no managed cluster called {cluster!r}") from None
        if archive_timeout is not None and not 1 <= archive_timeout <= 3600:
            raise CommandError("--archive-timeout must be between 1 and 3600 seconds")
        try:
            setup.configure(managed, folder=folder, compression=compression, archive_timeout=archive_timeout,
                               log=self.stdout.write)
        except setup.ArchivingError as exc:
            raise CommandError(str(exc)) from exc
