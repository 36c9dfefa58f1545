"""Encryption at rest with age (https://age-encryption.org), streamed: nothing is written in clear.

The recipients file (public keys) and the identity file (private key) are named in deployment configuration
(`BACKUP_AGE_RECIPIENTS_FILE`, `BACKUP_AGE_IDENTITY_FILE`); the keys never enter the portal's database, argv
or logs. `encrypting_writer()` puts age between a producer and a file; `decrypting_reader()` gives a pipe of
clear bytes from an encrypted file, for pg_restore's standard input or a tar reader. age runs through the runner
(`portal.programs`): the job's tag, a time limit, and its group ended when the stream fails.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path
from typing import IO, Protocol

from django.conf import settings

from portal import programs

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


class EncryptingWriter:
    """`write()` feeds age; a thread copies age's output to `sink`. An error on either side is raised."""

    def __init__(self, age: programs.Running, sink: Writer) -> None:
        self.age = age
        self.size = 0
        self.error: BaseException | None = None
        self._pump = threading.Thread(target=self._copy_out, args=(sink,), daemon=True)
        self._pump.start()

    def _copy_out(self, sink: Writer) -> None:
        assert self.age.stdout is not None
        try:
            while chunk := self.age.stdout.read(CHUNK):
                sink.write(chunk)
        except BaseException as exc:  # the sink failed (a full disk): stop age, report from write()/close()
            self.error = exc
            self.age.end()

    def write(self, data: bytes) -> int:
        assert self.age.stdin is not None
        try:
            self.age.stdin.write(data)
        except (BrokenPipeError, ValueError) as exc:
            raise self.error or CryptoError("age stopped while encrypting") from exc
        self.size += len(data)
        return len(data)

    def close(self) -> None:
        assert self.age.stdin is not None
        with suppress(BrokenPipeError):
            self.age.stdin.close()
        self._pump.join()
        if self.error is not None:
            raise self.error


def _age(argv: list[str], *, stdin: int | None = None, stdout: int | None = None) -> AbstractContextManager[
        programs.Running]:
    """age through the runner, for as long as the task may run: the stream lasts as long as its producer."""
    return programs.started([settings.AGE_BIN, *argv], timeout=programs.task_timeout(), stdin=stdin, stdout=stdout)


def _finished(age: programs.Running, failure: str) -> None:
    try:
        age.wait()
    except programs.ProgramError as exc:
        raise CryptoError(f"{failure}: {exc}") from exc


@contextmanager
def encrypting_writer(sink: Writer) -> Iterator[EncryptingWriter]:
    """Everything written to the yielded writer reaches `sink` encrypted to the configured recipients."""
    recipients = _key_file("BACKUP_AGE_RECIPIENTS_FILE")
    with _age(["--encrypt", "--recipients-file", recipients], stdin=programs.PIPE, stdout=programs.PIPE) as age:
        writer = EncryptingWriter(age, sink)
        yield writer
        writer.close()
        _finished(age, "age could not encrypt")


@contextmanager
def decrypting_reader(path: Path) -> Iterator[IO[bytes]]:
    """A pipe of `path`'s clear bytes. Raises CryptoError afterwards if age failed (wrong key, damaged file)."""
    identity = _key_file("BACKUP_AGE_IDENTITY_FILE")
    with _age(["--decrypt", "--identity", identity, str(path)], stdout=programs.PIPE) as age:
        assert age.stdout is not None
        yield age.stdout
        _finished(age, f"age could not decrypt {path.name}")
