"""The bookshop's tables, in two databases bound to one Flask-SQLAlchemy session.

- ``users`` has the bind key ``users``: a SQLite file (``BOOKSHOP_USERS_DATABASE_URL``).
- ``books`` and ``loans`` are on the default bind, PostgreSQL
  (``BOOKSHOP_BOOKS_DATABASE_URL``), in the schema ``BOOKSHOP_PG_SCHEMA`` (default
  ``bookshop``) so the example never touches tables of its own name in ``public``.

A loan names its user by id only: the user lives in the other database, where no foreign
key can reach. The stock is the database's business: ``books.copies`` may not go below 0.
"""

from __future__ import annotations

import os

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import CheckConstraint, ForeignKey, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Read once at import: the tables' schema is part of their definition.
PG_SCHEMA = os.environ.get("BOOKSHOP_PG_SCHEMA", "bookshop")


class Base(DeclarativeBase):
    pass


# For every bind: SQLAlchemy leaves bound parameter values out of its exception messages,
# which the OpenTelemetry SDK records on the request's span.
db = SQLAlchemy(model_class=Base, engine_options={"hide_parameters": True})


class User(db.Model):  # type: ignore[name-defined,misc]
    __bind_key__ = "users"
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str] = mapped_column(String(200), unique=True)


class Book(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "books"
    __table_args__ = (
        CheckConstraint("copies >= 0", name="books_copies_not_negative"),
        {"schema": PG_SCHEMA},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200), unique=True)
    author: Mapped[str] = mapped_column(String(200))
    copies: Mapped[int]


class Loan(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "loans"
    __table_args__ = ({"schema": PG_SCHEMA},)

    id: Mapped[int] = mapped_column(primary_key=True)
    book_id: Mapped[int] = mapped_column(ForeignKey(f"{PG_SCHEMA}.books.id"))
    user_id: Mapped[int]  # in the users database: no foreign key across databases
