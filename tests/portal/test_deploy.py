"""Production settings pass Django's deployment checklist."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]


def test_check_deploy_is_clean_with_production_settings():
    env = {
        **{k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"},  # set by the e2e tests
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "SECRET_KEY": "a-production-key-" + "x9Q7z!" * 10,
        "DEBUG": "false",
        "PORTAL_HTTPS": "true",
        "ALLOWED_HOSTS": "dbops.paws360.example.edu",
    }
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                            cwd=PROJECT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
