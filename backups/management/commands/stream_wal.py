"""manage.py stream_wal <cluster>: supervise pg_receivewal --synchronous into the cluster's WAL archive."""

from __future__ import annotations

import signal
import threading

from django.core.management.base import BaseCommand, CommandError

from backups.models import WalArchive
from backups.wal import stream as walstream
from portal import audit


class Command(BaseCommand):
    help = ("Stream a cluster's WAL with pg_receivewal through a replication slot into its archive's stream/ "
            "folder, restarting it when it stops, until SIGTERM or SIGINT. With --synchronous the server waits "
            "for it at every commit (RPO 0 bytes; commits block while it is down).")

    def add_arguments(self, parser) -> None:
        parser.add_argument("cluster")
        parser.add_argument("--synchronous", action="store_true",
                            help="Name the receiver in synchronous_standby_names.")

    def handle(self, *args, cluster: str, synchronous: bool, **options) -> None:
        archive = WalArchive.objects.select_related("cluster").filter(cluster__name=cluster).first()
        if archive is None:
            raise CommandError(f"{cluster} has no WAL archive: run manage.py configure_archiving {cluster} first")
        walstream.configure(archive, synchronous=synchronous)
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        audit.record("wal.stream_start", actor="system:stream", obj=archive, target=cluster)
        self.stdout.write(f"streaming {cluster} into {archive.stream_folder} (slot {archive.slot_name})")
        walstream.receive(archive, stop, log=self.stdout.write)
        audit.record("wal.stream_stop", actor="system:stream", obj=archive, target=cluster)
