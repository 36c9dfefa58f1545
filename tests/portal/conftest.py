"""Fixtures of the portal's own tests: its log file in the test's folder."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from portal import logfiles
from portal.requestid import RequestIdFilter


@pytest.fixture
def log_file(tmp_path: Path, settings) -> Iterator[Path]:
    """This process logs to `<tmp>/log/portal.log` too, as the portal's settings make it log to LOG_FILE; and
    LOG_FILE is that file (for the rotation)."""
    path = tmp_path / "log" / "portal.log"
    settings.LOG_FILE = path
    handler = logfiles.PortalFileHandler(str(path))
    handler.setFormatter(logging.Formatter(logfiles.FORMAT))
    handler.addFilter(RequestIdFilter())
    logging.getLogger().addHandler(handler)
    try:
        yield path
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
