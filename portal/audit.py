"""The one function that records what happened: `record()`. Every operation calls it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, models, transaction
from django.utils import timezone

from portal.models import GENESIS_HASH, AuditEvent

# Serialises writers so that each row's prev_hash is the hash of the row before it.
_CHAIN_LOCK = 360_001

Actor = AbstractBaseUser | AnonymousUser | str | None
Outcome = AuditEvent.Outcome


def actor_name(actor: Actor) -> str:
    if actor is None:
        return "system"
    if isinstance(actor, str):
        return actor
    if not actor.is_authenticated:
        return "anonymous"
    return actor.get_username()


def lock_chain() -> None:
    """Until the transaction ends, no other writer appends to the chain."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CHAIN_LOCK])


def record(
    action: str,
    *,
    actor: Actor = None,
    obj: models.Model | None = None,
    target: str = "",
    outcome: str = Outcome.SUCCESS,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event to the chain. Call it outside a transaction that may roll back a failure away."""
    # Round-trip through JSON so the hash is computed over exactly what the database stores.
    clean_details = json.loads(json.dumps(details or {}, cls=DjangoJSONEncoder))
    with transaction.atomic():
        lock_chain()
        last = AuditEvent.objects.order_by("-id").values_list("hash", flat=True).first()
        event = AuditEvent(
            created=timezone.now(),
            actor=actor_name(actor),
            action=action,
            object_type=obj._meta.label_lower if obj is not None else "",
            object_id=str(obj.pk) if obj is not None else "",
            target=target[:255],
            outcome=outcome,
            details=clean_details,
            prev_hash=last or GENESIS_HASH,
        )
        event.hash = event.compute_hash()
        event.save(force_insert=True)
    return event


@dataclass
class ChainReport:
    checked: int
    first_broken_id: int | None = None
    reason: str = ""

    @property
    def intact(self) -> bool:
        return self.first_broken_id is None


def verify_chain() -> ChainReport:
    """Walk the chain in insertion order; name the first row whose links or contents do not match."""
    expected_prev = GENESIS_HASH
    checked = 0
    for event in AuditEvent.objects.order_by("id").iterator(chunk_size=2000):
        if event.prev_hash != expected_prev:
            return ChainReport(checked, event.id, "its prev_hash does not match the row before it (a row was removed?)")
        if event.compute_hash() != event.hash:
            return ChainReport(checked, event.id, "its contents do not match its hash (the row was changed)")
        expected_prev = event.hash
        checked += 1
    return ChainReport(checked)
