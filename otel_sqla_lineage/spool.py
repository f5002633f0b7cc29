"""A bounded on-disk FIFO of lineage events: what the backend has not taken yet survives a
backend outage and a restart of the process.

Why on disk and not a bigger queue: lineage is an audit trail, so an outage of the
OpenLineage backend (a Marquez restart) or of our own process must not punch holes in it,
and memory must stay bounded whatever the outage's length.

Layout of the directory (one process at a time, enforced with ``flock`` on ``lock``)::

    00000000000000000001.jsonl   segments: one event per line, exactly to_json(event)
    00000000000000000002.jsonl   (append-only; a new segment past the roll size)
    cursor                       "<segment> <offset>": the first event not yet delivered
    worker-1/, worker-2/, ...    spools of further processes (see :func:`claim_spool`)

A line is appended with one ``write`` (continued if the OS takes less; cut back to the
last whole line if it fails, e.g. on a full disk) and is visible to the OS at once, so
``kill -9`` loses nothing written; a torn last line (a crash mid-write) is cut off on open.
``fsync`` happens when a segment is closed and on :meth:`close`, not per event: a power loss may
lose the last segment's tail. The bound counts every byte of the segment files, so an
append that would pass ``max_bytes`` is refused (the caller counts and logs the drop).

Delivery is at least once: the cursor moves after an event was delivered, so a crash in
between sends it again on the next start (same runId and eventType).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from otel_sqla_lineage.errors import ConfigError

_log = logging.getLogger(__name__)

_SUFFIX = ".jsonl"
_MIN_ROLL = 4096
_MAX_ROLL = 16 * 1024 * 1024
# Segments are read with os.pread on a plain descriptor, not a buffered file object: a
# buffered reader has an internal lock, and a forked child closing one that a parent's
# thread was reading from at the fork waits for that lock forever (seen under load).
_READ_CHUNK = 64 * 1024


_T = TypeVar("_T")


def _parse_event(raw: bytes) -> dict[str, Any]:
    event = json.loads(raw)
    if not isinstance(event, dict):
        raise ValueError("not a JSON object")
    return event


def _checked_line(raw: bytes) -> bytes:
    line = raw[:-1]
    if not (line.startswith(b"{") and line.endswith(b"}")) or b"\0" in line:
        raise ValueError("not a JSON object on one line")
    line.decode("utf-8")  # UnicodeDecodeError is a ValueError
    return line


class SpoolInUse(ConfigError):
    """Another process holds the spool directory."""


@dataclass(frozen=True, slots=True)
class Position:
    segment: int
    offset: int


class Spool:
    """Append-only segments + a cursor. Not thread-safe: one writer thread appends, one
    reader thread reads and commits; callers serialise with a lock of their own."""

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int) -> None:
        if max_bytes < _MIN_ROLL:
            raise ConfigError(f"spool max bytes must be at least {_MIN_ROLL}, not {max_bytes}")
        self.directory = Path(directory).absolute()
        self.max_bytes = max_bytes
        self._roll_bytes = max(_MIN_ROLL, min(_MAX_ROLL, max_bytes // 8))
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise ConfigError(f"cannot use spool directory {self.directory}: {exc}") from exc
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lock_fd)
            raise SpoolInUse(
                f"spool directory {self.directory} is in use by another process"
            ) from exc
        self._sizes: dict[int, int] = {}
        self.bytes = 0  # sum of _sizes: a plain attribute, read by stats() without a lock
        self._write_fd: int | None = None
        self._read_fd: int | None = None
        self._read_segment = -1
        self.corrupt = 0
        self.last_skipped = 0
        self._warned_short: set[int] = set()
        try:
            self._open_existing()
        except OSError as exc:
            # unreadable segments, a cursor that is a directory, no permission...: the
            # caller runs without a spool; the lock must not stay held by a dead Spool
            self._release()
            raise ConfigError(f"cannot use spool directory {self.directory}: "
                              f"{type(exc).__name__}: {exc}") from exc

    def _open_existing(self) -> None:
        for path in sorted(self.directory.glob("*" + _SUFFIX)):
            if path.stem.isdigit():
                self._set_size(int(path.stem), self._cut_torn_tail(path))
        self._cursor = self._read_cursor()
        if self._cursor.offset > self._sizes.get(self._cursor.segment, 0):
            # a power loss kept the cursor but not the segment's tail: appending there
            # would put new events before the cursor (skipped) or under it (read mid-line)
            if self._cursor.segment in self._sizes:
                _log.warning(
                    "otel-sqla-lineage: spool %s: the cursor points past the end of its "
                    "segment (%d > %d bytes; the tail was lost); writing on in a new segment",
                    self.directory, self._cursor.offset, self._sizes[self._cursor.segment])
            self._delete(self._cursor.segment)
            self._cursor = Position(self._cursor.segment + 1, 0)
            self._write_cursor(self._cursor)
        for segment in [s for s in self._sizes if s < self._cursor.segment]:
            self._delete(segment)
        self._write_segment = max(self._sizes, default=self._cursor.segment)
        self.pending = self._count_pending()

    # -- sizes -------------------------------------------------------------------------

    def _set_size(self, segment: int, size: int) -> None:
        self.bytes += size - self._sizes.get(segment, 0)
        self._sizes[segment] = size

    # -- writing -----------------------------------------------------------------------

    def append(self, lines: list[str]) -> int:
        """Appends what fits under the bound, in order; returns how many lines it took."""
        data: list[bytes] = []
        total = self.bytes
        for line in lines:
            encoded = (line + "\n").encode("utf-8")
            if total + len(encoded) > self.max_bytes:
                break
            data.append(encoded)
            total += len(encoded)
        taken = 0
        while taken < len(data):
            full = self._sizes.get(self._write_segment, 0) >= self._roll_bytes
            if self._write_fd is None or full:
                self._roll()
            room = self._roll_bytes - self._sizes.get(self._write_segment, 0)
            chunk: list[bytes] = []
            size = 0
            while taken + len(chunk) < len(data) and (not chunk or size + len(
                    data[taken + len(chunk)]) <= room):
                size += len(data[taken + len(chunk)])
                chunk.append(data[taken + len(chunk)])
            assert self._write_fd is not None
            if not self._write_whole(b"".join(chunk)):
                break  # the caller counts the rest as dropped
            self._set_size(self._write_segment, self._sizes.get(self._write_segment, 0) + size)
            taken += len(chunk)
            self.pending += len(chunk)  # exact per chunk, whatever happens to the next one
        return taken

    def _write_whole(self, blob: bytes) -> bool:
        """Writes all of ``blob`` (``os.write`` may take less, e.g. on a full disk). On an
        error, cuts the segment back to its last whole line, so the next append does not
        continue half a line, and returns False."""
        fd = self._write_fd
        assert fd is not None
        before = self._sizes.get(self._write_segment, 0)
        view = memoryview(blob)
        try:
            while view:
                written = os.write(fd, view)
                if written <= 0:
                    raise OSError(errno.ENOSPC, "write took no bytes")
                view = view[written:]
            return True
        except OSError as exc:
            _log.warning("otel-sqla-lineage: spool %s: cannot write %d bytes (%s: %s); "
                         "the events are dropped", self._path(self._write_segment),
                         len(blob), type(exc).__name__, exc)
            try:
                os.ftruncate(fd, before)
            except OSError:
                # half a line stays in this segment: write on in a new one (a reader stops
                # at the half line; the next open cuts it)
                self._write_fd = None
                self._write_segment += 1
                with contextlib.suppress(OSError):
                    os.close(fd)
            return False

    def _roll(self) -> None:
        if self._write_fd is not None:
            fd, self._write_fd = self._write_fd, None  # closed below: never write to it again
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            self._write_segment += 1
        elif self._write_segment in self._sizes and self._sizes[self._write_segment] >= \
                self._roll_bytes:
            self._write_segment += 1
        path = self._path(self._write_segment)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            size = os.fstat(fd).st_size
        except OSError:
            os.close(fd)
            raise
        self._write_fd = fd
        if self._write_segment not in self._sizes:
            self._set_size(self._write_segment, size)

    # -- reading -----------------------------------------------------------------------

    def peek(self, limit: int) -> tuple[list[dict[str, Any]], Position]:
        """Up to ``limit`` events from the cursor on, and where the cursor goes once they
        are delivered. Lines that are not JSON objects are skipped and counted."""
        return self._peek(limit, _parse_event)

    def peek_lines(self, limit: int) -> tuple[list[bytes], Position]:
        """:meth:`peek` for a sink that writes the lines as they are (``to_json(event)``,
        UTF-8, without the newline): each is checked for the shape of one JSON object
        (braces, valid UTF-8, no NUL from a lost write) but not parsed, which cost more
        than writing it (10% of collector_exporter's CPU)."""
        return self._peek(limit, _checked_line)

    def _peek(self, limit: int, read: Callable[[bytes], _T]) -> tuple[list[_T], Position]:
        records: list[_T] = []
        position = self._cursor
        self.last_skipped = 0
        for segment in sorted(s for s in self._sizes if s >= position.segment):
            if segment != position.segment:
                position = Position(segment, 0)
            fd = self._reader(segment)
            offset = position.offset  # in the file, of buffer[start]
            buffer, start = b"", 0
            while len(records) < limit:
                end = buffer.find(b"\n", start)
                if end < 0:
                    chunk = os.pread(fd, _READ_CHUNK, offset + len(buffer) - start)
                    if not chunk:
                        break  # the end of what was written (or a line being written)
                    buffer, start = buffer[start:] + chunk, 0
                    continue
                raw = buffer[start:end + 1]
                start = end + 1
                offset += len(raw)
                try:
                    records.append(read(raw))
                except ValueError as exc:
                    self.corrupt += 1
                    self.last_skipped += 1
                    _log.warning("otel-sqla-lineage: spool %s: unreadable line skipped (%s)",
                                 self._path(segment), exc)
            position = Position(segment, offset)
            if len(records) >= limit:
                break
            if position.offset < self._sizes[segment] and segment not in self._warned_short:
                # the file ends before what was counted (a write lost to a full disk or a
                # power loss): go on with the next segment rather than wait here forever
                self._warned_short.add(segment)
                _log.warning("otel-sqla-lineage: spool %s: ends at %d of %d bytes; going on "
                             "with the next segment", self._path(segment), position.offset,
                             self._sizes[segment])
        return records, position

    def commit(self, position: Position, delivered: int) -> None:
        """Moves the cursor (after the events up to ``position`` were delivered) and
        deletes the segments wholly behind it. If the cursor file cannot be written the
        cursor stays where it was (the events are sent again: at least once)."""
        self._write_cursor(position)
        self._cursor = position
        self.pending = max(0, self.pending - delivered - self.last_skipped)
        for segment in [s for s in self._sizes if s < position.segment]:
            self._delete(segment)
        if position.segment == self._write_segment and self._write_fd is not None and \
                position.offset >= self._sizes.get(position.segment, 0) >= self._roll_bytes:
            try:
                self._roll()  # the next append starts a new segment; this one can go
            except OSError as exc:
                _log.warning("otel-sqla-lineage: spool %s: cannot start a new segment (%s: "
                             "%s); trying again on the next append", self.directory,
                             type(exc).__name__, exc)
                return
            self._delete(position.segment)
            self._cursor = Position(self._write_segment, 0)

    def close(self) -> None:
        try:
            if self._write_fd is not None:
                os.fsync(self._write_fd)
        finally:
            self._release()

    def abandon(self) -> None:
        """Forgets the spool without touching its files or its lock: for a forked child,
        whose descriptors are the parent's (the parent keeps the lock and goes on)."""
        self._release()

    def _release(self) -> None:
        fds = [self._write_fd, self._lock_fd]
        self._write_fd = None
        self._lock_fd = -1
        self._close_reader()
        for fd in fds:
            if fd is not None and fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)

    # -- internals ---------------------------------------------------------------------

    def _path(self, segment: int) -> Path:
        return self.directory / f"{segment:020d}{_SUFFIX}"

    def _reader(self, segment: int) -> int:
        if self._read_segment != segment or self._read_fd is None:
            self._close_reader()
            self._read_fd = os.open(self._path(segment), os.O_RDONLY)
            self._read_segment = segment
        return self._read_fd

    def _close_reader(self) -> None:
        fd, self._read_fd, self._read_segment = self._read_fd, None, -1
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _delete(self, segment: int) -> None:
        """A segment that cannot be deleted is logged and left behind the cursor (the next
        open deletes it): delivery goes on."""
        if self._read_segment == segment:
            self._close_reader()
        if segment in self._sizes:
            self._set_size(segment, 0)
            del self._sizes[segment]
        try:
            self._path(segment).unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            _log.warning("otel-sqla-lineage: spool %s: cannot delete a delivered segment "
                         "(%s: %s)", self._path(segment), type(exc).__name__, exc)

    def _write_cursor(self, position: Position) -> None:
        # once per delivered batch: plain descriptors, not Path.write_text's text layer
        tmp = self.directory / "cursor.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            data = f"{position.segment} {position.offset}\n".encode("ascii")
            if os.write(fd, data) != len(data):
                raise OSError(errno.ENOSPC, "short write of the spool cursor")
        finally:
            os.close(fd)
        os.replace(tmp, self.directory / "cursor")

    def _read_cursor(self) -> Position:
        try:
            segment, offset = (self.directory / "cursor").read_text("ascii").split()
            return Position(int(segment), int(offset))
        except FileNotFoundError:
            return Position(min(self._sizes, default=1), 0)
        except ValueError:
            _log.warning("otel-sqla-lineage: spool %s: unreadable cursor; delivering the "
                         "whole spool again", self.directory)
            return Position(min(self._sizes, default=1), 0)

    @staticmethod
    def _cut_torn_tail(path: Path) -> int:
        """A line without its newline is a write the process did not finish: cut it."""
        data = path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end != len(data):
            _log.warning("otel-sqla-lineage: spool %s: cut an unfinished last line (%d bytes)",
                         path, len(data) - end)
            with path.open("r+b") as handle:
                handle.truncate(end)
        return end

    def _count_pending(self) -> int:
        count = 0
        for segment in sorted(self._sizes):
            if segment < self._cursor.segment:
                continue
            with self._path(segment).open("rb") as handle:
                if segment == self._cursor.segment:
                    handle.seek(self._cursor.offset)
                count += sum(1 for _ in handle)
        return count


WORKER_SLOTS = 64


def claim_spool(directory: str | os.PathLike[str], max_bytes: int, *,
                slots: int | None = None) -> Spool:
    """The spool at ``directory`` or, while another process holds it, the first free
    ``directory/worker-N`` (N = 1 .. ``slots``), each bounded by ``max_bytes``.

    Why slots and not one directory per setting: an app runs as several processes with
    one environment (gunicorn or uWSGI workers, forked before or after tracing is set up),
    and each needs a spool of its own. Taking the lowest free slot means a restarted pool
    of N workers takes the same N slots again, so what a worker that is gone left in its
    slot is delivered by the process that takes the slot next. Raises :class:`SpoolInUse`
    when all are taken, :class:`ConfigError` when a directory cannot be used."""
    root = Path(directory)
    slots = WORKER_SLOTS if slots is None else slots
    try:
        return Spool(root, max_bytes)
    except SpoolInUse as in_use:
        for n in range(1, slots + 1):
            try:
                return Spool(root / f"worker-{n}", max_bytes)
            except SpoolInUse:
                continue
            except ConfigError as exc:  # one broken slot does not end the search
                _log.error("otel-sqla-lineage: %s; trying the next worker slot", exc)
        raise SpoolInUse(f"spool directory {root.absolute()} and its {slots} worker slots "
                         "are all in use by other processes") from in_use
