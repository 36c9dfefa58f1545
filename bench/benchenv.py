"""Shared set-up of the backup benchmarks: a portal database of their own and the sample database.

Import before anything touches Django: it points DATABASE_URL at `bench_portal` (created and migrated on the
embedded cluster if missing) so a benchmark never writes into the portal's real catalogue.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))
os.chdir(PROJECT)
PORTAL_DB = os.environ.get("BENCH_PORTAL_DB", "bench_portal")
PG_PORT = os.environ.get("PORTAL_PG_PORT", "5544")
os.environ["DATABASE_URL"] = f"postgres://portal@127.0.0.1:{PG_PORT}/{PORTAL_DB}"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402

from portal import embedded, pg  # noqa: E402
from portal.embedded import sample  # noqa: E402


def portal_database() -> None:
    """The benchmarks' catalogue, on the portal's own cluster (never on the managed one)."""
    from django.conf import settings

    portal_cluster = pg.Target("127.0.0.1", settings.PORTAL_PG_PORT, "portal", passfile=settings.PGPASSFILE)
    with pg.connect(portal_cluster) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [PORTAL_DB]).fetchone():
            conn.execute(f'CREATE DATABASE "{PORTAL_DB}" OWNER portal')
    call_command("migrate", verbosity=0)


def sample_database(name: str, scale: float) -> float:
    """Build the sample at `scale` unless it is there; returns the build time (0 if it was there)."""
    target = embedded.target(name)
    if sample.exists(target):
        return 0.0
    started = time.monotonic()
    sample.build(target, scale)
    return time.monotonic() - started


def libpq_env(dbname: str) -> dict[str, str]:
    return pg.child_env(embedded.target(dbname))


def bin_path(program: str) -> str:
    return pg.bin_path(program)
