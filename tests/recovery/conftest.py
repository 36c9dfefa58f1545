"""Fixtures of the recovery tests."""

from tests.recovery.pitr_fixtures import archiving, base_policy, marked_target, recovery_root  # noqa: F401
