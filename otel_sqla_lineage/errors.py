"""One exception root for the project, so callers can catch ours without catching theirs."""


class OtelSqlaLineageError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(OtelSqlaLineageError, ValueError):
    """A setting (argument, environment variable or openlineage.yml) cannot be used."""
