"""A write-ahead log of the OTLP requests the service acknowledged.

Why: spans wait in memory for their enclosing span (run assembly) before they become
events, and events wait in a queue before they reach the on-disk spool. A Collector that
got "OK" forgets the batch, so the service writes each request here *before* answering;
after ``kill -9`` it replays the log on start. Segments are deleted once everything
derived from them is in the event spool (checkpoint, see ``service.py``), so the log stays
small. Replay can emit a run a second time (same runId and eventType): at least once.

Record: 4-byte big-endian length, 4-byte CRC-32 of the payload, the serialised
``ExportTraceServiceRequest``. One ``write`` per record: what was acknowledged survives a
crash of the process (not a power loss: no ``fsync`` per request). A torn last record is
an unacknowledged request and is dropped on replay. A failed or short write is cut off
again (``ftruncate``) before the request is refused, so records acknowledged later follow
a whole record; should that fail too, the segment is closed and replay skips past the bad
bytes to the next whole record (logged).

A record is the request as the Collector sent it, except SQL text and error messages,
redacted as the events redact them (``redact_request.py``); files are created 0600.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

from otel_sqla_lineage.errors import ConfigError

_log = logging.getLogger(__name__)

_HEADER = struct.Struct(">II")
_SUFFIX = ".otlp"


class RequestLog:
    """Not thread-safe: the service appends and rotates under one lock."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory).absolute()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot use request log directory {self.directory}: {exc}") \
                from exc
        self._segments = sorted(int(p.stem) for p in self.directory.glob("*" + _SUFFIX)
                                if p.stem.isdigit())
        self._current = (self._segments[-1] + 1) if self._segments else 1
        self._fd: int | None = None
        self._written = 0  # bytes in the current segment
        self.kept_through = 0  # see keep_through
        self.bytes = sum(self._path(s).stat().st_size for s in self._segments)

    def replay(self) -> Iterator[bytes]:
        """The payloads of the segments an earlier process left, oldest first."""
        return self.records_through(self._segments[-1] if self._segments else 0)

    def records_through(self, last: int, after: int = 0) -> Iterator[bytes]:
        """The payloads of the segments after ``after`` up to ``last``, oldest first.
        Closed segments never change, so this may run outside the service's lock."""
        for segment in [s for s in list(self._segments) if after < s <= last]:
            if segment == self._current and self._fd is not None:
                continue
            data = self._path(segment).read_bytes()
            offset = 0
            while offset < len(data):
                payload = _record_at(data, offset)
                if payload is None:
                    resume = _next_record(data, offset + 1)
                    if resume is None:
                        _log.warning("collector_exporter: request log %s: %d byte(s) at its "
                                     "end are an unfinished (never acknowledged) request; "
                                     "ignored", self._path(segment), len(data) - offset)
                        break
                    _log.warning("collector_exporter: request log %s: %d byte(s) at offset "
                                 "%d are not a whole record (a failed write); skipped to the "
                                 "next record", self._path(segment), resume - offset, offset)
                    offset = resume
                    continue
                yield payload
                offset += _HEADER.size + len(payload)

    def append(self, payload: bytes) -> None:
        """Raises OSError when the record cannot be written (the request is then refused
        with UNAVAILABLE, so the Collector retries it)."""
        if self._fd is None:
            self._fd = os.open(self._path(self._current),
                               os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._segments.append(self._current)
        record = _HEADER.pack(len(payload), zlib.crc32(payload)) + payload
        try:
            written = os.write(self._fd, record)
            if written != len(record):
                raise OSError(f"short write to the request log ({written} of {len(record)} "
                              "bytes)")
        except OSError:
            self._cut_back()
            raise
        self._written += written
        self.bytes += written

    def _cut_back(self) -> None:
        """After a failed write: the segment ends at its last whole record again, so the
        records acknowledged after it are not hidden behind a torn one."""
        assert self._fd is not None
        try:
            os.ftruncate(self._fd, self._written)
        except OSError as exc:
            # replay skips past the torn bytes; new records go to a fresh segment
            _log.warning("collector_exporter: cannot cut the failed write off the request "
                         "log %s (%s); starting a new segment", self._path(self._current), exc)
            os.close(self._fd)
            self._fd = None
            self._current += 1
            self._written = 0

    @property
    def empty(self) -> bool:
        return not self._segments

    def rotate(self) -> int:
        """Closes the current segment; returns the newest segment number that the next
        :meth:`discard_through` may delete."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        closed = self._current
        if self._written or self._current in self._segments:
            self._current += 1
        self._written = 0
        return closed

    def keep_through(self, segment: int) -> None:
        """The segments up to ``segment`` stay for the next start: something derived from
        them was dropped, so only a replay can still deliver it."""
        self.kept_through = max(self.kept_through, segment)

    def discard_through(self, segment: int) -> None:
        for old in [s for s in self._segments
                    if self.kept_through < s <= segment and s != self._current]:
            path = self._path(old)
            try:
                self.bytes -= path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                pass
            self._segments.remove(old)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _path(self, segment: int) -> Path:
        return self.directory / f"{segment:020d}{_SUFFIX}"


def _record_at(data: bytes, offset: int) -> bytes | None:
    """The payload of the whole, CRC-checked record at ``offset``, or None."""
    if offset + _HEADER.size > len(data):
        return None
    length, crc = _HEADER.unpack_from(data, offset)
    payload = data[offset + _HEADER.size: offset + _HEADER.size + length]
    if len(payload) < length or zlib.crc32(payload) != crc:
        return None
    return payload


def _next_record(data: bytes, start: int) -> int | None:
    """The first offset from ``start`` where a whole record begins (only after a failed
    write, so a byte-by-byte scan is fine); a CRC-32 match by chance is negligible."""
    for offset in range(start, len(data) - _HEADER.size + 1):
        length = int.from_bytes(data[offset:offset + 4], "big")
        if offset + _HEADER.size + length <= len(data) and _record_at(data, offset) is not None:
            return offset
    return None
