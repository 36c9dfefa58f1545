"""Downloading a backup: DBA only (`portal.download_backup`), an audit event either way.

A file backup is sent as it is stored (an encrypted backup stays encrypted) with its sha256 in a
`Repr-Digest` header. A folder backup (pg_dump's directory format) is streamed as a tar built on the fly,
in bounded memory, while a lease keeps retention from deleting the folder under the stream. An expired
backup is refused (410 Gone).
"""

from __future__ import annotations

import base64
import tarfile
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET

from backups import files, leases
from backups.models import Backup
from portal import audit

PERMISSION = "portal.download_backup"
BLOCK = tarfile.BLOCKSIZE


@staff_member_required
@require_GET
def download(request: HttpRequest, pk: int) -> HttpResponse:
    backup = get_object_or_404(Backup.objects.select_related("policy"), pk=pk)

    def record(outcome: str, **details: object) -> None:
        audit.record("backup.download", actor=request.user, obj=backup, target=str(backup), outcome=outcome,
                     details=details)

    if not request.user.has_perm(PERMISSION):
        record(audit.Outcome.DENIED, reason=f"needs {PERMISSION}")
        raise PermissionDenied("Only a DBA may download backups.")
    refusal = _refusal(backup)
    if refusal:
        record(audit.Outcome.FAILURE, reason=refusal)
        return HttpResponse(refusal, status=410 if backup.expired_at else 404, content_type="text/plain")
    path = backup.local_path
    if path.is_dir():
        try:
            response = _tar_response(backup, path)
        except leases.BackupExpired as exc:
            record(audit.Outcome.FAILURE, reason=str(exc))
            return HttpResponse(str(exc), status=410, content_type="text/plain")
        record(audit.Outcome.SUCCESS, path=backup.path, size_bytes=backup.size_bytes, folder=True)
        return response
    record(audit.Outcome.SUCCESS, path=backup.path, size_bytes=backup.size_bytes, sha256=backup.sha256)
    # An open file survives its deletion by retention: no lease needed while it is sent.
    response = FileResponse(open(path, "rb"), as_attachment=True, filename=backup.name or path.name)  # noqa: SIM115
    if backup.sha256:
        response["Repr-Digest"] = f"sha-256=:{base64.b64encode(bytes.fromhex(backup.sha256)).decode()}:"
    return response


def _refusal(backup: Backup) -> str:
    if backup.expired_at:
        return f"{backup} was expired by retention on {backup.expired_at:%Y-%m-%d %H:%M %Z}: it is no longer kept."
    if backup.status != Backup.Status.SUCCEEDED:
        return f"{backup} is not a succeeded backup ({backup.get_status_display().lower()}): there is nothing to send."
    if not backup.path or not backup.local_path.exists():
        return f"{backup}: its file is missing from the primary location."
    return ""


def _tar_response(backup: Backup, folder: Path) -> StreamingHttpResponse:
    members = tar_members(folder)
    response = StreamingHttpResponse(LeasedStream(backup, tar_stream(members)), content_type="application/x-tar")
    response["Content-Length"] = str(tar_size(members))
    response["Content-Disposition"] = f'attachment; filename="{(backup.name or folder.name)}.tar"'
    return response


def tar_members(folder: Path) -> list[tuple[Path, tarfile.TarInfo]]:
    members = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        info = tarfile.TarInfo(f"{folder.name}/{path.relative_to(folder).as_posix()}")
        stat = path.stat()
        info.size, info.mtime, info.mode = stat.st_size, int(stat.st_mtime), 0o640
        members.append((path, info))
    return members


def _header(info: tarfile.TarInfo) -> bytes:
    return info.tobuf(format=tarfile.PAX_FORMAT)


def _padding(size: int, unit: int = BLOCK) -> int:
    return -size % unit


def tar_size(members: list[tuple[Path, tarfile.TarInfo]]) -> int:
    body = sum(len(_header(info)) + info.size + _padding(info.size) for _, info in members) + 2 * BLOCK
    return body + _padding(body, tarfile.RECORDSIZE)


def tar_stream(members: list[tuple[Path, tarfile.TarInfo]]) -> Iterator[bytes]:
    """A POSIX tar of `members`, one chunk at a time: each header, the file's bytes, zero padding."""
    sent = 0
    for path, info in members:
        header = _header(info)
        yield header
        left = info.size
        with open(path, "rb") as file:
            while left > 0:
                chunk = file.read(min(files.CHUNK, left))
                if not chunk:
                    raise OSError(f"{path} is shorter than when the download started")
                left -= len(chunk)
                yield chunk
        yield b"\0" * _padding(info.size)
        sent += len(header) + info.size + _padding(info.size)
    end = 2 * BLOCK
    yield b"\0" * (end + _padding(sent + end, tarfile.RECORDSIZE))


class LeasedStream:
    """Chunks sent under a lease taken now; Django calls `close()` when the response ends, however it ends."""

    def __init__(self, backup: Backup, chunks: Iterator[bytes]) -> None:
        self._stack = ExitStack()
        self._stack.enter_context(leases.hold(backup, "download"))
        self._chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks

    def close(self) -> None:
        self._stack.close()
