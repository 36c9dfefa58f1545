"""Which portal this is: an id made once at install and kept in var/, and the host it runs on.

Two portals on one host (a test run beside `bin/portal up`, two checkouts) share process ids, job primary keys
and sometimes folders; the instance id tells their programs, storage markers and audit anchors apart.
`PORTAL_INSTANCE_ID` in the environment overrides the file (a test session is an instance of its own).
"""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path

from django.conf import settings

HOST = socket.gethostname()
ENV_NAME = "PORTAL_INSTANCE_ID"


def id_file() -> Path:
    return Path(settings.VAR_DIR) / "instance_id"


def instance_id() -> str:
    """This portal's id: the environment's, else var/instance_id (made on first use, never changed)."""
    if value := os.environ.get(ENV_NAME):
        return value
    path = id_file()
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return _create(path)


def _create(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_hex(6)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:  # another process made it first: theirs is the id
        return path.read_text().strip()
    with os.fdopen(fd, "w") as out:
        out.write(value + "\n")
        out.flush()
        os.fsync(out.fileno())
    return value


def label() -> str:
    """`<instance id>@<host>`: names this portal in job tags, storage markers and audit anchors."""
    return f"{instance_id()}@{HOST}"
