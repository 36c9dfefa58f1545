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
