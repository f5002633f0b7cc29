"""An application that writes secrets to its database every way SQL allows: literals in
``text()`` / driver SQL next to password, token and secret columns, bound parameters, and
failing statements whose error text quotes them. Each secret is a unique marker the tests
search every output for.

Run as a script under ``opentelemetry-instrument`` (``argv[1]``: the database URL), or
imported by the in-process tests (``run_statements``).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import sqlalchemy as sa
from opentelemetry import trace

# every value written to a sensitive column, or bound: none may appear in any output
LITERAL_SECRETS = (
    "pw-LIT-01", "tok-LIT-02", "pw-LIT-03", "tok-LIT-04", "tok-LIT-05", "sec-LIT-06",
    "sec-LIT-07", "hash-LIT-08", "pw-LIT-09", "key-LIT-10", "tok-LIT-15", "sec-LIT-16",
)
BOUND_SECRETS = ("pw-BOUND-11", "tok-BOUND-12", "pw-BOUND-13")
POSTGRES_SECRETS = ("sec-LIT-DOLLAR-17", "pw-BOUND-INT-18")
# not sensitive: the redaction is targeted, so these stay in the sql facet
KEPT_LITERALS = ("'bob'", "'al''ice'")

accounts = sa.Table(
    "accounts", sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(50)),
    sa.Column("password", sa.String(50)),
    sa.Column("api_token", sa.String(50), unique=True),
    sa.Column("secret", sa.String(50)),
    sa.Column("password_hash", sa.String(50)),
    sa.Column("ApiKey", sa.String(50)),
)


def run_statements(engine: sa.engine.Engine, tracer: trace.Tracer) -> None:
    """One job, ``rotate_credentials``; failures are caught inside it, as an application
    that handles them would (so the job completes)."""
    postgres = engine.dialect.name == "postgresql"
    accounts.drop(engine, checkfirst=True)
    accounts.create(engine)
    with tracer.start_as_current_span("rotate_credentials"):
        with engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO accounts (id, name, password, api_token) VALUES "
                "(1, 'bob', 'pw-LIT-01', 'tok-LIT-02'), (2, 'al''ice', 'pw-LIT-03', "
                "'tok-LIT-04')"))
            conn.execute(sa.text("UPDATE accounts SET api_token = 'tok-LIT-05' WHERE id = 1"))
            conn.execute(sa.text(
                "SELECT id FROM accounts WHERE secret = 'sec-LIT-06' OR 'sec-LIT-07' = secret"
            )).all()
            conn.execute(sa.text(
                "UPDATE accounts SET password_hash='hash-LIT-08' WHERE name = 'bob'"))
            conn.exec_driver_sql(
                "UPDATE \"accounts\" SET \"password\" = 'pw-LIT-09', \"ApiKey\" = 'key-LIT-10' "
                "WHERE id = 2")
            conn.execute(sa.text("UPDATE accounts SET password = :p WHERE id = :id"),
                         {"p": "pw-BOUND-11", "id": 1})
            conn.execute(accounts.insert().values(id=3, name="carol", password="pw-BOUND-13",
                                                  api_token="tok-BOUND-12"))
            if postgres:
                conn.execute(sa.text(
                    "UPDATE accounts SET secret = $q$sec-LIT-DOLLAR-17$q$ WHERE id = 3"))
        failing: list[tuple[Any, dict[str, Any]]] = [
            # the error quotes the statement (SQLAlchemy's [SQL: ...], PostgreSQL's LINE 1)
            (sa.text("UPDATE accounts SET api_token = 'tok-LIT-15' WHERE WHERE"), {}),
            (sa.text("INSERT INTO accounts (id, secret) VALUES (9, 'sec-LIT-16') garbage"), {}),
            # unique violation: PostgreSQL's DETAIL and SQLAlchemy's [parameters: ...]
            (accounts.insert(), {"id": 4, "api_token": "tok-BOUND-12"}),
        ]
        if postgres:
            # PostgreSQL quotes the value it cannot convert in the message itself
            failing.append((sa.text("SELECT id FROM accounts WHERE id = CAST(:v AS integer)"),
                            {"v": "pw-BOUND-INT-18"}))
        for statement, params in failing:
            try:
                with engine.begin() as conn:
                    conn.execute(statement, params)
            except sa.exc.DBAPIError:
                logging.getLogger("secrets_app").info("statement failed as intended")


def main() -> None:
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("secrets_app").debug("debug logging on for every logger")
    engine = sa.create_engine(sys.argv[1])
    run_statements(engine, trace.get_tracer("secrets_app"))
    engine.dispose()
    print("done", file=sys.stderr)


if __name__ == "__main__":
    main()
