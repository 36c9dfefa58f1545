"""PostgreSQL's archive_command and restore_command for the portal's WAL archive.

    archive_command = '/usr/bin/python3 -I -S .../walarchive.py push %p %f /archive/dir [--compress=zstd|auto]'
    restore_command = '/usr/bin/python3 -I -S .../walarchive.py fetch %f %p /archive/dir'

A standalone program: the standard library only, no Django, no portal database, so archiving goes on when the portal
is down. Run with the system python3 and `-I -S` it starts in about 20 ms.

push: the segment is copied (or compressed with zstd: every file, or with `auto` only the segments a switch ended
early, whose unwritten rest compresses to almost nothing) to a temporary name in the archive folder, fsynced, linked
to its final name (a link never replaces an existing file), and the folder fsynced. A segment already in the archive
with the same content is success; with different content, failure, and the archived file is left as it is. A WAL
segment whose long page header names another cluster (system identifier), another timeline or another position than
its file name is refused. Every failure exits 1: PostgreSQL keeps the segment and retries.

fetch: exit 1 when the file is not in the archive (PostgreSQL asks for files that do not exist, and ends recovery at
the first missing segment). Any other trouble — the archive folder unreadable or not the archive (no SYSTEM_IDENTIFIER
marker: an unmounted folder), a corrupt compressed segment, a segment of another cluster, a failed write into pg_wal —
exits 255: an exit status above 125 makes PostgreSQL's startup process stop with FATAL instead of ending recovery
early at what looks like the end of the archive.

The archive folder holds SYSTEM_IDENTIFIER (written by `manage.py configure_archiving`), and the files under
PostgreSQL's own names, with `.zst` appended when compressed. zstd frames carry a checksum of their content, so a
damaged compressed segment fails to decompress.
"""

from __future__ import annotations

# Imports are kept to the fast ones: pathlib, re, typing and subprocess would each add 6-14 ms to every
# start, so paths are strings (os.path) and zstd is started with os.posix_spawn.
import os
import struct
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    PathLike = str | os.PathLike[str]

MARKER = "SYSTEM_IDENTIFIER"
ZSTD_SUFFIX = ".zst"
TEMP_PREFIX = ".incoming-"
CHUNK = 1024 * 1024
ZSTD_CANDIDATES = ("/usr/bin/zstd", "/usr/local/bin/zstd", "/bin/zstd")
ZSTD_LEVEL = ("-1", "-T2")
WAL_PAGE = 8192
SIGKILL = 9  # the signal module costs milliseconds at every start

EXIT_FAILED = 1
EXIT_STOP_RECOVERY = 255

HEX = frozenset("0123456789ABCDEF")

# XLogLongPageHeaderData: magic, info, timeline, page address, remaining length, (padding), system
# identifier, segment size, block size.
LONG_HEADER = struct.Struct("<HHIQI4xQII")
XLP_LONG_HEADER = 0x0002


class ArchiveError(Exception):
    """Refused or failed; the message goes to PostgreSQL's server log."""


def _hex(text: str, length: int) -> bool:
    return len(text) == length and set(text) <= HEX


def kind_of(name: str) -> str:
    """segment, partial, history or backup (a backup history file); '' for anything else."""
    parts = name.split(".")
    if len(parts) == 1 and _hex(name, 24):
        return "segment"
    if len(parts) == 2 and parts[1] == "partial" and _hex(parts[0], 24):
        return "partial"
    if len(parts) == 2 and parts[1] == "history" and _hex(parts[0], 8):
        return "history"
    if len(parts) == 3 and parts[2] == "backup" and _hex(parts[0], 24) and _hex(parts[1], 8):
        return "backup"
    return ""


def segments_per_xlogid(segment_size: int) -> int:
    return 0x1_0000_0000 // segment_size


def parse_segment(name: str, segment_size: int) -> tuple[int, int]:
    """(timeline, segment number) of a segment name such as 000000010000000A000000FF."""
    timeline, log, seg = int(name[0:8], 16), int(name[8:16], 16), int(name[16:24], 16)
    return timeline, log * segments_per_xlogid(segment_size) + seg


def segment_name(timeline: int, segno: int, segment_size: int) -> str:
    per = segments_per_xlogid(segment_size)
    return f"{timeline:08X}{segno // per:08X}{segno % per:08X}"


def parse_lsn(lsn: str) -> int:
    high, low = lsn.split("/")
    return (int(high, 16) << 32) | int(low, 16)


def format_lsn(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def read_long_header(path: PathLike) -> dict[str, int]:
    """The long page header at the start of a WAL segment."""
    with open(path, "rb") as file:
        head = file.read(LONG_HEADER.size)
    if len(head) < LONG_HEADER.size:
        raise ArchiveError(f"{path}: too short to be a WAL segment")
    magic, info, timeline, pageaddr, _rem, sysid, seg_size, blcksz = LONG_HEADER.unpack(head)
    if not info & XLP_LONG_HEADER:
        raise ArchiveError(f"{path}: no long page header (info {info:#x}): not the start of a WAL segment")
    return {"magic": magic, "timeline": timeline, "pageaddr": pageaddr, "system_identifier": sysid,
            "segment_size": seg_size, "block_size": blcksz}


def archive_system_identifier(archive: PathLike) -> int:
    """The cluster this archive belongs to. A missing marker means a folder that is not the archive."""
    try:
        with open(os.path.join(archive, MARKER)) as marker:
            return int(marker.read().split()[0])
    except FileNotFoundError:
        raise ArchiveError(f"{archive}: no {MARKER} file: not an initialised WAL archive (not mounted?); "
                           "run manage.py configure_archiving") from None
    except (OSError, ValueError, IndexError) as exc:
        raise ArchiveError(f"{archive}/{MARKER}: unreadable: {exc}") from exc


def check_segment(source: PathLike, name: str, system_identifier: int) -> None:
    """Refuse a segment of another cluster, or whose header disagrees with its name or size."""
    header = read_long_header(source)
    if header["system_identifier"] != system_identifier:
        raise ArchiveError(f"{name}: belongs to database system {header['system_identifier']}, "
                           f"this archive to {system_identifier}: refused")
    seg_size = header["segment_size"]
    if seg_size <= 0 or seg_size & (seg_size - 1):
        raise ArchiveError(f"{name}: implausible segment size {seg_size} in its header")
    timeline, segno = parse_segment(name[:24], seg_size)
    # The first segment of a new timeline begins as a copy of the old timeline's up to the switch: its first page
    # still says the old timeline (a promoted point-in-time recovery archives exactly such a segment).
    if not 0 < header["timeline"] <= timeline or header["pageaddr"] != segno * seg_size:
        raise ArchiveError(f"{name}: its header says timeline {header['timeline']} at "
                           f"{format_lsn(header['pageaddr'])}, its name timeline {timeline} at "
                           f"{format_lsn(segno * seg_size)}: refused")
    size = os.stat(source).st_size
    if kind_of(name) == "segment" and size != seg_size:
        raise ArchiveError(f"{name}: {size} bytes, a segment has {seg_size}")


def zstd_program() -> str:
    for candidate in ZSTD_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    raise ArchiveError("zstd not found (install Debian's zstd package)")


def fsync_path(path: PathLike, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def stored(archive: PathLike, name: str) -> str | None:
    """The archived file for `name`, compressed or not, if there is one."""
    for candidate in (os.path.join(archive, name), os.path.join(archive, name + ZSTD_SUFFIX)):
        if os.path.exists(candidate):
            return candidate
    return None


class Child:
    """A program started with os.posix_spawn (subprocess costs 13-15 ms of imports at every start), its
    stderr kept in a pipe for the error message."""

    def __init__(self, argv: list[str], stdout: int, stdin: int | None = None) -> None:
        err_read, err_write = os.pipe()
        actions = [(os.POSIX_SPAWN_DUP2, stdout, 1), (os.POSIX_SPAWN_DUP2, err_write, 2)]
        if stdin is not None:
            actions.append((os.POSIX_SPAWN_DUP2, stdin, 0))
        try:
            self.pid = os.posix_spawn(argv[0], argv, {}, file_actions=actions)
        finally:
            os.close(err_write)
        self.stderr = os.fdopen(err_read, "rb")

    def finish(self) -> tuple[int, str]:
        """Wait for it to exit: its exit code and what it wrote to stderr."""
        with self.stderr:
            message = self.stderr.read().decode(errors="replace").strip()
        return os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1]), message

    def kill(self) -> None:
        os.kill(self.pid, SIGKILL)
        self.finish()


def run_zstd(args: list[str], stdout: int, stdin: int | None = None) -> None:
    code, message = Child([zstd_program(), "-q", *args], stdout, stdin).finish()
    if code != 0:
        raise ArchiveError(f"zstd failed: {message or 'exit ' + str(code)}")


def open_content(path: PathLike) -> tuple[object, Child | None]:
    """A binary stream of the file's original content (decompressing a .zst) and the decompressor."""
    if os.fspath(path).endswith(ZSTD_SUFFIX):
        read_end, write_end = os.pipe()
        try:
            child = Child([zstd_program(), "-q", "-d", "-c", os.fspath(path)], write_end)
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        return os.fdopen(read_end, "rb"), child
    return open(path, "rb"), None


def close_content(stream: object, child: Child | None, what: PathLike) -> None:
    """Close a stream from open_content(); a decompressor that failed (a damaged frame) raises."""
    if child is None:
        stream.close()  # type: ignore[attr-defined]
        return
    while stream.read(CHUNK):  # type: ignore[attr-defined]
        pass
    stream.close()  # type: ignore[attr-defined]
    _decompressed(what, *child.finish())


def _decompressed(what: PathLike, code: int, message: str) -> None:
    if code != 0:
        raise ArchiveError(f"{what}: cannot be decompressed (damaged?): {message or 'exit ' + str(code)}")


def same_content(source: PathLike, archived: PathLike) -> bool:
    """Byte for byte, decompressing the archived file if needed; a damaged archived file raises."""
    stream, child = open_content(archived)
    equal = True
    try:
        with open(source, "rb") as src:
            while equal:
                ours = src.read(CHUNK)
                theirs = stream.read(len(ours) or 1)  # type: ignore[attr-defined]  # buffered: whole, or EOF
                equal = ours == theirs
                if not ours:
                    break
    finally:
        if not equal and child is not None:
            stream.close()  # type: ignore[attr-defined]
            child.kill()  # no need to decompress the rest
        else:
            close_content(stream, child, archived)
    return equal


def _write_plain(source: PathLike, out: int) -> None:
    """Copy in the kernel (copy_file_range, or sendfile), without passing the bytes through Python."""
    with open(source, "rb") as src:
        size = os.fstat(src.fileno()).st_size
        copied = 0
        while copied < size:
            try:
                step = os.copy_file_range(src.fileno(), out, size - copied)
            except OSError:
                step = os.sendfile(out, src.fileno(), copied, size - copied)
            if step == 0:
                raise ArchiveError(f"{source}: shorter than its {size} bytes while copying")
            copied += step


def _write_zstd(source: PathLike, out: int) -> None:
    with open(source, "rb") as src:
        run_zstd([*ZSTD_LEVEL, "-c"], out, stdin=src.fileno())


def ends_unwritten(source: PathLike) -> bool:
    """A segment that a switch (archive_timeout, pg_switch_wal) ended early: its last page is zeros. It
    compresses to almost nothing, fast; a full segment costs zstd about 60 ms of CPU here."""
    with open(source, "rb") as src:
        if os.fstat(src.fileno()).st_size < WAL_PAGE:
            return False
        src.seek(-WAL_PAGE, os.SEEK_END)
        return not src.read(WAL_PAGE).strip(b"\0")


def remove_stale_temps(archive: PathLike, name: str) -> None:
    """Temporary files an earlier, killed attempt at this same file left behind."""
    prefix = f"{TEMP_PREFIX}{name}."
    for entry in os.scandir(archive):
        if entry.name.startswith(prefix):
            _unlink_quietly(entry.path)


def push(source: PathLike, name: str, archive: PathLike, compress: str = "") -> str:
    """Archive one file that PostgreSQL hands over. Returns what happened, for the caller's log."""
    kind = kind_of(name)
    if not kind or "/" in name:
        raise ArchiveError(f"{name!r} is not the name of a WAL file: refused")
    system_identifier = archive_system_identifier(archive)
    if kind in ("segment", "partial"):
        check_segment(source, name, system_identifier)
    existing = stored(archive, name)
    if existing is not None:
        if not same_content(source, existing):
            raise ArchiveError(f"{existing} is already archived with different content: left unchanged")
        fsync_path(existing)
        fsync_path(archive, directory=True)
        return f"{name}: already archived with the same content"
    zstd = compress == "zstd" or (compress == "auto" and kind in ("segment", "partial") and ends_unwritten(source))
    final = os.path.join(archive, name + (ZSTD_SUFFIX if zstd else ""))
    remove_stale_temps(archive, name)
    temp = os.path.join(archive, f"{TEMP_PREFIX}{name}.{os.getpid()}")
    try:
        out = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        try:
            (_write_zstd if zstd else _write_plain)(source, out)
            os.fsync(out)
        finally:
            os.close(out)
        os.link(temp, final)  # fails if the final name appeared meanwhile: never replaces a file
        os.unlink(temp)
        fsync_path(archive, directory=True)
    except BaseException:
        _unlink_quietly(temp)
        raise
    return f"{name}: archived as {os.path.basename(final)}"


def _unlink_quietly(path: str) -> None:
    try:  # noqa: SIM105 (contextlib costs milliseconds at every start)
        os.unlink(path)
    except FileNotFoundError:
        pass


def _restore_into(source: str, out: int) -> None:
    if source.endswith(ZSTD_SUFFIX):
        _decompressed(source, *Child([zstd_program(), "-q", "-d", "-c", source], out).finish())
    else:
        _write_plain(source, out)


def fetch(name: str, destination: PathLike, archive: PathLike) -> bool:
    """Restore `name` to `destination` (under pg_wal). False when the archive does not have it."""
    if not kind_of(name) or "/" in name:
        raise ArchiveError(f"{name!r} is not the name of a WAL file")
    system_identifier = archive_system_identifier(archive)  # an unmounted or unreadable archive stops here
    # The archive first; then what pg_receivewal streamed (complete segments only).
    source = stored(archive, name) or stored(os.path.join(archive, "stream"), name)
    if source is None:
        return False
    temp = f"{os.fspath(destination)}.paws360-fetch"
    try:
        with open(temp, "wb") as out:
            _restore_into(source, out.fileno())
            os.fsync(out.fileno())
        if kind_of(name) in ("segment", "partial"):
            check_segment(temp, name, system_identifier)
        os.replace(temp, destination)
    except BaseException:
        _unlink_quietly(temp)
        raise
    return True


USAGE = """usage: walarchive.py push <%p> <%f> <archive-dir> [--compress=zstd|auto]
       walarchive.py fetch <%f> <%p> <archive-dir>"""


def main(argv: list[str]) -> int:
    options = [a for a in argv if a.startswith("--")]
    args = [a for a in argv if not a.startswith("--")]
    compress = ""
    for option in options:
        if option in ("--compress=zstd", "--compress=auto", "--compress=none"):
            compress = option.split("=", 1)[1].replace("none", "")
        else:
            print(f"walarchive: unknown option {option}\n{USAGE}", file=sys.stderr)
            return EXIT_FAILED
    if len(args) != 4 or args[0] not in ("push", "fetch"):
        print(USAGE, file=sys.stderr)
        return EXIT_FAILED
    command = args[0]
    try:
        if command == "push":
            push(args[1], args[2], args[3], compress)
            return 0
        # Not in the archive (EXIT_FAILED): the normal end of what there is to restore.
        return 0 if fetch(args[1], args[2], args[3]) else EXIT_FAILED
    except (ArchiveError, OSError, ValueError) as exc:  # posix_spawn's errors are OSError
        print(f"walarchive {command}: {exc}", file=sys.stderr)
        return EXIT_STOP_RECOVERY if command == "fetch" else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
