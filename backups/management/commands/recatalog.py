"""`manage.py recatalog <location>`: rebuild the catalog's rows from the backups' manifests in a storage location,
after the portal's database was lost (`backups/storage/recatalog.py`). One line per backup: recatalogued, already known,
damaged or refused, with the reason. Exit code 0 only when every manifest was recatalogued or already known.

The location is named as the catalog knows it, or given as the absolute path of a local folder: a folder the
catalog does not know yet becomes the location its marker names (`.paws360-location`).
"""

from __future__ import annotations

import getpass
import os
import sys
from argparse import ArgumentParser
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from backups.management.commands.backup_now import BAR_WIDTH, ProgressLine
from backups.models import StorageLocation
from backups.storage import backends, locations, recatalog
from portal import audit


def find_location(given: str, *, create: bool, actor: str) -> StorageLocation:
    location = StorageLocation.objects.filter(name=given).first()
    if location is not None:
        return location
    if not os.path.isabs(given):
        known = ", ".join(StorageLocation.objects.values_list("name", flat=True)) or "none"
        raise CommandError(f"no storage location {given!r} (locations: {known}); or give a folder's absolute path")
    for location in StorageLocation.objects.filter(kind=StorageLocation.Kind.LOCAL):
        if locations.resolved(location.root) == locations.resolved(given):
            return location
    return location_from_marker(given, create=create, actor=actor)


def location_from_marker(folder: str, *, create: bool, actor: str) -> StorageLocation:
    """A folder the catalog does not know: the location its marker names (saved unless a dry run)."""
    probe = StorageLocation(name="?", kind=StorageLocation.Kind.LOCAL, path=folder)
    try:
        marker = locations.read_marker(probe)
    except locations.LocationError as exc:
        raise CommandError(str(exc)) from exc
    if marker is None or not marker.get("location"):
        raise CommandError(f"{folder} has no {locations.MARKER} marker naming its location: is the disk mounted?")
    location = StorageLocation(name=marker["location"], kind=StorageLocation.Kind.LOCAL, path=folder)
    try:
        location.full_clean()
        locations.validate(location)
    except ValidationError as exc:
        raise CommandError(f"{folder}: {'; '.join(exc.messages)}") from exc
    if create:
        location.save()
        audit.record("storagelocation.create", actor=actor, obj=location, target=str(location),
                     details={"path": folder, "via": "manage.py recatalog"})
    return location


def bar(done: int, total: int, what: str) -> str:
    filled = BAR_WIDTH * done // total if total else BAR_WIDTH
    return f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {done}/{total} manifests: {what}"[:160]


class Command(BaseCommand):
    help = "Rebuild catalog rows from the backup manifests in a storage location."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("location", help="a storage location's name, or the absolute path of a local folder")
        parser.add_argument("--dry-run", action="store_true", help="say what would be done; write nothing")
        parser.add_argument("--quiet", action="store_true", help="no progress; only the outcomes")

    def handle(self, *args: Any, location: str, dry_run: bool, quiet: bool, **options: Any) -> None:
        actor = f"cli:{getpass.getuser()}"
        chosen = find_location(location, create=not dry_run, actor=actor)
        line = ProgressLine(sys.stderr)

        def progress(done: int, total: int, what: str) -> None:
            if not quiet:
                line.show(bar(done, total, what), final=done == total)

        try:
            outcomes = recatalog.run(chosen, actor=actor, dry_run=dry_run, progress=progress)
        except backends.StorageError as exc:
            raise CommandError(f"cannot read location {chosen}: {exc}") from exc
        for outcome in outcomes:
            self.stdout.write(("(dry run) " if dry_run else "") + str(outcome))
        counts = {state: sum(o.state == state for o in outcomes)
                  for state in (recatalog.RECATALOGUED, recatalog.KNOWN, recatalog.DAMAGED, recatalog.REFUSED)}
        summary = f"{len(outcomes)} manifests in {chosen}: " + ", ".join(f"{n} {state}" for state, n in counts.items())
        if not all(outcome.good for outcome in outcomes):
            raise CommandError(summary)
        self.stdout.write(self.style.SUCCESS(summary))
