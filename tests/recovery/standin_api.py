"""A small real HTTP service standing in for the PAWS360 API in recovery tests.

    python standin_api.py start <port> <pidfile> [gate]   # starts it in the background, returns once it answers;
                                                          # while the file `gate` exists, it waits first
    python standin_api.py stop <pidfile>           # stops it, returns once it is gone
    python standin_api.py serve <port>             # what `start` runs
"""

from __future__ import annotations

import http.server
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"status": "UP"}' if self.path == "/health" else b"PAWS360"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def serve(port: int) -> None:
    http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()


def start(port: int, pidfile: Path, gate: Path | None = None) -> None:
    """A test holds a recovery at this step, deterministically, for as long as it keeps the gate file."""
    for _ in range(1000):
        if gate is None or not gate.exists():
            break
        time.sleep(0.1)
    proc = subprocess.Popen([sys.executable, __file__, "serve", str(port)], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pidfile.write_text(str(proc.pid))
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return
        except OSError:
            time.sleep(0.1)
    sys.exit("stand-in API did not start")


def stop(pidfile: Path) -> None:
    pid = int(pidfile.read_text())
    os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            pidfile.unlink()
            return
        time.sleep(0.1)
    sys.exit("stand-in API did not stop")


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "serve":
        serve(int(sys.argv[2]))
    elif command == "start":
        start(int(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]) if len(sys.argv) > 4 else None)
    elif command == "stop":
        stop(Path(sys.argv[2]))
