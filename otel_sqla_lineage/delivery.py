"""Getting events out: the OpenLineage transport chosen the usual way, behind a bounded
queue drained by one background thread.

Why our own queue: openlineage-python's ``http`` transport blocks for seconds while it
retries and then raises; ``async_http`` still serialises in the caller's thread. Behind the
queue, the exporter's caller only ever appends to a deque. One worker keeps events in order
(a run's START is always sent before its COMPLETE). When the queue is full the newest
events are dropped and counted; nothing raises. With a spool directory
(``OTEL_SQLA_LINEAGE_SPOOL_DIR``), :class:`SpooledDelivery` puts a bounded on-disk spool
between the queue and the sink, so what the backend refuses is kept and retried, across
restarts (see ``spool.py``).

Where events go (first match wins), as openlineage-python resolves it:

1. ``OPENLINEAGE_DISABLED=true``: nowhere.
2. ``openlineage.yml`` (``$OPENLINEAGE_CONFIG``, ``./openlineage.yml``,
   ``~/.openlineage/openlineage.yml``) or ``OPENLINEAGE__TRANSPORT__*`` variables.
3. ``OPENLINEAGE_URL`` (+ ``OPENLINEAGE_ENDPOINT``, ``OPENLINEAGE_API_KEY``): HTTP.
4. Nothing configured: JSON lines appended to ``./openlineage_events.jsonl``
   (``OTEL_SQLA_LINEAGE_FILE``), announced in one log line.
"""

from __future__ import annotations

import collections
import copy
import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from otel_sqla_lineage.errors import ConfigError
from otel_sqla_lineage.events import to_json, to_openlineage_event
from otel_sqla_lineage.forking import ForkRegistry
from otel_sqla_lineage.settings import LineageSettings
from otel_sqla_lineage.spool import Position, Spool

_log = logging.getLogger(__name__)

Event = Mapping[str, Any]


class EventSink(Protocol):
    """Where the worker thread puts events. ``emit`` may block and may raise: the worker
    catches, counts and logs. Events share parts with other events (and cache their
    JSON): a sink must not mutate them. A sink that stores ``to_json`` lines may also have
    ``write_json_lines(lines: Sequence[bytes])``: the workers then hand it whole batches
    already serialised (the spool's own lines), all taken or (raising) none."""

    description: str

    def emit(self, event: Event) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class JsonLinesSink:
    """Appends one JSON event per line, exactly what ``Serde.to_json`` would write.

    Several writers share the default file (the exporter, the schema-at-start queue, the
    workers of a forked server), so each line is one ``write`` on an ``O_APPEND``
    descriptor (a buffered text file splits a large event into chunks that interleave
    with another writer's) under an exclusive ``flock``, which also keeps the repair of a
    torn last line (a writer killed mid-line) from mistaking another writer's line in
    progress for one."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).absolute()
        self.description = f"file {self.path}"
        self._fd: int | None = None

    def emit(self, event: Event) -> None:
        self._write((to_json(event) + "\n").encode("utf-8"))

    def write_json_lines(self, lines: Sequence[bytes]) -> None:
        """Appends events already serialised by ``to_json`` (UTF-8, no newline), all in
        one ``write`` under one ``flock``: the delivery workers hand over a batch at a
        time, and the spool's lines are exactly what this file takes."""
        if lines:
            self._write(b"\n".join(lines) + b"\n")

    def _write(self, data: bytes) -> None:
        opened = self._fd is None
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            if opened and os.fstat(self._fd).st_size and not _ends_with_newline(self.path):
                # a process killed mid-write left half a line: keep the next one whole
                data = b"\n" + data
            _write_all(self._fd, data)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def flush(self) -> None:
        """Nothing is buffered in this process: each line is written when emitted."""

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(f"write returned {written}")
        view = view[written:]


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


class OpenLineageTransportSink:
    """Any openlineage-python transport (http, kafka, console, file, composite, ...)."""

    def __init__(self, transport: Any, description: str) -> None:
        self._transport = transport
        self.description = description

    def emit(self, event: Event) -> None:
        self._transport.emit(to_openlineage_event(event))

    def flush(self) -> None:
        wait = getattr(self._transport, "wait_for_completion", None)
        if callable(wait):
            wait(-1)

    def close(self) -> None:
        close = getattr(self._transport, "close", None)
        if callable(close):
            close(-1)

    def after_fork_in_child(self) -> None:
        """The http transport's pooled keep-alive connections are the parent's sockets:
        a child writing on them would garble both processes' requests. Dropping the
        session (not closing it: that would close the parent's connections too) makes
        the transport open its own."""
        if isinstance(getattr(type(self._transport), "session", None), property):
            self._transport.session = None


def resolve_transport_config(
    environ: Mapping[str, str] | None = None,
) -> tuple[str, dict[str, Any] | None]:
    """(where the config came from, transport config), or ("none", None).

    Reads, never writes, the environment (unlike ``OpenLineageClient()``, which rewrites
    ``OPENLINEAGE__TRANSPORT__*`` variables when ``OPENLINEAGE_URL`` is set).
    """
    env = os.environ if environ is None else environ
    if env.get("OPENLINEAGE_DISABLED", "").strip().lower() == "true":
        return "OPENLINEAGE_DISABLED", {"type": "noop"}
    config: dict[str, Any] = {}
    source = "none"
    path = _yaml_config_path(env)
    if path is not None:
        import yaml

        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read OpenLineage config {path}: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"OpenLineage config {path} must hold a mapping at its top level")
        if isinstance(loaded.get("transport"), dict):
            config = dict(loaded["transport"])
            source = f"config file {path}"
    if not config.get("type"):
        from_env = _transport_from_env_vars(env)
        if from_env.get("type"):
            config, source = from_env, "OPENLINEAGE__TRANSPORT__* variables"
    if not config.get("type") and env.get("OPENLINEAGE_URL"):
        config = {
            "type": "http",
            "url": env["OPENLINEAGE_URL"],
            "endpoint": env.get("OPENLINEAGE_ENDPOINT", "api/v1/lineage"),
        }
        if env.get("OPENLINEAGE_API_KEY"):
            config["auth"] = {"type": "api_key", "apiKey": env["OPENLINEAGE_API_KEY"]}
        source = "OPENLINEAGE_URL"
    return (source, config) if config.get("type") else ("none", None)


def _yaml_config_path(env: Mapping[str, str]) -> Path | None:
    candidates = [env.get("OPENLINEAGE_CONFIG"), "openlineage.yml"]
    home = env.get("HOME")
    if home:
        candidates.append(os.path.join(home, ".openlineage", "openlineage.yml"))
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def _transport_from_env_vars(env: Mapping[str, str]) -> dict[str, Any]:
    """``OPENLINEAGE__TRANSPORT__A__B=v`` -> ``{"a": {"b": v}}``, values JSON-decoded when
    they parse (openlineage-python's convention)."""
    import json

    prefix = "OPENLINEAGE__TRANSPORT__"
    out: dict[str, Any] = {}
    for name, raw in env.items():
        if not name.startswith(prefix):
            continue
        keys = [k.lower() for k in name[len(prefix):].split("__") if k]
        if not keys:
            continue
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        node = out
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                break
        else:
            node[keys[-1]] = value
    return out


def sink_from_environment(
    settings: LineageSettings, environ: Mapping[str, str] | None = None
) -> EventSink:
    source, config = resolve_transport_config(environ)
    if config is None:
        sink = JsonLinesSink(settings.default_file)
        _log.warning(
            "otel-sqla-lineage: no OpenLineage transport configured (openlineage.yml, "
            "OPENLINEAGE_URL, OPENLINEAGE__TRANSPORT__TYPE); writing lineage events to %s",
            sink.path,
        )
        return sink
    from openlineage.client.transport import get_default_factory

    try:
        transport = get_default_factory().create(copy.deepcopy(config))
    except Exception as exc:
        raise ConfigError(f"OpenLineage transport from {source} cannot be built: {exc}") from exc
    kind = config.get("type")
    _log.info("otel-sqla-lineage: sending lineage events with the %s transport (from %s)",
              kind, source)
    return OpenLineageTransportSink(transport, f"{kind} transport from {source}")


def _sink_after_fork(sink: EventSink) -> None:
    hook = getattr(sink, "after_fork_in_child", None)
    if callable(hook):
        try:
            hook()
        except Exception:
            _log.exception("otel-sqla-lineage: %s cannot be reset after fork", sink.description)


# Every delivery of this process: in a forked child each restarts its own workers.
_LIVE = ForkRegistry("delivery")


class DeliveryQueue:
    """Bounded FIFO + one daemon worker. ``put`` never blocks; ``flush`` and ``close`` wait
    (bounded by their timeout) for what was put before them."""

    def __init__(
        self,
        sink: EventSink,
        max_events: int,
        *,
        tick: Callable[[], Iterable[Event]] | None = None,
        tick_interval: float = 1.0,
        linger: float = 0.05,
    ) -> None:
        self.sink = sink
        self.max_events = max_events
        self._tick = tick
        self._tick_interval = tick_interval
        # Woken by a put, the worker waits this long (unless flushed, closed or half full)
        # for more: sampled-out runs arrive one by one on the app's thread, and a wake-up
        # plus a sink flush per run cost more CPU than converting the run.
        self._linger = linger
        self._wakeup_pending = False
        self._queue: collections.deque[Event] = collections.deque()
        self._cond = threading.Condition()
        self._put_count = 0
        self._done_count = 0
        self._inflight = 0  # taken by the worker, not yet delivered: counts toward the bound
        self._closing = False
        self.delivered = 0
        self.dropped = 0
        self.failed = 0
        self._pid = os.getpid()
        self._worker = self._start_worker()
        _LIVE.add(self)

    def _start_worker(self) -> threading.Thread:
        worker = threading.Thread(target=self._run, name="otel-sqla-lineage-delivery",
                                  daemon=True)
        worker.start()
        return worker

    def after_fork_in_child(self) -> None:
        """In a forked child: fresh locks (the parent's worker may have held one at the
        fork), none of the parent's queued events (the parent delivers them), a worker."""
        if self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._cond = threading.Condition()
        self._queue.clear()
        self._done_count = self._put_count
        self._inflight = 0
        self._wakeup_pending = False
        _sink_after_fork(self.sink)
        if not self._closing:
            self._worker = self._start_worker()

    def put_many(self, events: Iterable[Event]) -> None:
        added = 0
        with self._cond:
            for event in events:
                if self._closing or len(self._queue) + self._inflight >= self.max_events:
                    self.dropped += 1
                    if self.dropped in (1, 10, 100) or self.dropped % 1000 == 0:
                        _log.warning(
                            "otel-sqla-lineage: delivery queue full (%d events) or closed; "
                            "%d event(s) dropped so far",
                            self.max_events,
                            self.dropped,
                        )
                    continue
                self._queue.append(event)
                self._put_count += 1
                added += 1
            # waking the worker for nothing costs every span a context switch; once woken
            # it lingers for more, so only the first put wakes it (or a half-full queue)
            if added and (not self._wakeup_pending
                          or len(self._queue) >= self.max_events // 2):
                self._wakeup_pending = True
                self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        with self._cond:
            target = self._put_count
            self._cond.notify_all()
            return self._cond.wait_for(lambda: self._done_count >= target, timeout)

    def close(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        flushed = self.flush(timeout)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._worker.join(_left(deadline))
        return flushed

    @property
    def put_count(self) -> int:
        with self._cond:
            return self._put_count

    def handed_off(self, target: int, timeout: float | None = None) -> bool:
        """Waits until the first ``target`` events put were delivered or counted as failed
        (without a spool nothing is kept for later)."""
        with self._cond:
            self._cond.notify_all()
            return self._cond.wait_for(lambda: self._done_count >= target, timeout)

    def stats(self) -> dict[str, int]:
        return {}

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._queue and not self._closing:
                    self._cond.wait(self._tick_interval)
                if (self._queue and self._linger > 0 and not self._closing
                        and len(self._queue) < self.max_events // 2):
                    self._cond.wait(self._linger)  # flush() and close() notify: no wait
                self._wakeup_pending = False
                batch = list(self._queue)
                self._queue.clear()
                self._inflight = len(batch)
                closing = self._closing
            if not batch and self._tick is not None and not closing:
                try:
                    self.put_many(self._tick())
                except Exception:
                    _log.exception("otel-sqla-lineage: periodic expiry failed")
                continue
            write_lines = getattr(self.sink, "write_json_lines", None)
            if write_lines is not None:
                self._write_lines(write_lines, batch)
            else:
                for event in batch:
                    try:
                        self.sink.emit(event)
                        self.delivered += 1
                    except Exception as exc:
                        self._note_failed(exc, 1)
            try:
                self.sink.flush()
            except Exception:
                _log.exception("otel-sqla-lineage: %s failed to flush", self.sink.description)
            with self._cond:
                self._done_count += len(batch)
                self._inflight = 0
                self._cond.notify_all()
                if closing and not self._queue:
                    break
        try:
            self.sink.close()
        except Exception:
            _log.exception("otel-sqla-lineage: %s failed to close", self.sink.description)


    def _write_lines(self, write_lines: Callable[[Sequence[bytes]], None],
                     batch: list[Event]) -> None:
        """A JSON-lines sink takes the batch in one write (one lock, one system call)."""
        lines = []
        for event in batch:
            try:
                lines.append(to_json(event).encode("utf-8"))
            except Exception as exc:
                self._note_failed(exc, 1)
        try:
            write_lines(lines)
            self.delivered += len(lines)
        except Exception as exc:
            self._note_failed(exc, len(lines))

    def _note_failed(self, exc: Exception, count: int) -> None:
        self.failed += count
        _log.warning(
            "otel-sqla-lineage: %s failed to take %s (%s: %s); %d failed so far",
            self.sink.description, "an event" if count == 1 else f"{count} events",
            type(exc).__name__, exc, self.failed,
        )


CLOSE_GRACE_SECONDS = 5.0
# failed attempts retried at once, not after the backoff, within the close grace
CLOSE_RETRIES = 2


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


class SpooledDelivery:
    """Like :class:`DeliveryQueue`, with a :class:`~otel_sqla_lineage.spool.Spool` between
    the queue and the sink: a *spooler* thread writes every event to disk, a *sender*
    thread delivers from the spool's head and retries with backoff while the backend is
    down, slow or failing, so nothing it refuses is lost and order is kept (strictly FIFO:
    a run's START before its COMPLETE). ``put_many`` still only appends to a bounded deque;
    a sink that hangs fills the spool (bounded, drops counted), never memory.

    What a previous process left in the spool is delivered first.
    """

    def __init__(
        self,
        sink: EventSink,
        spool: Spool,
        max_events: int,
        *,
        tick: Callable[[], Iterable[Event]] | None = None,
        tick_interval: float = 1.0,
        retry_initial_seconds: float = 0.5,
        retry_max_seconds: float = 30.0,
        batch: int = 512,
    ) -> None:
        self.sink = sink
        self.spool = spool
        self.max_events = max_events
        self._tick = tick
        self._tick_interval = tick_interval
        self._retry_initial = retry_initial_seconds
        self._retry_max = retry_max_seconds
        self._batch = batch
        self._queue: collections.deque[Event] = collections.deque()
        self._cond = threading.Condition()
        self._spool_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()  # ends the sender's backoff early (close, stop)
        self._put_count = 0
        self._done_count = 0  # taken by the spooler: written, or dropped when full
        self._inflight = 0
        self._appended = spool.pending  # records ever in the spool (this process's view)
        self._consumed = 0  # records the sender is past (delivered, or unreadable)
        self._backing_off = False
        self._closing = False
        self._closed = False
        self.delivered = 0
        self.dropped = 0
        self.failed = 0
        self.errors = 0  # spool I/O errors the workers met and survived
        self._spool_failing = False
        if spool.pending:
            _log.warning(
                "otel-sqla-lineage: %d event(s) left in the spool %s by an earlier run; "
                "delivering them first", spool.pending, spool.directory)
        self._pid = os.getpid()
        self.forked_away = False
        self._spooler = threading.Thread(
            target=self._spool_loop, name="otel-sqla-lineage-spooler", daemon=True)
        self._sender = threading.Thread(
            target=self._send_loop, name="otel-sqla-lineage-sender", daemon=True)
        self._spooler.start()
        self._sender.start()
        _LIVE.add(self)

    def after_fork_in_child(self) -> None:
        """In a forked child the spool is the parent's (its files, its lock): the child
        lets go of it without touching the files and takes nothing more; ``forked_away``
        tells the owner (the pipeline) to set up delivery of its own (a worker slot)."""
        if self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._cond = threading.Condition()
        self._spool_lock = threading.Lock()
        self._stop = threading.Event()
        self._stop.set()
        self._wake = threading.Event()
        self._queue.clear()
        self._done_count = self._put_count
        self._inflight = 0
        self._consumed = self._appended
        self.forked_away = not self._closed
        self._closing = self._closed = True
        self.spool.abandon()
        _sink_after_fork(self.sink)

    def put_many(self, events: Iterable[Event]) -> None:
        with self._cond:
            for event in events:
                if self._closing or len(self._queue) + self._inflight >= self.max_events:
                    self._count_drop("delivery queue full or closed")
                    continue
                self._queue.append(event)
                self._put_count += 1
            self._cond.notify_all()

    @property
    def put_count(self) -> int:
        with self._cond:
            return self._put_count

    def handed_off(self, target: int, timeout: float | None = None) -> bool:
        """Waits until the first ``target`` events put are on disk (or counted as
        dropped): from then on a crash of this process no longer loses them."""
        with self._cond:
            self._cond.notify_all()
            return self._cond.wait_for(lambda: self._done_count >= target, timeout)

    def flush(self, timeout: float | None = None) -> bool:
        """Waits until what was put before is on disk and then delivered, or the backend
        is failing (then it stays spooled, safe). False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target = self._put_count
            self._cond.notify_all()
            if not self._cond.wait_for(lambda: self._done_count >= target, timeout):
                return False
            appended = self._appended
            return self._cond.wait_for(
                lambda: self._consumed >= appended or self._backing_off or self._spool_failing
                or self._closed,
                _left(deadline))

    def close(self, timeout: float | None = None) -> bool:
        """Waits (within ``timeout``) until everything is on disk, then at most
        ``CLOSE_GRACE_SECONDS`` more for the backend: what it has not taken by then stays
        spooled for the next start, rather than holding up the application's exit."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target = self._put_count
        flushed = self.handed_off(target, timeout)
        if flushed:
            grace = _left(deadline)
            self._deliver_before_close(CLOSE_GRACE_SECONDS if grace is None
                                       else min(grace, CLOSE_GRACE_SECONDS))
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._stop.set()
        self._wake.set()
        self._spooler.join(_left(deadline))
        self._sender.join(min(1.0, _left(deadline) or 1.0))
        with self._spool_lock:
            if not self._closed:
                self._closed = True
                left = self.spool.pending
                self.spool.close()
                if left:
                    _log.warning("otel-sqla-lineage: %d event(s) stay in the spool %s for the "
                                 "next start", left, self.spool.directory)
        try:
            self.sink.close()
        except Exception:
            _log.exception("otel-sqla-lineage: %s failed to close", self.sink.description)
        return flushed

    def _deliver_before_close(self, timeout: float) -> None:
        """Waits (within ``timeout``) until the backend has every spooled event. Unlike
        :meth:`flush` it does not give up at the first failure: up to ``CLOSE_RETRIES``
        failed attempts are retried at once instead of after the backoff, so one slow
        answer or dropped connection does not leave the events for a next start that a
        short-lived process (a job, a worker being recycled) may never have."""
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._appended
        retries = 0
        while True:
            with self._cond:
                failed_seen = self.failed

                def settled(seen: int = failed_seen) -> bool:
                    # a new failure counts once the sender is in its backoff (set after it)
                    return (self._consumed >= target or self._spool_failing or self._closed
                            or (self._backing_off and self.failed > seen))

                if self._backing_off:
                    if retries == CLOSE_RETRIES:
                        return  # retried enough: the rest stays spooled
                    # the sender waiting out its backoff tries again now; set only while it
                    # backs off, so no wake is left over to skip a later backoff
                    self._wake.set()
                    retries += 1
                self._cond.wait_for(settled, _left(deadline))
                if self._consumed >= target or self._spool_failing or self._closed:
                    return
            if time.monotonic() >= deadline:
                return  # timed out: the rest stays spooled

    def stats(self) -> dict[str, int]:
        # plain attributes, no lock: the spool lock is held across fsync and disk reads,
        # and stats are read by the application (metrics endpoints)
        spool = self.spool
        return {"spool_pending": spool.pending, "spool_bytes": spool.bytes,
                "spool_corrupt": spool.corrupt, "spool_errors": self.errors}

    def _count_drop(self, why: str) -> None:
        self.dropped += 1
        if self.dropped in (1, 10, 100) or self.dropped % 1000 == 0:
            _log.warning("otel-sqla-lineage: %s (spool %s, %d bytes max); %d event(s) "
                         "dropped so far", why, self.spool.directory, self.spool.max_bytes,
                         self.dropped)

    def _note_error(self, what: str, exc: BaseException) -> None:
        """A worker never dies of an error (a full disk, too many open files): it logs the
        first and every 100th, and goes on."""
        self.errors += 1
        if self.errors == 1 or self.errors % 100 == 0:
            _log.warning("otel-sqla-lineage: %s (spool %s): %s: %s; retrying; %d error(s) so "
                         "far", what, self.spool.directory, type(exc).__name__, exc,
                         self.errors)

    def _spool_loop(self) -> None:
        while True:
            try:
                if self._spool_once():
                    return
            except Exception as exc:
                self._note_error("cannot spool events", exc)
                self._stop.wait(self._retry_initial)

    def _spool_once(self) -> bool:
        """One pass of the spooler; True once closed."""
        with self._cond:
            if not self._queue and not self._closing:
                self._cond.wait(self._tick_interval)
            batch = list(self._queue)
            self._queue.clear()
            self._inflight = len(batch)
            closing = self._closing
        if not batch:
            if closing:
                return True
            if self._tick is not None:
                try:
                    self.put_many(self._tick())
                except Exception:
                    _log.exception("otel-sqla-lineage: periodic expiry failed")
            return False
        taken = 0
        try:
            lines = [to_json(event) for event in batch]
            with self._spool_lock:
                if not self._closed:
                    taken = self.spool.append(lines)
        except Exception as exc:
            _log.warning("otel-sqla-lineage: cannot write to the spool %s (%s: %s)",
                         self.spool.directory, type(exc).__name__, exc)
        finally:
            with self._cond:
                for _ in range(len(batch) - taken):
                    self._count_drop("spool full or not writable")
                self._appended += taken
                self._done_count += len(batch)
                self._inflight = 0
                self._cond.notify_all()
        return False

    def _send_loop(self) -> None:
        delay = self._retry_initial
        while not self._stop.is_set():
            try:
                next_delay = self._send_once(delay)
            except Exception as exc:
                # e.g. the cursor file cannot be written (disk full) or a segment cannot be
                # opened (too many open files): the events stay spooled, tried again later
                self._note_error("cannot deliver from the spool", exc)
                with self._cond:
                    self._spool_failing = True  # flush() does not wait for what is stuck
                    self._cond.notify_all()
                self._stop.wait(delay)
                delay = min(self._retry_max, delay * 2)
                continue
            if self._spool_failing:
                _log.warning("otel-sqla-lineage: the spool %s works again",
                             self.spool.directory)
                with self._cond:
                    self._spool_failing = False
            if next_delay is None:
                return
            delay = next_delay

    def _send_once(self, delay: float) -> float | None:
        """One pass of the sender: the delay before the next attempt, None once closed."""
        with self._cond:
            seen = self._appended
        with self._spool_lock:
            if self._closed:
                return None
            # a JSON-lines sink takes the spool's lines as they are: not parsed, not
            # serialised again (together ~20% of collector_exporter's CPU)
            write_lines = getattr(self.sink, "write_json_lines", None)
            lines: list[bytes] = []
            events: list[dict[str, Any]] = []
            if write_lines is not None:
                lines, position = self.spool.peek_lines(self._batch)
            else:
                events, position = self.spool.peek(self._batch)
            skipped = self.spool.last_skipped
        if not lines and not events:
            if skipped:
                self._commit(position, 0, skipped)
                return self._retry_initial
            with self._cond:
                if self._closing:
                    return None
                # nothing readable: sleep until something new is appended (never spin on
                # events that are counted but cannot be read)
                self._cond.wait_for(lambda: self._appended != seen or self._closing, 0.5)
            return self._retry_initial
        sent = 0
        count = len(lines) or len(events)
        if write_lines is not None:
            # the whole batch or (on an error) none of it counts as sent: all retried
            try:
                write_lines(lines)
                sent = len(lines)
            except Exception as exc:
                self.failed += 1
                self._note_failure(exc, delay)
        else:
            for event in events:
                try:
                    self.sink.emit(event)
                except Exception as exc:
                    self.failed += 1
                    self._note_failure(exc, delay)
                    break
                sent += 1
        if sent == count:
            try:
                self.sink.flush()
            except Exception as exc:
                self.failed += 1
                self._note_failure(exc, delay)
                sent = -1
        if sent == count:
            self._commit(position, sent, skipped)
            if self._backing_off:
                _log.warning("otel-sqla-lineage: %s is taking events again; %d still "
                             "spooled", self.sink.description, self.spool.pending)
            with self._cond:
                self._backing_off = False
                self._cond.notify_all()
            return self._retry_initial
        # deliver the events before the failure for good; retry the rest later
        if sent > 0:
            with self._spool_lock:
                if self._closed:
                    return None
                partial, at = self.spool.peek(sent)
                skipped = self.spool.last_skipped
            self._commit(at, len(partial), skipped)
        with self._cond:
            self._backing_off = True
            self._cond.notify_all()
        self._wake.wait(delay)  # set by close (retry now) and stop
        self._wake.clear()
        return min(self._retry_max, delay * 2)

    def _commit(self, position: Position, delivered: int, skipped: int) -> None:
        with self._spool_lock:
            if self._closed:
                return
            self.spool.commit(position, delivered)
        self.delivered += delivered
        with self._cond:
            self._consumed += delivered + skipped
            self._cond.notify_all()

    def _note_failure(self, exc: Exception, delay: float) -> None:
        if self.failed in (1, 10, 100) or self.failed % 1000 == 0 or not self._backing_off:
            _log.warning(
                "otel-sqla-lineage: %s failed to take an event (%s: %s); keeping events in "
                "the spool %s (%d pending), retrying in %.1fs; %d failed attempt(s) so far",
                self.sink.description, type(exc).__name__, exc, self.spool.directory,
                self.spool.pending, delay, self.failed)
