# What opentelemetry-instrument's dependency check reads for our entry point. Kept in step
# with the `instruments` extra in pyproject.toml (a test pins that they agree).
_instruments = ("sqlalchemy >= 1.4.36, < 2.2",)
