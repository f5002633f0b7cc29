"""Getting events out: the OpenLineage transport chosen the usual way, behind a bounded
queue drained by one background thread.

Why our own queue: openlineage-python's ``http`` transport blocks for seconds while it
retries and then raises; ``async_http`` still serialises in the caller's thread. Behind the
queue, the exporter's caller only ever appends to a deque. One worker keeps events in order
(a run's START is always sent before its COMPLETE). When the queue is full the newest
events are dropped and counted; nothing raises.

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
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, Any, Protocol

from otel_sqla_lineage.errors import ConfigError
from otel_sqla_lineage.events import to_json, to_openlineage_event
from otel_sqla_lineage.settings import LineageSettings

_log = logging.getLogger(__name__)

Event = Mapping[str, Any]


class EventSink(Protocol):
    """Where the worker thread puts events. ``emit`` may block and may raise: the worker
    catches, counts and logs. Events share parts with other events (and cache their
    JSON): a sink must not mutate them."""

    description: str

    def emit(self, event: Event) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class JsonLinesSink:
    """Appends one JSON event per line, exactly what ``Serde.to_json`` would write."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).absolute()
        self.description = f"file {self.path}"
        self._file: IO[str] | None = None

    def emit(self, event: Event) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
        self._file.write(to_json(event) + "\n")

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


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
        self._worker = threading.Thread(
            target=self._run, name="otel-sqla-lineage-delivery", daemon=True
        )
        self._worker.start()

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
        flushed = self.flush(timeout)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._worker.join(timeout)
        return flushed

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
            for event in batch:
                try:
                    self.sink.emit(event)
                    self.delivered += 1
                except Exception as exc:
                    self.failed += 1
                    _log.warning(
                        "otel-sqla-lineage: %s failed to take an event (%s: %s); %d failed "
                        "so far",
                        self.sink.description,
                        type(exc).__name__,
                        exc,
                        self.failed,
                    )
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
