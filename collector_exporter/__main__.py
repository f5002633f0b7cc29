"""``python -m collector_exporter``: run the service until SIGTERM/SIGINT, then flush."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from collector_exporter.metrics import serve_metrics
from collector_exporter.server import build_server
from collector_exporter.settings import (
    DEFAULT_LISTEN,
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_SPOOL_DIR,
    ServiceSettings,
)
from otel_sqla_lineage.delivery import sink_from_environment
from otel_sqla_lineage.errors import ConfigError
from otel_sqla_lineage.settings import GRANULARITIES, LineageSettings

_log = logging.getLogger("collector_exporter")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="collector-exporter",
        description="OTLP gRPC trace service: turns the traces an OpenTelemetry Collector "
        "exports to it into OpenLineage run events. Lineage destination: openlineage.yml, "
        "OPENLINEAGE_URL or OPENLINEAGE__TRANSPORT__* as for any OpenLineage client; with "
        "none, JSON lines in --events-file.",
    )
    parser.add_argument("--listen",
                        default=env("OTEL_SQLA_LINEAGE_COLLECTOR_LISTEN", DEFAULT_LISTEN),
                        help="host:port for OTLP gRPC (default: %(default)s)")
    parser.add_argument("--granularity", choices=GRANULARITIES, default=None,
                        help="one run per enclosing span (job) or per statement "
                        "(default: OTEL_SQLA_LINEAGE_GRANULARITY or job)")
    parser.add_argument("--namespace", default=None,
                        help="job namespace (default: each span's service.name)")
    parser.add_argument("--trace-ui-url", default=None,
                        help="Jaeger UI base URL; runs then carry a traceUrl")
    parser.add_argument("--max-spans", type=int, default=None,
                        help="statements/runs held waiting for their parent span (default 10000)")
    parser.add_argument("--max-age", type=float, default=None,
                        help="seconds a span waits for its parent before it is emitted "
                        "alone (default 60)")
    parser.add_argument("--queue-max-events", type=int, default=None,
                        help="events waiting for the transport before new ones are dropped")
    parser.add_argument("--openlineage-config", type=Path, default=None,
                        help="an openlineage.yml to use (instead of $OPENLINEAGE_CONFIG, "
                        "./openlineage.yml, ~/.openlineage/openlineage.yml)")
    parser.add_argument("--events-file", default=None,
                        help="JSON-lines file when no transport is configured "
                        "(default: ./openlineage_events.jsonl)")
    parser.add_argument("--spool-dir", type=Path,
                        default=Path(env("OTEL_SQLA_LINEAGE_SPOOL_DIR") or DEFAULT_SPOOL_DIR),
                        help="where acknowledged requests (requests/) and undelivered events "
                        "(events/) are kept across outages and restarts; one service per "
                        "directory (default: OTEL_SQLA_LINEAGE_SPOOL_DIR or ./%(default)s)")
    parser.add_argument("--spool-max-bytes", type=int, default=None,
                        help="bound of the event spool; beyond it new events are dropped, "
                        "counted and logged (default: OTEL_SQLA_LINEAGE_SPOOL_MAX_BYTES or "
                        "256 MiB)")
    parser.add_argument("--no-spool", action="store_true",
                        help="keep nothing on disk: acknowledge requests once in memory; "
                        "events the backend refuses are counted as failed")
    parser.add_argument("--tls-cert", type=Path, default=None, help="PEM certificate")
    parser.add_argument("--tls-key", type=Path, default=None, help="PEM private key")
    parser.add_argument("--bearer-token-file", type=Path, default=None,
                        help="require 'authorization: Bearer <token>' with the token in this "
                        "file (or OTEL_SQLA_LINEAGE_COLLECTOR_BEARER_TOKEN)")
    parser.add_argument("--max-message-bytes", type=int, default=DEFAULT_MAX_MESSAGE_BYTES,
                        help="largest OTLP request accepted (default: %(default)s)")
    parser.add_argument("--metrics-listen",
                        default=env("OTEL_SQLA_LINEAGE_COLLECTOR_METRICS_LISTEN"),
                        help="host:port serving the service's counters on /metrics")
    parser.add_argument("--stats-interval", type=float, default=60.0,
                        help="seconds between counter log lines (0: never)")
    parser.add_argument("--log-level", default=env("OTEL_SQLA_LINEAGE_COLLECTOR_LOG_LEVEL", "INFO"),
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> ServiceSettings:
    token = os.environ.get("OTEL_SQLA_LINEAGE_COLLECTOR_BEARER_TOKEN")
    if args.bearer_token_file is not None:
        token = args.bearer_token_file.read_text(encoding="utf-8").strip()
    lineage = LineageSettings.from_env(
        granularity=args.granularity,
        namespace=args.namespace,
        trace_ui_url=args.trace_ui_url,
        buffer_max_spans=args.max_spans,
        buffer_timeout_seconds=args.max_age,
        queue_max_events=args.queue_max_events,
        default_file=args.events_file,
        spool_dir=None if args.no_spool else str(args.spool_dir / "events"),
        spool_max_bytes=args.spool_max_bytes,
    )
    if args.no_spool:  # from_env ignores a None override: OTEL_SQLA_LINEAGE_SPOOL_DIR stays
        lineage = dataclasses.replace(lineage, spool_dir=None)
    return ServiceSettings(
        listen=args.listen,
        lineage=lineage,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        bearer_token=token or None,
        max_message_bytes=args.max_message_bytes,
        metrics_listen=args.metrics_listen,
        spool_dir=None if args.no_spool else args.spool_dir,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = settings_from(args)
        environ = dict(os.environ)
        if args.openlineage_config is not None:
            if not args.openlineage_config.is_file():
                raise ConfigError(f"--openlineage-config: no file {args.openlineage_config}")
            environ["OPENLINEAGE_CONFIG"] = str(args.openlineage_config)
        sink = sink_from_environment(settings.lineage, environ)
        server, port, service, health = build_server(settings, sink)
    except (ConfigError, OSError) as exc:
        print(f"collector-exporter: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        _log.info("received %s: shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.start()
    metrics = serve_metrics(settings.metrics_listen, service.stats) if settings.metrics_listen \
        else None
    _log.info(
        "listening for OTLP traces on %s (port %d, %s%s); lineage to %s; granularity %s; %s",
        settings.listen, port, "TLS" if settings.tls_cert else "plaintext",
        ", bearer token required" if settings.bearer_token else "", sink.description,
        settings.lineage.granularity,
        f"spool {settings.spool_dir.absolute()} (requests acknowledged once on disk)"
        if settings.spool_dir else "no spool (requests acknowledged once in memory)",
    )
    # Python runs signal handlers in the main thread only, between bytecodes: wake up
    # often so a signal the kernel delivered to another thread is acted on promptly.
    next_stats = time.monotonic() + args.stats_interval if args.stats_interval else None
    while not stop.wait(0.5):
        if next_stats is not None and time.monotonic() >= next_stats:
            _log.info("counters: %s", service.stats())
            next_stats = time.monotonic() + args.stats_interval
    health.enter_graceful_shutdown()
    server.stop(settings.grace_seconds).wait()
    flushed = service.close(30.0)
    if metrics is not None:
        metrics.shutdown()
    stats = service.stats()
    outcome = "all held runs flushed" if flushed else "flush timed out"
    if stats.get("spool_pending"):
        outcome += (f"; {stats['spool_pending']} event(s) wait in the spool for the next "
                    "start (the backend did not take them in time)")
    _log.info("stopped (%s); counters: %s", outcome, stats)
    return 0 if flushed else 1


if __name__ == "__main__":
    raise SystemExit(main())
