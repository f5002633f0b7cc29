"""Dataset namespace and name, per the OpenLineage naming spec, from a database URL or from
span attributes. Credentials never enter a namespace: only scheme, host, port and path.

| system     | namespace                         | name                          |
|------------|-----------------------------------|-------------------------------|
| postgresql | ``postgres://host:port``          | ``database.schema.table``     |
| mysql      | ``mysql://host:port``             | ``database.table``            |
| mssql      | ``mssql://host:port``             | ``database.schema.table``     |
| oracle     | ``oracle://host:port``            | ``service.schema.table``      |
| trino      | ``trino://host:port``             | ``catalog.schema.table``      |
| snowflake  | ``snowflake://account``           | ``database.schema.table``     |
| bigquery   | ``bigquery``                      | ``project.dataset.table``     |
| duckdb     | ``duckdb://host/abs/path``        | ``database.schema.table``     |
| sqlite     | ``sqlite://host/abs/path``        | ``table`` (not in the spec)   |
| other      | ``<system>://host:port``          | ``[database.][schema.]table`` |

Unqualified tables get the database's default schema (``public`` for PostgreSQL, ``dbo``
for SQL Server, ``main`` for DuckDB) when the instrumentation did not report one.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any, Final

_DEFAULT_PORTS: Final = {
    "postgres": 5432,
    "mysql": 3306,
    "mssql": 1433,
    "oracle": 1521,
    "trino": 8080,
}
_DEFAULT_SCHEMAS: Final = {"postgres": "public", "mssql": "dbo", "duckdb": "main"}

# SQLAlchemy dialect names and OpenTelemetry db.system(.name) values -> spec scheme.
_SCHEMES: Final = {
    "postgresql": "postgres",
    "postgres": "postgres",
    "redshift": "redshift",
    "aws.redshift": "redshift",
    "mysql": "mysql",
    "mariadb": "mysql",
    "mssql": "mssql",
    "microsoft.sql_server": "mssql",
    "oracle": "oracle",
    "oracle.db": "oracle",
    "sqlite": "sqlite",
    "trino": "trino",
    "snowflake": "snowflake",
    "bigquery": "bigquery",
    "gcp.bigquery": "bigquery",
    "duckdb": "duckdb",
}
# Where the name has a database part and a schema part.
_THREE_PART: Final = frozenset({"postgres", "mssql", "oracle", "trino", "snowflake", "duckdb",
                                "redshift", "bigquery"})
_FILE_BASED: Final = frozenset({"sqlite", "duckdb"})


def default_schema_of(scheme: str) -> str | None:
    """The schema unqualified tables land in when nothing says otherwise."""
    return _DEFAULT_SCHEMAS.get(scheme)


def scheme_for(system: str | None) -> str:
    if not system:
        return "unknown"
    lowered = system.lower()
    return _SCHEMES.get(lowered, lowered.split("+", 1)[0])


@dataclass(frozen=True, slots=True)
class DatabaseLocation:
    """Where a database lives, with no credentials. ``database`` is the database/catalog
    name (for file databases: the absolute path)."""

    scheme: str
    host: str | None
    port: int | None
    database: str | None
    default_schema: str | None = None
    # set by the instrumentor, which saw the engine URL (e.g. an absolute SQLite path
    # on the app's host); wins over what the other fields would give
    explicit_namespace: str | None = None

    @property
    def namespace(self) -> str:
        if self.explicit_namespace:
            return self.explicit_namespace
        if self.scheme == "bigquery":
            return "bigquery"
        if self.scheme in _FILE_BASED:
            path = self.database or ":memory:"
            host = self.host or _hostname()
            return f"{self.scheme}://{host}{path if path.startswith('/') else '/' + path}"
        if self.scheme == "snowflake":
            return f"snowflake://{self.host or 'unknown'}"
        host = self.host or "localhost"
        port = self.port or _DEFAULT_PORTS.get(self.scheme)
        return f"{self.scheme}://{host}:{port}" if port else f"{self.scheme}://{host}"

    @property
    def uri(self) -> str:
        """The dataSource URI: the namespace plus the database, never a user or password."""
        if self.scheme in _FILE_BASED or self.scheme == "bigquery" or not self.database:
            return self.namespace
        return f"{self.namespace}/{self.database}"

    def dataset_name(self, table: str) -> str:
        if self.scheme == "sqlite":
            return table
        parts = table.split(".")
        if self.scheme in _THREE_PART:
            if len(parts) == 1:
                schema = self.default_schema or _DEFAULT_SCHEMAS.get(self.scheme)
                parts = [schema, *parts] if schema else parts
            database = self.database
            if self.scheme == "duckdb":
                database = os.path.splitext(os.path.basename(self.database or "memory"))[0]
            if len(parts) == 2 and database:
                parts = [database, *parts]
            return ".".join(parts)
        if self.scheme == "mysql":
            return table if len(parts) > 1 or not self.database else f"{self.database}.{table}"
        if self.database and len(parts) < 3:
            return f"{self.database}.{table}"
        return table


def location_from_url(url: Any, default_schema: str | None = None) -> DatabaseLocation:
    """From a SQLAlchemy ``URL``; the password is never read."""
    backend = url.get_backend_name()
    scheme = scheme_for(backend)
    database = url.database
    host = url.host
    if scheme in _FILE_BASED:
        if database and database != ":memory:" and not database.startswith("file:"):
            database = os.path.abspath(database)
        host = None
    if scheme == "snowflake":
        host = host.split(".")[0] if host else host
    if scheme == "bigquery":
        # sqlalchemy-bigquery: bigquery://<project>/<default dataset>
        return DatabaseLocation(scheme, None, None, host, default_schema or database)
    return DatabaseLocation(scheme, host, url.port, database, default_schema)


def _hostname() -> str:
    return _HOSTNAME


_HOSTNAME: Final = socket.gethostname()
