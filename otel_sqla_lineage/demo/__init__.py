"""The demo: a small library app on SQLite whose reads and writes become traces and
lineage. ``python -m otel_sqla_lineage.demo --help``."""
