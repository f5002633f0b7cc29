"""A bookshop on Flask + Flask-SQLAlchemy with two databases bound to one session: users in
SQLite, books and loans in PostgreSQL. It has no OpenTelemetry code of its own: run it under
``opentelemetry-instrument``, and every request that runs SQL becomes one OpenLineage job
(``<service.name>.<METHOD> <route>``) whose datasets sit in their own database's namespace.

    export BOOKSHOP_BOOKS_DATABASE_URL=postgresql+psycopg2://user:password@host:5432/db
    export BOOKSHOP_USERS_DATABASE_URL=sqlite:////var/lib/bookshop/users.db
    OTEL_SERVICE_NAME=bookshop OTEL_TRACES_EXPORTER=openlineage \\
        opentelemetry-instrument python examples/flask_two_binds/app.py --port 5055

``run.sh`` beside this file does all of it against the project's PostgreSQL.

Routes: ``POST /users``, ``POST /books``, ``GET /books``, ``POST /loans`` (reads the user
from SQLite and the book from PostgreSQL, writes the loan and the stock to PostgreSQL),
``GET /loans`` (loans and books from PostgreSQL, names from SQLite), ``GET /health`` (no SQL,
so no job). A duplicate user or book is answered 409 (the error is handled: the run
completes); a loan of a book with no copies left breaks the stock's CHECK constraint, which
nothing handles: 500, and the run fails.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from flask import Flask, abort, request
from models import PG_SCHEMA, Book, Loan, User, db
from opentelemetry import trace
from sqlalchemy import make_url, select, text
from sqlalchemy.exc import IntegrityError, OperationalError
from werkzeug.exceptions import HTTPException
from werkzeug.serving import make_server

log = logging.getLogger("bookshop")

BOOKS_URL_ENV = "BOOKSHOP_BOOKS_DATABASE_URL"
USERS_URL_ENV = "BOOKSHOP_USERS_DATABASE_URL"


def create_app(books_url: str, users_url: str) -> Flask:
    app = Flask("bookshop")
    app.config["SQLALCHEMY_DATABASE_URI"] = books_url
    app.config["SQLALCHEMY_BINDS"] = {"users": users_url}
    db.init_app(app)

    @app.errorhandler(HTTPException)
    def as_json(error: HTTPException) -> tuple[dict[str, Any], int]:
        # also answers unhandled exceptions (as 500): Flask has logged them by then, and
        # the request's span has them too (it ends with the request, status ERROR)
        return {"error": error.description}, error.code or 500

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/users")
    def register_user() -> tuple[dict[str, Any], int]:
        body = _fields("name", "email")
        return _add_new(User(name=body["name"], email=body["email"]),
                        "a user with this email exists")

    @app.post("/books")
    def add_book() -> tuple[dict[str, Any], int]:
        body = _fields("title", "author", "copies")
        return _add_new(Book(title=body["title"], author=body["author"],
                             copies=int(body["copies"])), "a book with this title exists")

    @app.get("/books")
    def list_books() -> dict[str, Any]:
        books = db.session.scalars(select(Book).order_by(Book.title))
        return {"books": [{"title": b.title, "author": b.author, "copies": b.copies}
                          for b in books]}

    @app.post("/loans")
    def lend_book() -> tuple[dict[str, Any], int]:
        body = _fields("email", "title")
        user = db.session.scalar(select(User).where(User.email == body["email"]))
        book = db.session.scalar(select(Book).where(Book.title == body["title"]))
        if user is None or book is None:
            return {"error": "no such user or book"}, 404
        book.copies -= 1
        loan = Loan(book_id=book.id, user_id=user.id)
        db.session.add(loan)
        # No copies left: PostgreSQL refuses the UPDATE (books_copies_not_negative). Left
        # unhandled on purpose: Flask answers 500 and the request's run FAILs.
        db.session.flush()
        loan_id = loan.id
        db.session.commit()
        return {"id": loan_id}, 201

    @app.get("/loans")
    def list_loans() -> dict[str, Any]:
        loans = db.session.execute(
            select(Loan.id, Loan.user_id, Book.title).join(Book, Loan.book_id == Book.id)
            .order_by(Loan.id)
        ).all()
        names = dict(db.session.execute(
            select(User.id, User.name).where(User.id.in_({loan.user_id for loan in loans}))
        ).all())
        return {"loans": [{"id": loan.id, "title": loan.title, "user": names.get(loan.user_id)}
                          for loan in loans]}

    return app


def _add_new(row: User | Book, duplicate: str) -> tuple[dict[str, Any], int]:
    """Inserts ``row``: 201 with its id, or 409 saying ``duplicate`` when a unique constraint
    refuses it (handled, so the request's run completes)."""
    db.session.add(row)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        return {"error": duplicate}, 409
    row_id = row.id
    db.session.commit()
    return {"id": row_id}, 201


def _fields(*names: str) -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or any(name not in body for name in names):
        abort(400, description=f"a JSON object with {', '.join(names)} is expected")
    return body


def init_db(app: Flask, *, reset: bool) -> None:
    """Creates the schema and the tables of both binds inside one span of its own, so the
    set-up is one job too (``<service.name>.init_db``) instead of a run per DDL statement."""
    with app.app_context(), trace.get_tracer("bookshop").start_as_current_span("init_db"):
        if reset:
            db.drop_all()
        with db.engine.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{PG_SCHEMA}"'))
        db.create_all()


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="app.py",
        description="The bookshop: Flask + Flask-SQLAlchemy, users in one database, books "
                    "in another. Run it under opentelemetry-instrument for lineage.",
        epilog=f"Databases come from the environment, never from the command line: "
               f"{BOOKS_URL_ENV} (PostgreSQL: books, loans; required), {USERS_URL_ENV} "
               f"(users; default: SQLite file ./bookshop-users.db). BOOKSHOP_PG_SCHEMA: the "
               f"PostgreSQL schema of books and loans (default bookshop). SIGTERM or Ctrl-C "
               f"stops the server; the tracer provider then flushes the lineage.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on "
                        "(default %(default)s)")
    parser.add_argument("--port", type=int, default=5055,
                        help="port; 0 picks a free one (default %(default)s)")
    parser.add_argument("--reset", action="store_true",
                        help="drop the example's tables first (the users table and the "
                             "schema's books and loans), so a run starts empty")
    return parser.parse_args(argv)


def _stop(signum: int, _frame: object) -> NoReturn:
    # SystemExit unwinds serve_forever(), and the interpreter's exit runs the tracer
    # provider's shutdown: the last runs are emitted and delivered.
    log.info("stopping (%s)", signal.Signals(signum).name)
    raise SystemExit(0)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    books_url = os.environ.get(BOOKS_URL_ENV)
    if not books_url:
        log.error("%s is not set: it names the PostgreSQL database of books and loans",
                  BOOKS_URL_ENV)
        return 2
    users_url = os.environ.get(USERS_URL_ENV) or f"sqlite:///{Path('bookshop-users.db').resolve()}"
    app = create_app(books_url, users_url)
    try:
        init_db(app, reset=args.reset)
    except OperationalError as exc:
        # the driver's own message names host and port, never the password
        log.error("cannot set up the databases: %s", exc.orig or exc)
        return 1
    server = make_server(args.host, args.port, app, threaded=True)
    signal.signal(signal.SIGTERM, _stop)
    log.info("books and loans in %s (schema %s), users in %s",
             make_url(books_url).render_as_string(hide_password=True), PG_SCHEMA,
             make_url(users_url).render_as_string(hide_password=True))
    log.info("listening on http://%s:%d", args.host, server.server_port)
    server.serve_forever()  # returns on Ctrl-C, having closed the socket
    return 0


if __name__ == "__main__":
    sys.exit(main())
