"""Configuration backups: what it takes to rebuild a server's and the application's configuration.

For a local cluster, its configuration files (postgresql.conf, pg_hba.conf, pg_ident.conf,
postgresql.auto.conf), wherever the server says they are; for any cluster, `pg_settings` and
`pg_hba_file_rules` as read through SQL; and the application's configuration files named in deployment
configuration (`BACKUP_APP_CONFIG_FILES`). Stored as a (possibly encrypted) tar in the catalogue, and each
source as a `ConfigFileVersion`, so the admin can show what changed between any two versions.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from django.conf import settings

from backups import crypto
from backups.kinds import archive
from backups.kinds.logical import BackupError, backup_stamp, connect_or_fail
from backups.models import Backup, ConfigFileVersion
from portal.jobs import Reporter

SERVER_FILES = {  # source name -> the setting that says where the server reads it
    "postgresql.conf": "config_file",
    "pg_hba.conf": "hba_file",
    "pg_ident.conf": "ident_file",
}
AUTO_CONF = "postgresql.auto.conf"

SETTINGS_SQL = """
SELECT name, setting, coalesce(unit, ''), source, pending_restart FROM pg_settings
WHERE source NOT IN ('client', 'session') ORDER BY name
"""
HBA_SQL = """
SELECT line_number, type, database, user_name, address, netmask, auth_method, options, error
FROM pg_hba_file_rules ORDER BY line_number
"""


@dataclass
class Source:
    name: str
    origin: str
    data: bytes

    @property
    def arcname(self) -> str:
        if self.name.startswith("app:"):
            return "app/" + self.name.removeprefix("app:").lstrip("/")
        return f"postgresql/{self.name}" + ("" if "." in self.name else ".txt")


def read_server_file(conn: psycopg.Connection, path: str) -> bytes:
    """A local server file: read directly (the worker runs as root or the cluster's OS user), or through
    pg_read_binary_file() where the file system says no."""
    try:
        return Path(path).read_bytes()
    except PermissionError:
        return conn.execute("SELECT pg_read_binary_file(%s)", [path]).fetchone()[0]


def server_files(conn: psycopg.Connection) -> list[Source]:
    sources = []
    for name, setting in SERVER_FILES.items():
        path = conn.execute(f"SHOW {setting}").fetchone()[0]
        sources.append(Source(name, path, read_server_file(conn, path)))
    data_directory = conn.execute("SHOW data_directory").fetchone()[0]
    auto = str(Path(data_directory) / AUTO_CONF)
    sources.append(Source(AUTO_CONF, auto, read_server_file(conn, auto)))
    return sources


def sql_views(conn: psycopg.Connection, cluster_name: str) -> list[Source]:
    settings_lines = [f"# pg_settings of {cluster_name}, except values set by the client or session\n"]
    for name, setting, unit, source, pending in conn.execute(SETTINGS_SQL).fetchall():
        flag = "  [pending restart]" if pending else ""
        settings_lines.append(f"{name} = '{setting}'{' ' + unit if unit else ''}  # {source}{flag}\n")
    hba_lines = [f"# pg_hba_file_rules of {cluster_name}: line type database user address netmask method options\n"]
    for row in conn.execute(HBA_SQL).fetchall():
        hba_lines.append(" ".join("-" if v is None else str(v) for v in row) + "\n")
    return [Source("pg_settings", "SQL: pg_settings", "".join(settings_lines).encode()),
            Source("pg_hba_file_rules", "SQL: pg_hba_file_rules", "".join(hba_lines).encode())]


def app_files() -> list[Source]:
    sources = []
    for configured in settings.BACKUP_APP_CONFIG_FILES:
        path = Path(configured)
        if not path.is_absolute() or not path.is_file():
            raise BackupError(f"BACKUP_APP_CONFIG_FILES names {configured}, which is not an absolute path of a file")
        sources.append(Source(f"app:{path}", str(path), path.read_bytes()))
    return sources


def collect(backup: Backup, reporter: Reporter) -> list[Source]:
    cluster = backup.cluster
    with connect_or_fail(cluster.target(), purpose="config-backup") as conn:
        backup.server_version = conn.execute("SHOW server_version").fetchone()[0].split()[0]
        sources = server_files(conn) if cluster.is_local else []
        sources += sql_views(conn, cluster.name)
    sources += app_files()
    for source in sources:
        reporter.log(f"read {source.name} ({len(source.data)} bytes) from {source.origin}")
    return sources


def record_versions(backup: Backup, sources: list[Source]) -> int:
    """One ConfigFileVersion per source; returns how many changed since the previous version. The content is
    kept in the portal's database for the admin's diffs, except for an encrypted backup (application
    configuration may hold secrets): then only its checksum and size, and the encrypted archive."""
    changed = 0
    for source in sources:
        sha = hashlib.sha256(source.data).hexdigest()
        previous = (ConfigFileVersion.objects.filter(source=source.name, backup__cluster=backup.cluster)
                    .exclude(backup=backup).order_by("-created").values_list("sha256", flat=True).first())
        is_changed = previous != sha
        changed += is_changed
        ConfigFileVersion.objects.create(backup=backup, source=source.name, origin=source.origin,
                                         content="" if backup.encrypted else source.data.decode("utf-8", "replace"),
                                         sha256=sha,
                                         size_bytes=len(source.data), changed=is_changed)
    return changed


def take_config_backup(backup: Backup, reporter: Reporter) -> None:
    started = time.monotonic()
    stamp = backup_stamp(backup)
    sources = collect(backup, reporter)
    backup.encrypted = backup.policy.encrypt
    backup.format = "tar"
    backup.name = f"{backup.cluster.name}_config_{stamp}.tar" + (crypto.SUFFIX if backup.encrypted else "")
    backup.path = str(Path("config") / backup.cluster.name / backup.name)
    backup.estimated_bytes = sum(len(s.data) for s in sources)
    backup.save(update_fields=["server_version", "encrypted", "format", "name", "path", "estimated_bytes"])
    members = [archive.Member(s.arcname, data=s.data) for s in sources]
    result = archive.write_archive(backup.local_path, members, encrypt=backup.encrypted)
    backup.size_bytes, backup.sha256 = result.written.size, result.written.sha256
    backup.manifest = {"files": result.files, "sources": {s.name: s.arcname for s in sources}}
    backup.backup_seconds = time.monotonic() - started
    backup.save(update_fields=["size_bytes", "sha256", "manifest", "backup_seconds"])
    changed = record_versions(backup, sources)
    reporter.progress(backup.size_bytes, backup.size_bytes, "stored")
    reporter.log(f"stored {len(sources)} configuration sources ({changed} changed since the last backup): "
                 f"{backup.size_bytes} bytes, sha256 {backup.sha256}")
