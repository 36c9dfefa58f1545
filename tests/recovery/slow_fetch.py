"""A slow archive, for real: wait a second, then fetch with the portal's walarchive.py. The qcluster of the
killed-worker test uses it as WAL_ARCHIVE_PROGRAM, so the recovered server is still replaying when the
worker is killed. Run by PostgreSQL as `python3 -I -S slow_fetch.py fetch %f %p <archive>`."""

import os
import sys
import time

time.sleep(1.0)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "backups", "wal"))
import walarchive  # noqa: E402

sys.exit(walarchive.main(sys.argv[1:]))
