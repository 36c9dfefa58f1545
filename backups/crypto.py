"""Encryption at rest with age (https://age-encryption.org), streamed: nothing is written in clear.

The recipients file (public keys) and the identity file (private key) are named in deployment configuration
(`BACKUP_AGE_RECIPIENTS_FILE`, `BACKUP_AGE_IDENTITY_FILE`); the keys never enter the portal's database, argv
or logs. `encrypting_writer()` puts age between a producer and a file; `decrypting_reader()` gives a pipe of
clear bytes from an encrypted file, for pg_restore's standard input or a tar reader.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Protocol

from django.conf import settings

SUFFIX = ".age"
CHUNK = 1024 * 1024


class CryptoError(Exception):
    pass


class Writer(Protocol):
    def write(self, data: bytes) -> int: ...


def _key_file(setting: str) -> str:
    path = getattr(settings, setting)
    if not path:
        raise CryptoError(f"{setting} is not set in the deployment's configuration")
    if not Path(path).is_file():
        raise CryptoError(f"{setting} names {path}, which is not a readable file")
    return str(path)


class _Stderr:
    """Collects a child's standard error in a thread, so that a full pipe never blocks it."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.text = ""
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[bytes]) -> None:
        self.text = stream.read().decode("utf-8", "replace").strip()

    def join(self) -> str:
        self._thread.join(timeout=10)
        return self.text


class EncryptingWriter:
    """`write()` feeds age; a thread copies age's output to `sink`. An error on either side is raised."""

    def __init__(self, proc: subprocess.Popen[bytes], sink: Writer) -> None:
        self.proc = proc
        self.size = 0
        self.error: BaseException | None = None
        self._pump = threading.Thread(target=self._copy_out, args=(sink,), daemon=True)
        self._pump.start()

    def _copy_out(self, sink: Writer) -> None:
        assert self.proc.stdout is not None
        try:
            while chunk := self.proc.stdout.read(CHUNK):
                sink.write(chunk)
        except BaseException as exc:  # the sink failed (a full disk): stop age, report from write()/close()
            self.error = exc
            self.proc.kill()

    def write(self, data: bytes) -> int:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(data)
        except (BrokenPipeError, ValueError) as exc:
            raise self.error or CryptoError("age stopped while encrypting") from exc
        self.size += len(data)
        return len(data)

    def close(self) -> None:
        assert self.proc.stdin is not None
        with suppress(BrokenPipeError):
            self.proc.stdin.close()
        self._pump.join()
        if self.error is not None:
            raise self.error


@contextmanager
def encrypting_writer(sink: Writer) -> Iterator[EncryptingWriter]:
    """Everything written to the yielded writer reaches `sink` encrypted to the configured recipients."""
    recipients = _key_file("BACKUP_AGE_RECIPIENTS_FILE")
    proc = subprocess.Popen([settings.AGE_BIN, "--encrypt", "--recipients-file", recipients],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    stderr = _Stderr(proc.stderr)
    writer = EncryptingWriter(proc, sink)
    try:
        yield writer
        writer.close()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if proc.wait() != 0:
        raise CryptoError(f"age could not encrypt: {stderr.join() or f'exit code {proc.returncode}'}")


@contextmanager
def decrypting_reader(path: Path) -> Iterator[IO[bytes]]:
    """A pipe of `path`'s clear bytes. Raises CryptoError afterwards if age failed (wrong key, damaged file)."""
    identity = _key_file("BACKUP_AGE_IDENTITY_FILE")
    proc = subprocess.Popen([settings.AGE_BIN, "--decrypt", "--identity", identity, str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    stderr = _Stderr(proc.stderr)
    try:
        yield proc.stdout
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        proc.stdout.close()
    if proc.wait() != 0:
        raise CryptoError(f"age could not decrypt {path.name}: {stderr.join() or f'exit code {proc.returncode}'}")
