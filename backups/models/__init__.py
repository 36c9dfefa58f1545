"""The backup catalog's models: storage locations, policies, backups and their copies (`catalog`), and the WAL
archive's segments and samples (`wal`). Models hold data and what can be said of it without I/O; procedures live in
the modules that use them."""

from backups.models.catalog import (
    CATALOG_MANIFEST_SUFFIX,
    MAX_RETENTION_DAYS,
    Backup,
    BackupCopy,
    BackupLease,
    BackupPolicy,
    ConfigFileVersion,
    StorageLocation,
)
from backups.models.wal import WalArchive, WalArchiveSample, WalSegment

__all__ = [
    "CATALOG_MANIFEST_SUFFIX", "MAX_RETENTION_DAYS", "Backup", "BackupCopy", "BackupLease", "BackupPolicy",
    "ConfigFileVersion", "StorageLocation", "WalArchive", "WalArchiveSample", "WalSegment",
]
