"""Settings, read from the environment (and an optional `.env`) with django-environ.

Every variable is documented in `.env.example`. The defaults run the embedded default: the project-local
PostgreSQL cluster started by `bin/pg-embedded`.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from portal.logfiles import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# `bin/portal up` keeps the settings it was given here (mode 0600, the installing user's): the processes it starts
# as other users get them from their environment instead.
ENV_FILE = Path(env("PORTAL_ENV_FILE", default=str(BASE_DIR / ".env")))
if os.access(ENV_FILE, os.R_OK):
    environ.Env.read_env(ENV_FILE, overwrite=False)


def _path(name: str, default: Path) -> Path:
    """A path setting; a relative value is relative to the project folder."""
    return BASE_DIR / env(name, default=str(default))


VAR_DIR = _path("PORTAL_VAR", BASE_DIR / "var")
SECRETS_DIR = VAR_DIR / "secrets"


def _secret_key() -> str:
    key = env("SECRET_KEY", default="")
    key_file = SECRETS_DIR / "secret_key"
    if not key and key_file.exists():
        key = key_file.read_text().strip()
    if not key:
        raise ImproperlyConfigured("Set SECRET_KEY, or run `bin/portal install` to create var/secrets/secret_key.")
    return key


SECRET_KEY = _secret_key()
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# --- HTTPS: on by default; the embedded default on loopback turns it off (PORTAL_HTTPS=false).
HTTPS = env.bool("PORTAL_HTTPS", default=True)
SECURE_SSL_REDIRECT = HTTPS
SECURE_REDIRECT_EXEMPT = [r"^health$"]  # load balancers probe over plain HTTP
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("BEHIND_PROXY", default=False) else None
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=8 * 3600)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_q",
    "axes",
    "portal",
    "backups",
    "recovery",
    "maintenance",
]

MIDDLEWARE = [
    "portal.requestid.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "portal.auth_audit.ActorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "portal.urls"
CSRF_FAILURE_VIEW = "portal.errors.csrf_failure"
WSGI_APPLICATION = "portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- The portal's own database. On the embedded default it is on a cluster of its own (bin/pg-embedded
# `portal`, port PORTAL_PG_PORT): the portal never manages the cluster that holds its catalog and audit trail.
PORTAL_PG_PORT = env.int("PORTAL_PG_PORT", default=5544)
PGPASSFILE = str(_path("PGPASSFILE", SECRETS_DIR / "pgpass"))
DATABASES = {"default": env.db("DATABASE_URL", default=f"postgres://portal@127.0.0.1:{PORTAL_PG_PORT}/portal")}
DATABASES["default"].setdefault("OPTIONS", {})
DATABASES["default"]["OPTIONS"].setdefault("passfile", PGPASSFILE)
DATABASES["default"]["OPTIONS"].setdefault("application_name", "paws360-portal")
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# Several checkouts may run their suites against one embedded cluster at once: one test database each.
DATABASES["default"]["TEST"] = {"NAME": env("TEST_DATABASE_NAME", default="test_portal")}
# The role that owns the audit table. The role the portal connects as may only INSERT and SELECT it
# (`manage.py audit_privileges --sql`, run by a superuser).
AUDIT_OWNER_ROLE = env("AUDIT_OWNER_ROLE", default="portal_audit")
# The embedded portal cluster's data directory and socket (superuser SQL over peer authentication).
PORTAL_PGDATA = VAR_DIR / "pg" / "portal" / "data"
PORTAL_PG_SOCKET_DIR = VAR_DIR / "pg" / "portal" / "run"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# django-q2 stats live in the cache; a database cache lets /health see the worker from any process.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "portal_cache"}}

# --- PostgreSQL programs: `{major}` is replaced by the managed server's major version.
PG_BIN_DIR = env("PG_BIN_DIR_TEMPLATE", default="/usr/lib/postgresql/{major}/bin")
PG_DEFAULT_MAJOR = env.int("PG_DEFAULT_MAJOR", default=15)
PG_STATEMENT_TIMEOUT_MS = env.int("PG_STATEMENT_TIMEOUT_MS", default=60_000)

# --- The embedded default's managed target (bin/pg-embedded `managed`), registered by `manage.py setup_embedded`.
EMBEDDED_PG_PORT = env.int("EMBEDDED_PG_PORT", default=PORTAL_PG_PORT + 1)
EMBEDDED_PGDATA = VAR_DIR / "pg" / "managed" / "data"
EMBEDDED_SOCKET_DIR = VAR_DIR / "pg" / "managed" / "run"
EMBEDDED_ADMIN_ROLE = "paws360_admin"
# The passfile the managed cluster is registered with: the worker's own when `bin/portal up` ran as root.
EMBEDDED_PASSFILE = str(_path("EMBEDDED_PASSFILE", Path(PGPASSFILE)))
# --- The scratch cluster: verification restores, logical drills and single-table scratch restores run there, never
# on the cluster the backup came from (portal/scratch.py). SCRATCH_CLUSTER names a managed cluster marked scratch; the
# embedded default's is bin/pg-embedded `scratch` (port PORTAL_PG_PORT + 2), registered by `manage.py setup_embedded`.
SCRATCH_CLUSTER = env("SCRATCH_CLUSTER", default="embedded-scratch")
SCRATCH_PG_PORT = env.int("SCRATCH_PG_PORT", default=PORTAL_PG_PORT + 2)
SCRATCH_PGDATA = VAR_DIR / "pg" / "scratch" / "data"
SCRATCH_ADMIN_ROLE = "portal_scratch"
SAMPLE_DATABASE = env("SAMPLE_DATABASE", default="paws360")
SAMPLE_SCALE = env.float("SAMPLE_SCALE", default=1.0)

BACKUP_ROOT = _path("BACKUP_ROOT", VAR_DIR / "backups")
# Encryption at rest with age: the public recipients file encrypts; the identity (private key) file decrypts
# for verification and restores. Paths only: the keys never enter the portal's database.
BACKUP_AGE_RECIPIENTS_FILE = env("BACKUP_AGE_RECIPIENTS_FILE", default="")
BACKUP_AGE_IDENTITY_FILE = env("BACKUP_AGE_IDENTITY_FILE", default="")
AGE_BIN = env("AGE_BIN", default="/usr/bin/age")
# Application files and folders the configuration and application-data backups take (absolute paths).
BACKUP_APP_CONFIG_FILES = env.list("BACKUP_APP_CONFIG_FILES", default=[])
BACKUP_APP_DATA_DIRS = env.list("BACKUP_APP_DATA_DIRS", default=[])

# --- Recovery: the application services a complete restore stops and starts (JSON; see recovery/services.py).
APP_SERVICES_FILE = env("APP_SERVICES_FILE", default="")
# The runbook's recovery time objective; each recovery and drill records its measured RTO against it.
RTO_OBJECTIVE_SECONDS = env.int("RTO_OBJECTIVE_SECONDS", default=4 * 3600)
# Point-in-time recovery builds each recovered cluster in RECOVERY_ROOT/<name> (data, socket, server log); the
# cluster's OS user must be able to reach it. Its passfile (the source's password, new port) goes to
# RECOVERY_PASSFILE_DIR (mode 0700, files 0600).
RECOVERY_ROOT = _path("RECOVERY_ROOT", VAR_DIR / "recovered")
RECOVERY_PASSFILE_DIR = _path("RECOVERY_PASSFILE_DIR", SECRETS_DIR / "recovered")
# Longest a recovered server may take to replay WAL up to its target (s).
RECOVERY_REPLAY_TIMEOUT = env.int("RECOVERY_REPLAY_TIMEOUT", default=4 * 3600)
# Restore drills: the schedule a new drill gets (weekly, Sunday 04:00, after the nightly backups).
DRILL_DEFAULT_SCHEDULE = env("DRILL_DEFAULT_SCHEDULE", default="0 4 * * 0")

# --- Continuous WAL archiving and base backups (backups/wal/walarchive.py, backups/kinds/base.py).
# Each cluster's archive folder is WAL_ARCHIVE_ROOT/<cluster name> unless configured otherwise. Beside
# BACKUP_ROOT, not inside it: a storage location may not contain a WAL archive (backups/storage/locations.py).
WAL_ARCHIVE_ROOT = _path("WAL_ARCHIVE_ROOT", VAR_DIR / "wal")
# PostgreSQL runs the archive command as the cluster's OS user: the system python3 (it starts in ~20 ms with
# -I -S, a pyenv shim takes 100 ms) and a copy of backups/wal/walarchive.py that user can read.
WAL_ARCHIVE_PYTHON = env("WAL_ARCHIVE_PYTHON", default="/usr/bin/python3")
WAL_ARCHIVE_PROGRAM = _path("WAL_ARCHIVE_PROGRAM", BASE_DIR / "backups" / "wal" / "walarchive.py")
WAL_ARCHIVE_COMPRESSION = env("WAL_ARCHIVE_COMPRESSION", default="auto")
WAL_ARCHIVE_TIMEOUT = env.int("WAL_ARCHIVE_TIMEOUT", default=60)
WAL_RETENTION_DAYS = env.int("WAL_RETENTION_DAYS", default=7)
# Archiver samples (the achieved RPO over time) are kept this long.
WAL_SAMPLE_RETENTION_DAYS = env.int("WAL_SAMPLE_RETENTION_DAYS", default=30)
# Checksum re-verification of archived segments: at most this many bytes per run (hourly).
WAL_VERIFY_BYTES_PER_RUN = env.int("WAL_VERIFY_BYTES_PER_RUN", default=2 * 1024**3)
# Alerts: the runbook's RPO objective, and WAL a replication slot may hold back before it is a warning.
RPO_OBJECTIVE_SECONDS = env.int("RPO_OBJECTIVE_SECONDS", default=15 * 60)
WAL_SLOT_WARN_BYTES = env.int("WAL_SLOT_WARN_BYTES", default=1024**3)
# Streaming (manage.py stream_wal): max_slot_wal_keep_size set on the server, so a stopped receiver's slot
# is given up rather than filling the server's disk. Empty: leave the server's setting alone.
WAL_SLOT_MAX_KEEP = env("WAL_SLOT_MAX_KEEP", default="4GB")
# Base backups: pg_basebackup's --compress, {level} and {workers} from the policy; empty for none. Measured
# on the 1 GB sample (bench/bench_basebackup.py): server-side zstd with 2 workers is the default.
BASE_BACKUP_COMPRESS = env("BASE_BACKUP_COMPRESS", default="server-zstd:level={level},workers={workers}")
# pg_basebackup --max-rate (e.g. 50M) to spare the server's disks; empty: no limit.
BASE_BACKUP_MAX_RATE = env("BASE_BACKUP_MAX_RATE", default="")

# --- Offsite copies to S3-compatible object storage. Credentials: a profile (named on the storage location)
# of this AWS shared credentials file, or the standard AWS variables; never in the portal's database.
S3_CREDENTIALS_FILE = env("S3_CREDENTIALS_FILE", default="")
S3_CONNECT_TIMEOUT = env.int("S3_CONNECT_TIMEOUT", default=10)
S3_READ_TIMEOUT = env.int("S3_READ_TIMEOUT", default=60)
S3_MAX_ATTEMPTS = env.int("S3_MAX_ATTEMPTS", default=3)
S3_ADDRESSING_STYLE = env("S3_ADDRESSING_STYLE", default="auto")
# Multipart uploads: memory stays near S3_MAX_CONCURRENCY x S3_MULTIPART_CHUNK_MB whatever the backup's size.
S3_MULTIPART_THRESHOLD_MB = env.int("S3_MULTIPART_THRESHOLD_MB", default=64)
S3_MULTIPART_CHUNK_MB = env.int("S3_MULTIPART_CHUNK_MB", default=16)
S3_MAX_CONCURRENCY = env.int("S3_MAX_CONCURRENCY", default=4)

# --- Task queue. Long destructive jobs: a task is never handed out twice (retry > timeout) nor re-run
# after a failure (max_attempts 1); missed schedules are not caught up.
TASK_TIMEOUT = env.int("TASK_TIMEOUT", default=6 * 3600)
Q_CLUSTER = {
    "name": "paws360-portal",
    "workers": env.int("Q_WORKERS", default=2),
    "timeout": TASK_TIMEOUT,
    "retry": TASK_TIMEOUT + 600,
    "max_attempts": 1,
    "catch_up": False,
    "ack_failures": True,
    "save_limit": 1000,
    "label": "Task queue",
    "poll": 1,
}
REDIS_URL = env("REDIS_URL", default="")
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# A `running` row whose worker has not reported for this long is failed by the reaper (other hosts).
JOB_STALE_SECONDS = env.int("JOB_STALE_SECONDS", default=600)

# --- /health: without credentials only {"status": "ok"|"fail"}; the details for a signed-in staff user or for
# `Authorization: Bearer <HEALTH_TOKEN>` (empty: no bearer access). Answered from stored samples: a cluster whose
# newest status sample (taken every minute by the worker) is older than STATUS_STALE_SECONDS fails the check.
HEALTH_TOKEN = env("HEALTH_TOKEN", default="")
STATUS_STALE_SECONDS = env.int("STATUS_STALE_SECONDS", default=300)

# --- The shortest interval (minutes) a schedule may have between two runs: a backup policy's cron, a restore
# drill's (a drill restores a whole backup and checks it: daily at most).
BACKUP_SCHEDULE_MIN_MINUTES = env.int("BACKUP_SCHEDULE_MIN_MINUTES", default=60)
DRILL_SCHEDULE_MIN_MINUTES = env.int("DRILL_SCHEDULE_MIN_MINUTES", default=24 * 60)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Failed logins are locked out per username and address (django-axes; audited by portal.auth_audit).
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=10)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("LOGIN_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_LOCKOUT_CALLABLE = "portal.auth_audit.lockout_response"
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False
AXES_ENABLE_ADMIN = False  # lockouts are in the audit trail; `manage.py axes_reset_username <name>` lifts one
# Behind a reverse proxy the client's address is the one it forwards.
AXES_IPWARE_META_PRECEDENCE_ORDER = (
    ["HTTP_X_FORWARDED_FOR", "REMOTE_ADDR"] if env.bool("BEHIND_PROXY", default=False) else ["REMOTE_ADDR"])
LOGIN_URL = "admin:login"
LOGIN_REDIRECT_URL = "dashboard"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
# Hashed, compressed names once `collectstatic` has run (bin/portal up); plain names before that (tests).
_STATIC_BACKEND = (
    "whitenoise.storage.CompressedManifestStaticFilesStorage"
    if (STATIC_ROOT / "staticfiles.json").exists()
    else "django.contrib.staticfiles.storage.StaticFilesStorage"
)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": _STATIC_BACKEND},
}

# --- Logs: every process (web, worker, commands) appends to LOG_FILE, each record with its request id; the
# minutely housekeeping task rotates it above LOG_MAX_BYTES, keeping LOG_BACKUPS old files (portal/logfiles.py).
LOG_FILE = _path("PORTAL_LOG_FILE", VAR_DIR / "log" / "portal.log")
LOG_MAX_BYTES = env.int("LOG_MAX_BYTES", default=10 * 1024**2)
LOG_BACKUPS = env.int("LOG_BACKUPS", default=5)
LOGGING = logging_config(LOG_FILE, env("LOG_LEVEL", default="INFO"))
