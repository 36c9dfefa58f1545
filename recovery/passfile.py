"""Credentials of a recovered cluster: the source's own role and password, on the new port.

A physical copy keeps the source's roles and their password hashes, so the password that works is the
source's. It is copied, as written, from the source's passfile line into a passfile of the recovered
cluster's own (mode 0600 in a 0700 folder): never into the portal's database, argv or a log.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings

from portal.models import ManagedCluster


class CredentialsError(Exception):
    pass


def split_fields(line: str) -> list[str]:
    """A passfile line's five fields, still escaped (\\: and \\\\ as written)."""
    fields, current, escaped = [], "", False
    for char in line:
        if escaped:
            current += "\\" + char
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ":" and len(fields) < 4:
            fields.append(current)
            current = ""
        else:
            current += char
    fields.append(current)
    return fields


def unescape(field: str) -> str:
    return field.replace("\\:", ":").replace("\\\\", "\\")


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def password_field(cluster: ManagedCluster) -> str:
    """The escaped password of the source's first matching passfile line (libpq's own matching order)."""
    if cluster.service:
        raise CredentialsError(f"{cluster} connects through the pg_service entry {cluster.service!r}: the portal "
                               "cannot derive the recovered cluster's credentials from it; give it a passfile")
    if not cluster.passfile:
        raise CredentialsError(f"{cluster} has no passfile: the recovered cluster's password cannot be set up")
    try:
        lines = Path(cluster.passfile).read_text().splitlines()
    except OSError as exc:
        raise CredentialsError(f"cannot read the passfile of {cluster}: {exc.strerror}") from exc
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = split_fields(line)
        if len(fields) != 5:
            continue
        host, port, _db, user = (unescape(f) for f in fields[:4])
        if host in ("*", cluster.host) and port in ("*", str(cluster.port)) and user in ("*", cluster.role):
            return fields[4]
    raise CredentialsError(f"the passfile of {cluster} has no line for {cluster.host}:{cluster.port} and role "
                           f"{cluster.role}")


def path_for(name: str) -> Path:
    return Path(settings.RECOVERY_PASSFILE_DIR) / f"{name}.pgpass"


def write(source: ManagedCluster, name: str, host: str, port: int) -> Path:
    """The recovered cluster's passfile: the source's password for its role at host:port."""
    password = password_field(source)
    folder = Path(settings.RECOVERY_PASSFILE_DIR)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    final = path_for(name)
    temp = final.with_name(f".{final.name}.{os.getpid()}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, f"{escape(host)}:{port}:*:{escape(source.role)}:{password}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, final)
    return final


def remove(name: str) -> None:
    path_for(name).unlink(missing_ok=True)
