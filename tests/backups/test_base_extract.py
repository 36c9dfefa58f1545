"""The one base-backup extractor (GNU tar through the runner), on crafted tar files: a file whose sha256 is not the
catalogued one is refused and named, and nothing lands outside the destination. Its use on real base backups is in
test_basebackup.py (verification) and the point-in-time recovery tests."""

from __future__ import annotations

import io
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from backups import files
from backups.kinds import base_extract
from portal import programs
from tests.clusters import RUN_AS


def tar_of(*members: tarfile.TarInfo) -> bytes:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        tar.addfile(tarfile.TarInfo("base/PG_VERSION"), io.BytesIO(b""))
        for member in members:
            tar.addfile(member, io.BytesIO(b""))
    return data.getvalue()


def member(name: str, **attributes: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    for key, value in attributes.items():
        setattr(info, key, value)
    return info


@pytest.fixture
def reachable() -> Iterator[Path]:
    """A folder that the clusters' OS user can reach, with `outside/` (anyone may write there) and `data/` (the
    destination, that user's)."""
    root = Path(tempfile.mkdtemp(prefix="paws360-extract-"))
    root.chmod(0o755)
    (root / "outside").mkdir(mode=0o777)
    (root / "outside").chmod(0o777)
    (root / "data").mkdir(mode=0o700)
    programs.give(root / "data", RUN_AS)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def extract(root: Path, tar_bytes: bytes, expected: str | None = None) -> None:
    path = root / "base.tar"
    path.write_bytes(tar_bytes)
    base_extract.extract_file(path, root / "data", expected or files.sha256_of(path), os_user=RUN_AS)


def test_it_extracts_as_the_os_user_it_is_given(reachable: Path):
    extract(reachable, tar_of(member("global/pg_control", size=0)))
    extracted = reachable / "data" / "global" / "pg_control"
    assert extracted.is_file() and extracted.owner() == RUN_AS
    assert extracted.stat().st_mode & 0o077 == 0, "umask 077: nobody else reads a copy of the data"


def test_a_file_whose_sha256_is_not_the_catalogued_one_is_refused_and_named(reachable: Path):
    with pytest.raises(base_extract.DamagedBackup, match=r"base\.tar: sha256 [0-9a-f]{64} does not match 0{64}"):
        extract(reachable, tar_of(), expected="0" * 64)


def test_a_damaged_file_is_told_from_a_tar_error(reachable: Path):
    """Bytes flipped in a tar header: tar gives up, and the hash of the whole file still names the damage."""
    damaged = bytearray(tar_of())
    damaged[:100] = b"\xff" * 100
    path = reachable / "base.tar"
    path.write_bytes(tar_of())
    catalogued = files.sha256_of(path)
    path.write_bytes(bytes(damaged))
    with pytest.raises(base_extract.DamagedBackup, match="the backup is damaged"):
        base_extract.extract_file(path, reachable / "data", catalogued, os_user=RUN_AS)


@pytest.mark.parametrize(("crafted", "refused"), [
    (lambda outside: [member("../outside/escaped")], "Member name contains '..'"),
    (lambda outside: [member("pg_tblspc/16400", type=tarfile.SYMTYPE, linkname=str(outside)),
                      member("pg_tblspc/16400/evil")], "Not a directory"),
    (lambda outside: [member("base/1/x", type=tarfile.SYMTYPE, linkname="../../../outside"),
                      member("base/1/x/evil")], "Not a directory"),
    (lambda outside: [member("sda", type=tarfile.CHRTYPE, devmajor=8, devminor=0)], "Operation not permitted"),
    (lambda outside: [member(f"{outside}/evil")], None),  # GNU tar strips the leading /: inside the destination
], ids=["dot-dot", "through-an-absolute-link", "through-a-relative-link", "device", "absolute-name"])
def test_nothing_lands_outside_the_destination(reachable: Path, crafted, refused: str | None):
    outside = reachable / "outside"
    if refused is None:
        extract(reachable, tar_of(*crafted(outside)))
        assert (reachable / "data" / str(outside).lstrip("/") / "evil").is_file()
    else:
        with pytest.raises(base_extract.ExtractError, match=refused):
            extract(reachable, tar_of(*crafted(outside)))
    assert list(outside.iterdir()) == [] and not (reachable / "escaped").exists()
    assert (reachable / "data" / "base" / "PG_VERSION").is_file(), "the rest is extracted"
