"""One backup through the portal's own path, in a process of its own, as the worker runs it: prints JSON with
its wall time, the verification's, and this process's peak resident memory (the data streams through it).

    python bench/portal_run.py <policy id> [--verify]
    python bench/portal_run.py --verify-only <backup id>
"""

from __future__ import annotations

import json
import resource
import sys
import time

import benchenv  # noqa: F401  (Django on the benchmark's own portal database)

from backups import pipeline, runs, verify
from backups.models import Backup, BackupPolicy
from portal.jobs import reporting, run_job


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(policy_id: int, with_verify: bool) -> dict[str, object]:
    policy = BackupPolicy.objects.get(pk=policy_id)
    backup = runs.create(policy, actor="bench", via="bench")
    rss_before = peak_rss_mb()
    started = time.monotonic()
    run_job(Backup, backup.pk, pipeline.taker(policy.kind))  # the task's work, without the verification
    took = time.monotonic() - started
    backup.refresh_from_db()
    result: dict[str, object] = {"backup": backup.pk, "status": backup.status, "error": backup.error,
                                 "seconds": took, "size": backup.size_bytes, "path": str(backup.local_path),
                                 "rss_before_mb": rss_before, "rss_peak_mb": peak_rss_mb()}
    if with_verify:
        result |= verify_again(backup.pk)
    return result


def verify_again(backup_id: int) -> dict[str, object]:
    backup = Backup.objects.get(pk=backup_id)
    started = time.monotonic()
    with reporting(backup) as reporter:
        verified = verify.verify(backup, reporter, actor="bench")
    return {"verified": verified, "verify_seconds": time.monotonic() - started,
            "rss_peak_with_verify_mb": peak_rss_mb(), "path": str(backup.local_path)}


if __name__ == "__main__":
    if sys.argv[1] == "--verify-only":
        print(json.dumps(verify_again(int(sys.argv[2]))))
    else:
        print(json.dumps(main(int(sys.argv[1]), "--verify" in sys.argv[2:])))
