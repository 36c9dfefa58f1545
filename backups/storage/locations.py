"""Storage locations that cannot point at the wrong place: where a local location may be, and its marker file.

A local location's folder must be absolute and, once symbolic links and `..` are resolved, neither `/`, nor
a system folder (`SYSTEM_TREES` and every top-level `/lib*`: the folder and all below it; `SYSTEM_PARENTS`:
the folder itself, a folder inside it is fine), nor inside the portal's own folders (secrets, recovered
clusters, the WAL archive root), nor inside or containing a managed cluster's data directory (or the embedded
clusters' folder, the portal's own database's included), a WAL archive folder or another local location. The
same check runs when a location is saved and again before every write (a cluster registered since may have
made it wrong).

Like the WAL archive's SYSTEM_IDENTIFIER, each local location's folder holds a marker, `.paws360-location`
(JSON: the portal instance, the location's name, when it was written). A write to a folder whose marker is
missing (a disk that is not mounted: the bare mount point) or names another instance or location is refused
with that reason, so nothing is written, or recorded present, in the wrong place. S3 locations have no marker:
an unreachable or missing bucket is an error, never a silent write elsewhere, and every object is read back.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone

from backups import files
from backups.models import StorageLocation, WalArchive
from portal import audit, instance
from portal.models import ManagedCluster

MARKER = ".paws360-location"

# The folder and everything below it.
SYSTEM_TREES = ("/bin", "/boot", "/dev", "/etc", "/lost+found", "/proc", "/root", "/run", "/sbin", "/snap", "/sys",
                "/usr", "/var/cache", "/var/lib/apt", "/var/lib/dpkg", "/var/lib/postgresql", "/var/lib/systemd",
                "/var/lock", "/var/log", "/var/mail", "/var/run", "/var/spool")
# The folder itself only: a backup folder may be made inside it. (Paths compared, never written: not S108's case.)
SYSTEM_PARENTS = ("/", "/home", "/media", "/mnt", "/opt", "/srv", "/tmp", "/var", "/var/backups",  # noqa: S108
                  "/var/lib", "/var/tmp")  # noqa: S108


class LocationError(Exception):
    """A location is not where backups may be written; the message says why."""


def resolved(path: str | Path) -> Path:
    """The path with symbolic links and `..` resolved (the parts that do not exist yet kept as given)."""
    return Path(os.path.realpath(path))


def _portal_trees() -> dict[Path, str]:
    return {resolved(settings.SECRETS_DIR): "the portal's secrets folder (SECRETS_DIR)",
            resolved(settings.RECOVERY_ROOT): "RECOVERY_ROOT, where recoveries build clusters",
            resolved(settings.WAL_ARCHIVE_ROOT): "WAL_ARCHIVE_ROOT, where WAL archives are made"}


def _system_problem(real: Path) -> str:
    if str(real) in SYSTEM_PARENTS:
        return "is a system folder: choose a folder inside it" if str(real) != "/" else "is the root folder"
    top = real.parts[1] if len(real.parts) > 1 else ""
    trees = [Path(tree) for tree in SYSTEM_TREES] + ([Path("/", top)] if top.startswith("lib") else [])
    for tree in trees:
        if real.is_relative_to(tree):
            return f"is inside {tree}, a system folder"
    for tree, what in _portal_trees().items():
        if real.is_relative_to(tree):
            return f"is inside {what} ({tree})"
    return ""


def _overlap(real: Path, other: str, what: str) -> str:
    theirs = resolved(other)
    if real.is_relative_to(theirs):
        return f"is inside {what} ({theirs})"
    if theirs.is_relative_to(real):
        return f"contains {what} ({theirs})"
    return ""


def _neighbours(location: StorageLocation) -> list[tuple[str, str]]:
    """(folder, what it is) for every folder a location must keep clear of."""
    clusters = ManagedCluster.objects.exclude(data_directory="").values_list("name", "data_directory")
    archives = WalArchive.objects.exclude(path="").values_list("cluster__name", "path")
    others = StorageLocation.objects.filter(kind=StorageLocation.Kind.LOCAL).exclude(pk=location.pk)
    embedded = (str(Path(settings.EMBEDDED_PGDATA).parent), "the embedded clusters' folder")  # managed or not
    return ([embedded] + [(folder, f"the data directory of cluster {name}") for name, folder in clusters]
            + [(folder, f"the WAL archive of cluster {name}") for name, folder in archives]
            + [(other.root, f"the folder of location {other.name}") for other in others if other.name != location.name])


def path_problem(location: StorageLocation) -> str:
    """Why `location`'s folder must not hold backups, or "" when it may. For local locations only."""
    given = location.root
    if not os.path.isabs(given):
        return "Give an absolute path."
    real = resolved(given)
    shown = given if str(real) == (given.rstrip("/") or "/") else f"{given} (resolves to {real})"
    if problem := _system_problem(real):
        return f"{shown} {problem}."
    problems = [problem for folder, what in _neighbours(location) if (problem := _overlap(real, folder, what))]
    return f"{shown} {'; '.join(problems)}." if problems else ""


def validate(location: StorageLocation) -> None:
    """The folder as a form error (the admin, `init_location`, `recatalog`): `path_problem`, on the path field."""
    if location.kind == StorageLocation.Kind.LOCAL and (problem := path_problem(location)):
        raise ValidationError({"path": problem})


def check_path(location: StorageLocation) -> None:
    if location.kind == StorageLocation.Kind.LOCAL and (problem := path_problem(location)):
        raise LocationError(f"location {location.name}: {problem}")


# --- The marker -------------------------------------------------------------------------------------------


def marker_path(location: StorageLocation) -> Path:
    return Path(location.root) / MARKER


def read_marker(location: StorageLocation) -> dict[str, str] | None:
    """The marker's content; None when there is none. LocationError when it cannot be read."""
    path = marker_path(location)
    try:
        content = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise LocationError(f"location {location.name}: marker unreadable: {path}: {exc}") from exc
    if not isinstance(content, dict):
        raise LocationError(f"location {location.name}: marker unreadable: {path}: not a JSON object")
    return content


def marker_mismatch(location: StorageLocation, marker: dict[str, str]) -> str:
    """Why the marker is not this location's of this portal, or ""."""
    path, mine = marker_path(location), instance.instance_id()
    if marker.get("instance") != mine:
        return (f"{path} names portal instance {marker.get('instance')!r} (host {marker.get('host', '?')}), "
                f"this portal is {mine!r}: the folder belongs to another portal")
    if marker.get("location") != location.name:
        return f"{path} names location {marker.get('location')!r}, not {location.name!r}"
    return ""


def check_marker(location: StorageLocation) -> None:
    """Refuse a local location whose marker is missing (not mounted?) or is not its own."""
    if location.kind != StorageLocation.Kind.LOCAL:
        return
    marker = read_marker(location)
    if marker is None:
        raise LocationError(f"location {location.name}: marker missing: {marker_path(location)} — is the disk "
                            f"mounted? (a new folder: manage.py init_location {location.name})")
    if mismatch := marker_mismatch(location, marker):
        raise LocationError(f"location {location.name}: {mismatch}")


def check_ready(location: StorageLocation) -> None:
    """Before any write to `location`: its folder is allowed and carries its own marker. LocationError if not."""
    check_path(location)
    check_marker(location)


def _renamed_from(location: StorageLocation, marker: dict[str, str]) -> bool:
    """The marker is this portal's, of a location the catalog no longer has (this one renamed, or a lost
    catalog): the folder may take this location's name."""
    if marker.get("instance") != instance.instance_id():
        return False
    return not StorageLocation.objects.filter(name=marker.get("location")).exclude(pk=location.pk).exists()


def initialise_problem(location: StorageLocation, *, adopt: bool = False) -> str:
    """Why the folder cannot be made this location's now (nothing is written), or "". `adopt` (a DBA's
    decision) takes over a folder that is not empty and has no marker, one whose marker was lost, or one whose
    marker names another portal instance or location (the portal moved to a new host)."""
    if location.kind != StorageLocation.Kind.LOCAL:
        return ""
    return path_problem(location) or marker_problem(location, adopt=adopt)


def marker_problem(location: StorageLocation, *, adopt: bool = False) -> str:
    """`initialise_problem` without the path's own check (the model's `clean()` makes that one)."""
    root = Path(location.root)
    try:
        marker = read_marker(location)
        children = [p.name for p in root.iterdir()] if root.is_dir() else []
    except (LocationError, OSError) as exc:
        return str(exc)
    if marker is not None:
        mismatch = marker_mismatch(location, marker)
        if mismatch and not adopt and not _renamed_from(location, marker):
            return f"{mismatch} (to take it over: manage.py init_location {location.name} --adopt)"
        return ""
    if location.marker_written and not adopt:
        return (f"marker missing: {marker_path(location)} — is the disk mounted? The folder was initialised on "
                f"{location.marker_written:%Y-%m-%d %H:%M} UTC (if it really is a new one: manage.py init_location "
                f"{location.name} --adopt)")
    if children and not adopt:
        return (f"{root} is not empty and has no {MARKER} marker: if it holds this portal's backups, "
                f"manage.py init_location {location.name} --adopt")
    return ""


def initialise(location: StorageLocation, *, actor: audit.Actor, adopt: bool = False) -> str:
    """Make the folder this location's: create it if need be and write the marker (atomically). What it did;
    LocationError (nothing written) when `initialise_problem` says no. An audit event either way."""
    if location.kind != StorageLocation.Kind.LOCAL:
        return f"location {location.name}: object storage has no marker"
    problem = initialise_problem(location, adopt=adopt)
    if not problem:
        marker = read_marker(location)
        if marker is not None and not marker_mismatch(location, marker):
            if location.marker_written is None:  # a catalog rebuilt since the marker was written
                _note_written(location, _created(marker))
            return f"location {location.name}: {marker_path(location)} is already its marker"
        try:
            write_marker(location)
        except OSError as exc:
            problem = f"cannot write {marker_path(location)}: {exc.strerror or exc}"
    outcome = audit.Outcome.FAILURE if problem else audit.Outcome.SUCCESS
    audit.record("storage.init", actor=actor, obj=location, target=str(location), outcome=outcome,
                 details={"marker": str(marker_path(location)), "adopt": adopt, "error": problem})
    if problem:
        raise LocationError(f"location {location.name}: {problem}")
    return f"location {location.name}: wrote {marker_path(location)}"


def write_marker(location: StorageLocation) -> None:
    """Write the folder's marker for `location`, atomically. No check and no audit event: `initialise` is the
    way for the catalog's locations."""
    now = timezone.now()
    content = {"instance": instance.instance_id(), "host": instance.HOST, "location": location.name,
               "created": now.isoformat()}
    with files.atomic_file(marker_path(location)) as out:
        out.write((json.dumps(content, indent=2) + "\n").encode())
    _note_written(location, now)


def _note_written(location: StorageLocation, when: datetime) -> None:
    StorageLocation.objects.filter(pk=location.pk).update(marker_written=when)
    location.marker_written = when


def _created(marker: dict[str, str]) -> datetime:
    try:
        return datetime.fromisoformat(marker["created"])
    except (KeyError, TypeError, ValueError):
        return timezone.now()


def initialise_default(*, actor: audit.Actor) -> str:
    """The default location (BACKUP_ROOT), as `bin/portal up` leaves it: initialised; a folder without a marker
    that this catalog never initialised (an older portal's) is taken over, never another instance's folder nor
    one whose marker went missing. What it did, or why not: said, not raised (backups then fail with the
    reason, and the rest of the set-up goes on)."""
    location = StorageLocation.default_local()
    try:
        first_time = location.marker_written is None and read_marker(location) is None
        return initialise(location, actor=actor, adopt=first_time)
    except LocationError as exc:
        return f"WARNING: {exc}"
