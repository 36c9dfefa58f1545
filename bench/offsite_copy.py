"""Offsite copies: the portal's path against the raw tool, side by side in one run, with peak memory.

    PORTAL_VAR=var .venv/bin/python bench/offsite_copy.py [--size-mb 1024] [--workdir /tmp]

Local: `LocalStorage.put` (temporary name, streaming sha256, fsync, rename, fsync dir) and the read-back check
the copy makes, against `cp` + `sync FILE`. S3 (a local moto_server): `S3Storage.put` (sha256 of the source,
multipart upload with SHA256 part checksums) and the read-back check, against boto3's `upload_file` with
the same transfer settings. The file is random bytes: a compressed dump does not compress further either.
Memory is the growth of this process's peak RSS during each step (VmHWM, reset before each step).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
import django

django.setup()

from django.conf import settings  # noqa: E402

from backups import files  # noqa: E402
from backups.models import StorageLocation  # noqa: E402
from backups.storage import backends, locations  # noqa: E402

MB = 1024 * 1024


def rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    raise RuntimeError(field)


def measure(label: str, work: Callable[[], object]) -> float:
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS to the current RSS
    before = rss_kb("VmRSS:")
    started = time.monotonic()
    work()
    seconds = time.monotonic() - started
    grew = (rss_kb("VmHWM:") - before) / 1024
    print(f"  {label:<44} {seconds:7.2f} s   peak RSS +{grew:6.1f} MB", flush=True)
    return seconds


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--workdir", default=tempfile.gettempdir())
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-offsite-", dir=args.workdir))
    server = None
    try:
        source = work / "source.dump"
        with open(source, "wb") as out:
            for _ in range(args.size_mb):
                out.write(os.urandom(MB))
        sha = files.sha256_of(source)
        print(f"{args.size_mb} MB of random bytes; process RSS at start {rss_kb('VmRSS:') / 1024:.0f} MB")

        print("Local copy to a second folder")
        second = StorageLocation(name="bench", path=str(work / "second"))
        locations.write_marker(second)  # a location outside the catalog: no audit event
        local = backends.for_location(second)
        (work / "raw").mkdir()
        raw_s = measure("raw: cp + sync FILE", lambda: (
            subprocess.run(["cp", str(source), str(work / "raw" / "a.dump")], check=True),
            subprocess.run(["sync", str(work / "raw" / "a.dump")], check=True)))
        put_s = measure("portal: put (hash, fsync, rename)", lambda: local.put(source, "a.dump", sha256=sha))
        check_s = measure("portal: read-back check", lambda: local.check("a.dump"))
        print(f"  ratio put/raw {put_s / raw_s:.2f}; put+check/raw {(put_s + check_s) / raw_s:.2f}")

        print("S3 upload to a local moto_server")
        port = free_port()
        server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p",
                                   str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(3)
        credentials = work / "aws-credentials"
        credentials.write_text("[bench]\naws_access_key_id = bench\naws_secret_access_key = bench\n")
        settings.S3_CREDENTIALS_FILE = str(credentials)
        location = StorageLocation(name="s3", kind="s3", endpoint_url=f"http://127.0.0.1:{port}",
                                   bucket="bench-portal", region="us-east-1", credentials_profile="bench")
        client = backends.s3_client(location)  # the same client settings for both
        client.create_bucket(Bucket="bench-raw")
        client.create_bucket(Bucket="bench-portal")
        s3 = backends.for_location(location)
        raw_s = measure("raw: boto3 upload_file", lambda: client.upload_file(
            str(source), "bench-raw", "a.dump", Config=backends.transfer_config()))
        put_s = measure("portal: put (sha256 + upload)", lambda: s3.put(source, "a.dump", sha256=sha))
        check_s = measure("portal: read-back check", lambda: s3.check("a.dump"))
        print(f"  ratio put/raw {put_s / raw_s:.2f}; put+check/raw {(put_s + check_s) / raw_s:.2f}")
    finally:
        if server is not None:
            server.terminate()
            server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
