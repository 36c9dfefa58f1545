"""The runbook's backup monitoring, from the catalog: is each scheduled policy's newest backup recent and good?

The seed's script counted `*.sql` files younger than a day. Here a policy fails the check when its newest run
failed, its newest good backup failed verification or could not be verified (no scratch cluster), or two of its
scheduled runs passed without a good backup; the detail also gives what the policy keeps and its size (the seed's
"backup directory size").
"""

from __future__ import annotations

from django.db.models import Count, Q, Sum
from django.utils import timezone

from backups.models import Backup, BackupPolicy
from backups.verify import REFUSED
from portal import schedules
from portal.templatetags.portal_format import size

NBSP = "\xa0"  # filesizeformat's, for the page; monitoring reads plain text
FINISHED = (Backup.Status.SUCCEEDED, Backup.Status.FAILED, Backup.Status.CANCELLED)


def health() -> dict[str, tuple[bool, str]]:
    """policy name -> (ok, detail), for every policy with scheduled runs."""
    return {policy.name: state(policy) for policy in BackupPolicy.objects.filter(enabled=True)}


def state(policy: BackupPolicy) -> tuple[bool, str]:
    runs = policy.backups.filter(status__in=FINISHED).order_by("-created")
    newest_run = runs.first()
    good = runs.filter(status=Backup.Status.SUCCEEDED, expired_at__isnull=True)
    newest_good = good.first()
    if newest_run is not None and newest_run.status != Backup.Status.SUCCEEDED:
        return False, f"the newest run, #{newest_run.pk}, {newest_run.status}: {newest_run.error[:300]}"
    if newest_good is not None and newest_good.verification == Backup.Verification.FAILED:
        return False, f"the newest backup, #{newest_good.pk}, failed verification"
    if newest_good is not None and newest_good.verification_error.startswith(REFUSED):
        return False, f"the newest backup, #{newest_good.pk}, is kept but {newest_good.verification_error}"
    if schedules.missed_twice(policy.schedule, newest_good.created if newest_good else policy.created):
        since = f"since {newest_good.created:%Y-%m-%d %H:%M} UTC" if newest_good else "yet"
        return False, f"no good backup {since}: two scheduled runs ({policy.schedule}) passed without one"
    if newest_good is None:
        return True, "no backup has run yet"
    return True, f"newest #{newest_good.pk}, {age(newest_good)} old, {newest_good.verification}; {kept(good)}"


def age(backup: Backup) -> str:
    minutes = int((timezone.now() - backup.created).total_seconds() // 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def kept(good) -> str:
    totals = good.aggregate(count=Count("pk"), bytes=Sum("size_bytes"),
                            verified=Count("pk", filter=Q(verification=Backup.Verification.VERIFIED)))
    return f"{totals['count']} kept ({totals['verified']} verified), {size(totals['bytes'] or 0).replace(NBSP, ' ')}"
