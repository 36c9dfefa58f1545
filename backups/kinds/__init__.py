"""The kinds of backup: logical (pg_dump), physical base backups (pg_basebackup), configuration and
application data (tar archives with a checksum manifest)."""
