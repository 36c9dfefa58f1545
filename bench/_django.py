"""Bench scripts run the portal's own code: Django set up with the test settings and, when asked, a
throwaway portal database (TEST_DATABASE_NAME with a _bench suffix), dropped at the end."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django  # noqa: E402

django.setup()


@contextmanager
def portal_database():
    from django.db import connection
    from django.test.utils import setup_test_environment

    setup_test_environment()
    connection.settings_dict["TEST"]["NAME"] = connection.settings_dict["TEST"]["NAME"] + "_bench"
    old = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        yield
    finally:
        connection.creation.destroy_test_db(old, verbosity=0)
