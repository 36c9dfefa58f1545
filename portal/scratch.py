"""The scratch cluster: where restores that only prove something run.

Verification restores, logical drills and single-table scratch restores restore into a database of their own on a
scratch cluster, never on the cluster the backup came from: production sees neither their load nor their WAL. A
scratch cluster is a managed cluster marked `scratch` (never backed up or recovered itself, its databases never
production); the one used is named by SCRATCH_CLUSTER (the embedded default's is bin/pg-embedded `scratch`,
registered by `manage.py setup_embedded`).

A restore is refused (`Unavailable`, with the reason) when that cluster is not registered, not marked scratch,
holds production databases, is unreachable, is the very server the backup came from, or runs an older major version
than the backup's server (pg_restore can read older dumps, a server cannot take newer ones).
"""

from __future__ import annotations

import re
import secrets

from django.conf import settings
from psycopg import sql

from portal import instance, pg, targets
from portal.models import ManagedCluster, ManagedDatabase

PROTECTED = frozenset({"postgres", "template0", "template1"})


class Unavailable(Exception):
    """No scratch cluster can take this restore; the message says why and what would."""


def major_of(version: str) -> int | None:
    """The major version of a `server_version` (`15.8`, `16beta1`); None when it is not recorded."""
    match = re.match(r"\d+", version or "")
    return int(match.group()) if match else None


def refusal(cluster: ManagedCluster | None, source: ManagedCluster, server_version: str) -> str:
    """Why `cluster` (the one SCRATCH_CLUSTER names; None when none is registered) cannot take a restore of a backup
    of `source` taken from a server of `server_version` (its source's major version when not recorded), from its
    stored status; "" when it can. No connection is made: `choose` samples the cluster first."""
    name = settings.SCRATCH_CLUSTER
    major = major_of(server_version) or source.major
    if cluster is None:
        return (f"no scratch cluster is registered as '{name}' (SCRATCH_CLUSTER): verification restores, drills and "
                "single-table restores run on a scratch cluster, never on production; register one (a managed cluster "
                "marked scratch) or run `manage.py setup_embedded` for the embedded default's")
    if not cluster.scratch:
        return (f"the cluster '{name}' that SCRATCH_CLUSTER names is not marked as a scratch cluster: a restore that "
                "only proves something never runs on a cluster that may be production")
    production = cluster.databases.filter(environment=ManagedDatabase.Environment.PRODUCTION)
    if production.exists():
        return (f"the scratch cluster '{name}' has production databases registered "
                f"({', '.join(production.values_list('name', flat=True))}): a scratch cluster's never are")
    if cluster.pk == source.pk or (cluster.system_identifier and cluster.system_identifier == source.system_identifier):
        return f"the scratch cluster '{name}' is the server the backup came from ({source})"
    if not cluster.reachable:
        return f"the scratch cluster '{name}' is not reachable: {cluster.status_error or 'not checked yet'}"
    if major is not None and (cluster.major is None or cluster.major < major):
        return (f"the scratch cluster '{name}' runs PostgreSQL {cluster.major or 'of an unknown version'}, older than "
                f"the backup's server ({major}): a restore needs a scratch cluster of version {major} or later")
    return ""


def named() -> ManagedCluster | None:
    return ManagedCluster.objects.filter(name=settings.SCRATCH_CLUSTER).first()


def choose(source: ManagedCluster, server_version: str) -> ManagedCluster:
    """The scratch cluster for a restore of a backup of `source` taken from a server of `server_version` (its
    source's major version when not recorded), its status sampled now; raises Unavailable with the reason."""
    cluster = named()
    if cluster is not None and cluster.scratch:
        targets.refresh(cluster)
    if reason := refusal(cluster, source, server_version):
        raise Unavailable(reason)
    assert cluster is not None
    return cluster


def database_name(prefix: str, key: object) -> str:
    """A new scratch database's name: `<prefix><this portal>_<key>_<8 hex>`. The portal's id tells two portals'
    databases apart on a scratch cluster they share; no quoting needed."""
    return f"{key_prefix(prefix, key)}{secrets.token_hex(4)}"


def key_prefix(prefix: str, key: object) -> str:
    """What every scratch database of `key` made by this portal starts with (`database_name`)."""
    portal = re.sub(r"[^a-z0-9]", "", instance.instance_id().lower())[:12]
    return f"{prefix}{portal}_{key}_"


def create_database(cluster: ManagedCluster, name: str) -> pg.Target:
    """The empty database `name` on the scratch cluster (from template0), as the target to restore into."""
    with pg.connect(cluster.target(), purpose="scratch") as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
    return cluster.target(name)


def drop_database(cluster: ManagedCluster, name: str) -> None:
    """Drop a scratch database (ending its sessions); never on a cluster that is not scratch."""
    if not cluster.scratch or name in PROTECTED:
        raise ValueError(f"refusing to drop {name!r} on {cluster}: not a scratch database")
    with pg.connect(cluster.target(), purpose="scratch") as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def drop_matching(prefix: str, pattern: re.Pattern[str]) -> list[str]:
    """Drop, on every registered scratch cluster, the databases whose name starts with `prefix` and matches
    `pattern` whole (what a dead run left); their names."""
    dropped = []
    for cluster in ManagedCluster.objects.filter(scratch=True):
        with pg.connect(cluster.target(), purpose="scratch") as conn:
            names = [name for (name,) in conn.execute("SELECT datname FROM pg_database WHERE starts_with(datname, %s)",
                                                      [prefix]) if pattern.fullmatch(name)]
        for name in names:
            drop_database(cluster, name)
        dropped += names
    return dropped
