"""collector_exporter: an OTLP gRPC trace service that turns the traces an OpenTelemetry
Collector sends it into OpenLineage events, with the same converter as the in-process
exporter (``otel_sqla_lineage``): the same spans give the same events, run IDs included.

Run it::

    python -m collector_exporter --listen 127.0.0.1:4417      # or: collector-exporter

and point a Collector's ``otlp_grpc`` exporter at it (see ``otel-collector-config.yaml``).
Where events go is configured as for any OpenLineage client (``openlineage.yml``,
``OPENLINEAGE_URL``, ``OPENLINEAGE__TRANSPORT__*``); with nothing configured, JSON lines in
the working directory. A request is acknowledged once it is on disk (``--spool-dir``,
default ``./lineage-spool``): a request log replayed after a crash, and a spool of the
events the backend has not taken yet. ``--help`` lists every option.
"""

from collector_exporter.server import build_server
from collector_exporter.settings import ServiceSettings

__all__ = ["ServiceSettings", "build_server"]
