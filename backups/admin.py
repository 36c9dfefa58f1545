"""Admin of the backups app. The WAL archive's admin lives in wal_admin.py; importing it registers it."""

from backups import wal_admin  # noqa: F401
