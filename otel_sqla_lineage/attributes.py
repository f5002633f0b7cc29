"""Every span attribute key this project reads or writes, in one place.

The first block is our contract (see the README, "Span attributes"); the rest are
OpenTelemetry semantic-convention keys we read, old and new names side by side because
instrumentations in the wild emit either.
"""

from typing import Final

# --- written by SQLAlchemyLineageInstrumentor (contract) ---
DB_OPERATION_NAME: Final = "db.operation.name"
DB_COLLECTION_NAME: Final = "db.collection.name"
SQLALCHEMY_MAPPERS: Final = "db.sqlalchemy.mappers"
SQLALCHEMY_TABLES_READ: Final = "db.sqlalchemy.tables.read"
SQLALCHEMY_TABLES_WRITTEN: Final = "db.sqlalchemy.tables.written"
SQLALCHEMY_SOURCE: Final = "db.sqlalchemy.source"
OPENLINEAGE_RUN_ID: Final = "openlineage.run.id"

# Not in the contract table, but documented in the README: the row count the driver
# reported for DML, and the dataset coordinates as the instrumentor saw them on the engine
# (URL without credentials, dialect's default schema), so the converter need not guess.
SQLALCHEMY_ROWCOUNT: Final = "db.sqlalchemy.rowcount"
SQLALCHEMY_DEFAULT_SCHEMA: Final = "db.sqlalchemy.default_schema"
# JSON {"<table>": [["<column>", "<SQL type>"], ...]}, on the first statement touching a
# table (and again every few minutes), so the Collector path learns schemas too.
SQLALCHEMY_SCHEMA: Final = "db.sqlalchemy.schema"
# JSON {"<written table>": {"<column>": [["<input table>", "<input column>"], ...]}}
# for INSERT ... SELECT and similar.
SQLALCHEMY_COLUMN_LINEAGE: Final = "db.sqlalchemy.column_lineage"
OPENLINEAGE_DATASET_NAMESPACE: Final = "openlineage.dataset.namespace"
# Set by the application on an enclosing span whose parent run is not a span, such as the
# task run of Airflow's OpenLineage provider: "{namespace}/{job name}/{runId}", the format
# of that provider's lineage_parent_id / lineage_root_parent_id macros.
OPENLINEAGE_PARENT_ID: Final = "openlineage.parent.id"
OPENLINEAGE_ROOT_PARENT_ID: Final = "openlineage.root_parent.id"

# --- semantic conventions we read (stable names first, then the deprecated ones) ---
DB_SYSTEM_NAME: Final = "db.system.name"
DB_SYSTEM: Final = "db.system"
DB_NAMESPACE: Final = "db.namespace"
DB_NAME: Final = "db.name"
DB_QUERY_TEXT: Final = "db.query.text"
DB_STATEMENT: Final = "db.statement"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
NET_PEER_NAME: Final = "net.peer.name"
NET_PEER_PORT: Final = "net.peer.port"
SERVICE_NAME: Final = "service.name"
EXCEPTION_MESSAGE: Final = "exception.message"
EXCEPTION_STACKTRACE: Final = "exception.stacktrace"
