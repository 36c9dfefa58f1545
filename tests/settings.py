"""The portal's settings, for tests: plain HTTP to the test client and the live server."""

from pathlib import Path

from portal.settings import *  # noqa: F403

SECURE_SSL_REDIRECT = False
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
SECURE_HSTS_SECONDS = 0
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins; test users only

# The suite's log (its workers' too: they inherit DJANGO_SETTINGS_MODULE), apart from a running portal's.
LOG_FILE = Path(env("PORTAL_LOG_FILE", default=str(VAR_DIR / "log" / "tests.log")))  # noqa: F405
LOGGING = logging_config(LOG_FILE, "INFO")  # noqa: F405

# The scratch cluster verification restores, drills and single-table restores run on: the embedded one
# (bin/pg-embedded `scratch`), registered by the `embedded_scratch` fixture (tests/conftest.py).
SCRATCH_CLUSTER = "embedded-scratch"
