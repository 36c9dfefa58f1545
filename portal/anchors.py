"""The audit chain's head, anchored outside the portal's database.

The hash chain (`portal.audit`) shows a changed row or a broken link. Its owner role could still empty the table,
delete its tail, or rewrite a row and re-hash every row after it, and the chain alone would look whole. So the
chain's head — the newest row's id and hash, and how many rows the chain holds — is appended at least hourly to
an anchor file in every backup location (the apps register where: `register()`), out of reach of the portal's
database role. `check()` holds the chain against every anchor written for this portal's database.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Protocol

from django.db import connection, transaction
from django.utils import timezone

from portal import audit, instance
from portal.models import GENESIS_HASH, AuditEvent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Anchor:
    instance: str
    database: str
    last_id: int
    last_hash: str
    count: int
    at: str
    where: str = field(default="", compare=False)

    def to_json(self) -> str:
        fields = asdict(self)
        fields.pop("where")
        return json.dumps(fields, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, where: str) -> Anchor:
        fields = json.loads(text)
        return cls(instance=str(fields["instance"]), database=str(fields["database"]), last_id=int(fields["last_id"]),
                   last_hash=str(fields["last_hash"]), count=int(fields["count"]), at=str(fields["at"]), where=where)


class AnchorStore(Protocol):
    """Somewhere outside the portal's database that keeps anchors (a backup location)."""

    name: str

    def append(self, anchor: Anchor) -> None: ...

    def read(self, instance: str, database: str) -> tuple[list[Anchor], list[str]]:
        """This portal's anchors, and a problem for each entry that could not be read."""
        ...


_SOURCES: list[Callable[[], Iterable[AnchorStore]]] = []


def register(source: Callable[[], Iterable[AnchorStore]]) -> None:
    """An app contributes the stores it knows of (called from its AppConfig.ready())."""
    if source not in _SOURCES:
        _SOURCES.append(source)


def stores() -> list[AnchorStore]:
    return [store for source in _SOURCES for store in source()]


def chain_name() -> tuple[str, str]:
    """Whose chain this is: the portal instance and its database."""
    return instance.instance_id(), connection.settings_dict["NAME"]


def head() -> Anchor:
    """The chain's newest row and length, read under the lock writers take, so no row slips in between."""
    with transaction.atomic():
        audit.lock_chain()
        last = AuditEvent.objects.order_by("-id").values("id", "hash").first()
        count = AuditEvent.objects.count()
    name, database = chain_name()
    last_id, last_hash = (last["id"], last["hash"]) if last else (0, GENESIS_HASH)
    return Anchor(name, database, last_id, last_hash, count, timezone.now().isoformat())


@dataclass
class Anchored:
    anchor: Anchor
    written: list[str]
    failed: dict[str, str]


def anchor(reason: str, actor: audit.Actor = "system:audit") -> Anchored:
    """Append the chain's head to every store; an audit event says where it went (and where it could not)."""
    now = head()
    written, failed = [], {}
    for store in stores():
        try:
            store.append(now)
        except Exception as exc:  # one unreachable location must not keep the anchor from the others
            log.warning("audit anchor not written to %s: %s", store.name, exc)
            failed[store.name] = str(exc)
        else:
            written.append(store.name)
    if not written and not failed:
        failed["(none)"] = "no backup location to anchor in"
    audit.record("audit.anchor", actor=actor, target=f"#{now.last_id}", details={
        "reason": reason, "last_id": now.last_id, "last_hash": now.last_hash, "count": now.count,
        "written": written, "failed": failed}, outcome=audit.Outcome.SUCCESS if written else audit.Outcome.FAILURE)
    return Anchored(now, written, failed)


def anchors() -> tuple[list[Anchor], list[str]]:
    """Every anchor of this portal's chain in every store, and what could not be read."""
    name, database = chain_name()
    found, problems = [], []
    for store in stores():
        try:
            kept, unreadable = store.read(name, database)
        except Exception as exc:
            problems.append(f"anchors in {store.name} could not be read: {exc}")
            continue
        found += kept
        problems += unreadable
    return found, problems


def check(found: list[Anchor]) -> list[str]:
    """What the anchors say the chain lost: an emptied table, a missing tail, a rewritten row, removed rows."""
    if not found:
        return []
    existing = dict(AuditEvent.objects.filter(id__in={a.last_id for a in found}).values_list("id", "hash"))
    total = AuditEvent.objects.count()
    newest_id = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    findings: dict[tuple[int, str], str] = {}
    last_good = 0
    distinct = {(a.last_id, a.last_hash): a for a in found if a.count}
    for anchored in sorted(distinct.values(), key=lambda a: a.last_id):
        seen = f"the anchor of {anchored.at} in {anchored.where}"
        if total == 0:
            problem = f"the audit table is empty, but {seen} names {anchored.count} events up to " \
                      f"#{anchored.last_id}: the table was emptied"
        elif anchored.last_id > newest_id:
            problem = f"events after #{newest_id} up to #{anchored.last_id} are gone ({seen}): the tail was deleted"
        elif anchored.last_id not in existing:
            problem = f"event #{anchored.last_id} is gone ({seen})"
        elif existing[anchored.last_id] != anchored.last_hash:
            span = f"after #{last_good} and up to" if last_good else "up to"
            problem = f"an event {span} #{anchored.last_id} was rewritten and the chain re-hashed: " \
                      f"#{anchored.last_id}'s hash differs from {seen}"
        else:
            last_good = anchored.last_id
            continue
        findings[(anchored.last_id, anchored.last_hash)] = problem
    if not findings:
        findings.update(_count_problem(max(found, key=lambda a: a.last_id)))
    return list(findings.values())


def _count_problem(newest: Anchor) -> dict[tuple[int, str], str]:
    """Rows removed before the newest anchor with the links mended would change its count."""
    held = AuditEvent.objects.filter(id__lte=newest.last_id).count()
    if held == newest.count:
        return {}
    return {(newest.last_id, "count"): f"{newest.count - held} event(s) up to #{newest.last_id} were removed since "
                                      f"the anchor of {newest.at} in {newest.where} ({newest.count} then, {held} now)"}
