"""The recovery request form: what to recover, from which backup, to where, and why. Nothing in it is a command:
the services a restore stops and starts come from deployment configuration."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db.models import QuerySet

from backups.models import Backup, BackupPolicy
from portal.forms import BoundedInput
from portal.models import ManagedDatabase
from portal.templatetags.portal_format import size
from recovery.merge import Table
from recovery.models import RecoveryRequest

TIME = re.compile(r"^(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})[ T](?P<hour>\d{1,2}):(?P<minute>\d{2})"
                  r"(?::(?P<second>\d{2})(?:\.(?P<fraction>\d{1,6}))?)?\s*(?P<zone>\S*)$")
OFFSET = re.compile(r"^(?P<sign>[+-])(?P<hours>\d{2}):?(?P<minutes>[0-5]\d)?$")
TIME_HELP = ("Point-in-time only. A time and its zone: an offset, UTC, or a zone name, e.g. "
             "<code>2026-11-25 14:30:00 -06:00</code>, <code>2026-11-25 20:30 UTC</code>, "
             "<code>2026-11-25 14:30 America/Chicago</code>. Shown in UTC as you type.")
ZONE_SHOWN = 40  # characters of an unknown zone repeated in its error


def parse_target_time(text: str) -> datetime:
    """A time with an explicit zone, as an aware datetime in UTC. A time without a zone is refused: recovering to
    the wrong hour is the mistake this guards against. A date or time that does not exist (30 February, 25:00) is
    refused with the reason."""
    match = TIME.match(text.strip())
    if not match:
        raise ValidationError("Write the time as YYYY-MM-DD HH:MM[:SS] followed by its time zone.")
    naive = _naive(match)
    zone = match["zone"]
    if not zone:
        raise ValidationError("Give the time zone too (an offset such as -06:00, UTC, or a name such as "
                              "America/Chicago): a time without one is ambiguous.")
    try:
        return _in_zone(naive, zone).astimezone(UTC)
    except OverflowError:
        raise ValidationError("That time is outside the range of dates the portal can handle.") from None


def _naive(match: re.Match[str]) -> datetime:
    fraction = (match["fraction"] or "").ljust(6, "0")
    parts = [match[name] for name in ("year", "month", "day", "hour", "minute")] + [match["second"] or 0, fraction]
    try:
        return datetime(*(int(part) for part in parts))
    except ValueError as exc:
        when = match.group(0)[:match.start("zone")].strip()
        raise ValidationError(f"{when} is not a date and time that exists ({exc}).") from None


def _in_zone(naive: datetime, zone: str) -> datetime:
    if zone.upper() in ("Z", "UTC"):
        return naive.replace(tzinfo=UTC)
    if offset := OFFSET.match(zone):
        delta = timedelta(hours=int(offset["hours"]), minutes=int(offset["minutes"] or 0))
        try:
            return naive.replace(tzinfo=timezone(delta if offset["sign"] == "+" else -delta))
        except ValueError:
            raise ValidationError("A UTC offset is less than 24 hours, e.g. -06:00.") from None
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        shown = zone if len(zone) <= ZONE_SHOWN else zone[:ZONE_SHOWN] + "…"
        raise ValidationError(f"Unknown time zone {shown!r}.") from None
    first, second = naive.replace(tzinfo=tz, fold=0), naive.replace(tzinfo=tz, fold=1)
    if first.utcoffset() != second.utcoffset():
        raise ValidationError(f"{naive} happens twice or never in {zone} (a daylight-saving change): give the UTC "
                              "offset instead.")
    return first


class TargetTimeField(forms.CharField):
    input_limit = 64  # the longest zone name is 32 characters
    def to_python(self, value: Any) -> datetime | None:
        text = super().to_python(value)
        return parse_target_time(text) if text else None

    def prepare_value(self, value: Any) -> Any:
        return f"{value:%Y-%m-%d %H:%M:%S} UTC" if isinstance(value, datetime) else value


class TablesField(forms.CharField):
    input_limit = 1000
    def to_python(self, value: Any) -> list[str]:
        text = super().to_python(value)
        labels = [part.strip() for part in re.split(r"[,\s]+", text or "") if part.strip()]
        try:
            return [Table.parse(label).label for label in labels]
        except ValueError as exc:
            raise ValidationError(str(exc)) from exc

    def prepare_value(self, value: Any) -> Any:
        return ", ".join(value) if isinstance(value, list) else value


def good_backups() -> QuerySet[Backup]:
    """What the form offers: every good backup (logical; base ones for point-in-time), newest first."""
    return (Backup.objects.filter(kind__in=[BackupPolicy.Kind.LOGICAL, BackupPolicy.Kind.BASE],
                                  status=Backup.Status.SUCCEEDED, verification=Backup.Verification.VERIFIED,
                                  expired_at__isnull=True)
            .select_related("database", "cluster", "policy").order_by("-created"))


class BackupSelect(forms.Select):
    """Each option says which database and kind it is of, so the page can offer only the chosen database's."""

    def create_option(self, name: str, value: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        option = super().create_option(name, value, *args, **kwargs)
        backup = getattr(value, "instance", None)
        if backup is not None:
            option["attrs"].update({"data-database": str(backup.database_id or ""), "data-kind": backup.kind,
                                    "data-cluster": str(backup.cluster_id)})
        return option


class BackupChoiceField(forms.ModelChoiceField):
    """Offers the good backups; accepts any, so that a refused one is refused with its reason rather than with
    "not one of the available choices"."""

    widget = BackupSelect

    def to_python(self, value: Any) -> Backup | None:
        if value in self.empty_values:
            return None
        try:
            return Backup.objects.select_related("database", "cluster", "policy").get(pk=int(value))
        except (ValueError, TypeError, Backup.DoesNotExist) as exc:
            raise ValidationError(f"There is no backup #{value}.") from exc

    def label_from_instance(self, backup: Backup) -> str:
        what = backup.database.name if backup.database else f"cluster {backup.cluster}"
        kind = "" if backup.kind == BackupPolicy.Kind.LOGICAL else " · base backup"
        return f"#{backup.pk} {what} · {backup.created:%Y-%m-%d %H:%M} UTC · {size(backup.size_bytes)}{kind}"


class RecoveryRequestForm(BoundedInput, forms.ModelForm):
    backup = BackupChoiceField(queryset=good_backups(), required=False,
                               empty_label="The newest verified backup of the database",
                               help_text="Only verified backups that were not expired are offered.")
    target_time = TargetTimeField(required=False, help_text=TIME_HELP)
    tables = TablesField(required=False, help_text="Single table: schema.table, several separated by "
                         "commas (parents before children), e.g. <code>paws360.students</code>.")

    class Meta:
        model = RecoveryRequest
        fields = ["kind", "database", "cluster", "backup", "target_time", "tables", "merge_policy", "destination",
                  "destination_name", "reason"]
        widgets = {
            "merge_policy": forms.RadioSelect,
            "destination": forms.RadioSelect,
            "reason": forms.Textarea(attrs={"rows": 3, "placeholder": "What happened, and the ticket (INC-...)"}),
        }
        help_texts = {
            "destination": "Replacing production, or merging rows into a production table, needs a second DBA's "
                           "approval. The application services are stopped and started only when production is "
                           "replaced.",
            "destination_name": "Beside production: the new database's name. Empty: <code>&lt;name&gt;_restored_"
                                "&lt;time&gt;</code>.",
            "cluster": "Point-in-time recovery and drills of a whole cluster; otherwise the database's own.",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["cluster"].required = False
        # Making a recovered cluster production is asked for on the recovery's own page, not here.
        self.fields["kind"].choices = [choice for choice in self.fields["kind"].choices
                                       if choice[0] != RecoveryRequest.Kind.PROMOTE]
        self.fields["backup"].queryset = good_backups()
        if not self.is_bound:
            self._set_defaults()

    def _set_defaults(self) -> None:
        """A complete restore of the production database with the newest good backup, from that backup."""
        self.initial.setdefault("kind", RecoveryRequest.Kind.COMPLETE)
        production = ManagedDatabase.Environment.PRODUCTION
        newest = good_backups().filter(kind=BackupPolicy.Kind.LOGICAL, database__environment=production).first()
        if newest is not None:
            self.initial.setdefault("database", newest.database_id)
            self.initial.setdefault("backup", newest.pk)
        elif database := ManagedDatabase.objects.filter(environment=production).first():
            self.initial.setdefault("database", database.pk)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        database, cluster = data.get("database"), data.get("cluster")
        if database is not None:
            if cluster is not None and cluster != database.cluster:
                self.add_error("cluster", f"{database} is on {database.cluster}, not {cluster}.")
            data["cluster"] = database.cluster
        elif cluster is None and "database" not in self.errors:
            self.add_error("database", "Choose the database to recover (or the cluster, for point-in-time).")
        return data

    def add_check_errors(self, exc: ValidationError) -> None:
        """What the request's checks found when it was submitted (`recovery.validation`), on the fields at fault."""
        known = set(self.fields)
        errors: dict[str, list[str]] = {}
        for field, messages in exc.update_error_dict({}).items():
            errors.setdefault(field if field in known else NON_FIELD_ERRORS, []).extend(messages)
        self._update_errors(ValidationError(errors))
