"""`manage.py init_location <name> [--path FOLDER] [--adopt]`: make a folder a local storage location's, by writing
its marker (`.paws360-location`: this portal instance and the location's name; see `backups/storage/locations.py`).

With `--path`, the location is created (or its folder changed) first, checked like the admin checks it. A folder
that is not empty and has no marker is refused unless `--adopt` (it holds this portal's backups, whose marker
was lost; or an older portal's); so is a folder whose marker names another portal instance or location, or
whose marker went missing since it was written (is the disk mounted?).
"""

from __future__ import annotations

import getpass
from argparse import ArgumentParser
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from backups.models import StorageLocation
from backups.storage import locations
from portal import audit


def located(name: str, path: str | None) -> tuple[StorageLocation, bool]:
    """The location `name`; with `path`, created or moved there (validated as the admin does, not saved yet).
    Whether it is to be saved."""
    location = StorageLocation.objects.filter(name=name).first()
    if path is None:
        if location is None:
            known = ", ".join(StorageLocation.objects.values_list("name", flat=True)) or "none"
            raise CommandError(f"no storage location {name!r} (locations: {known}); give --path to create it")
        return location, False
    location = location or StorageLocation(name=name, kind=StorageLocation.Kind.LOCAL)
    changed = location.pk is None or location.path != path
    if changed:
        location.path, location.marker_written = path, None
    try:
        location.full_clean()
        locations.validate(location)
    except ValidationError as exc:
        raise CommandError(f"{name}: {'; '.join(exc.messages)}") from exc
    return location, changed


class Command(BaseCommand):
    help = "Write a local storage location's marker file into its folder."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("name", help="the location's name")
        parser.add_argument("--path", help="its folder (absolute): creates the location, or changes its folder")
        parser.add_argument("--adopt", action="store_true",
                            help="take over a folder that is not empty without a marker, or whose marker names "
                                 "another portal instance or location, or went missing")

    def handle(self, *args: Any, name: str, path: str | None, adopt: bool, **options: Any) -> None:
        actor = f"cli:{getpass.getuser()}"
        location, changed = located(name, path)
        if location.kind != StorageLocation.Kind.LOCAL:
            raise CommandError(f"{name} is object storage: only local folders carry a marker")
        if problem := locations.initialise_problem(location, adopt=adopt):
            raise CommandError(f"location {name}: {problem}")
        if changed:
            created = location.pk is None
            location.save()
            audit.record(f"storagelocation.{'create' if created else 'change'}", actor=actor, obj=location,
                         target=str(location), details={"path": path, "via": "manage.py init_location"})
        try:
            self.stdout.write(locations.initialise(location, actor=actor, adopt=adopt))
        except locations.LocationError as exc:
            raise CommandError(str(exc)) from exc
