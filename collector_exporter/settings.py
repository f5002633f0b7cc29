"""collector_exporter's settings: one frozen dataclass, from the command line and the
environment (``OTEL_SQLA_LINEAGE_COLLECTOR_*``; lineage settings as in the library)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from otel_sqla_lineage.errors import ConfigError
from otel_sqla_lineage.settings import LineageSettings

DEFAULT_LISTEN = "127.0.0.1:4417"
# OTLP's own default limit is 4 MiB; the Collector's batches stay well under it.
DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
DEFAULT_SPOOL_DIR = "lineage-spool"


@dataclass(frozen=True)
class ServiceSettings:
    listen: str = DEFAULT_LISTEN
    lineage: LineageSettings = field(default_factory=LineageSettings)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    bearer_token: str | None = None
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    metrics_listen: str | None = None
    workers: int = 4
    grace_seconds: float = 10.0
    # Request log (acknowledge after writing) + event spool under it; None: neither, a
    # request is acknowledged once it is in memory.
    spool_dir: Path | None = None
    request_log_max_bytes: int = 64 * 1024 * 1024

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("--tls-cert and --tls-key go together")
        for path in (self.tls_cert, self.tls_key):
            if path is not None and not path.is_file():
                raise ConfigError(f"TLS file not found: {path}")
        if ":" not in self.listen:
            raise ConfigError(f"--listen must be host:port, not {self.listen!r}")
        if self.max_message_bytes < 1024:
            raise ConfigError("--max-message-bytes must be at least 1024")
