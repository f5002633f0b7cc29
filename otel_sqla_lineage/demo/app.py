"""The library's operations, each inside a named span: the span is the OpenLineage job
(``library.checkout_book``), the statements inside it its reads and writes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from opentelemetry import trace
from opentelemetry.trace import Tracer
from sqlalchemy.orm import Session, joinedload, selectinload

from otel_sqla_lineage.demo.models import Base, Book, BookHistory, Post, User


class BookUnavailable(Exception):
    """Every copy is out; the checkout job fails."""


class Library:
    def __init__(self, engine: sa.engine.Engine, tracer: Tracer | None = None) -> None:
        self.engine = engine
        self.tracer = tracer or trace.get_tracer("otel_sqla_lineage.demo")

    def setup(self) -> None:
        with self.tracer.start_as_current_span("setup_schema"):
            Base.metadata.drop_all(self.engine)
            Base.metadata.create_all(self.engine)

    def seed(self) -> None:
        with self.tracer.start_as_current_span("seed_catalog"), Session(self.engine) as s:
            s.add_all(
                [
                    User(name="Ada", email="ada@example.org"),
                    User(name="Grace", email="grace@example.org"),
                    Book(title="Dune", author="Herbert", copies_available=2),
                    Book(title="Solaris", author="Lem", copies_available=1),
                    Book(title="Kindred", author="Butler", copies_available=1),
                ]
            )
            s.commit()

    def book_inventory(self) -> list[tuple[str, int]]:
        with self.tracer.start_as_current_span("book_inventory"), Session(self.engine) as s:
            rows: Sequence[Any] = s.execute(
                sa.select(Book.title, Book.copies_available).order_by(Book.title)
            ).all()
            return [(str(title), int(copies)) for title, copies in rows]

    def checkout_book(self, user_email: str, title: str) -> None:
        with self.tracer.start_as_current_span("checkout_book"), Session(self.engine) as s:
            user = s.execute(sa.select(User).where(User.email == user_email)).scalar_one()
            book = s.execute(sa.select(Book).where(Book.title == title)).scalar_one()
            if book.copies_available < 1:
                raise BookUnavailable(f"no copy of {title!r} is available")
            book.copies_available -= 1  # type: ignore[assignment]  # (1.4-style models)
            s.add(BookHistory(book=book, user=user, checked_out=dt.date(2026, 11, 1)))
            s.commit()

    def return_book(self, user_email: str, title: str) -> None:
        with self.tracer.start_as_current_span("return_book"), Session(self.engine) as s:
            entry = s.execute(
                sa.select(BookHistory)
                .join(BookHistory.user)
                .join(BookHistory.book)
                .where(User.email == user_email, Book.title == title,
                       BookHistory.returned.is_(None))
                .options(joinedload(BookHistory.book))
            ).scalar_one()
            entry.returned = dt.date(2026, 11, 15)
            entry.book.copies_available += 1
            s.commit()

    def write_post(self, user_email: str, title: str, body: str) -> None:
        with self.tracer.start_as_current_span("write_post"), Session(self.engine) as s:
            user = s.execute(sa.select(User).where(User.email == user_email)).scalar_one()
            book = s.execute(sa.select(Book).where(Book.title == title)).scalar_one()
            s.add(Post(author=user, book_id=book.id, body=body))
            s.commit()

    def reading_report(self) -> list[tuple[str, int]]:
        """Who read what: users with their history and posts (relationship loads)."""
        with self.tracer.start_as_current_span("reading_report"), Session(self.engine) as s:
            users = s.execute(
                sa.select(User).options(selectinload(User.history), selectinload(User.posts))
            ).scalars().all()
            return [(str(u.name), len(u.history)) for u in users]

    def register_duplicate_user(self) -> None:
        """A unique-constraint violation: the job fails with the database's message."""
        with self.tracer.start_as_current_span("register_user"), Session(self.engine) as s:
            s.add(User(name="Ada again", email="ada@example.org"))
            s.commit()
