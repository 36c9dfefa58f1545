"""Continuous WAL archiving: the archive command, the catalog of archived segments, status and RPO,
the recoverable window, set-up, streaming, retention and the admin pages."""
