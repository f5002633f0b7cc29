"""The example's data: a small library (books, loans) and the tables its DAG writes.

``python library_db.py setup URL`` creates the tables (before the DAG runs, so the DAG's
lineage shows its own reads and writes, not the schema set-up).
"""

from __future__ import annotations

import sys
from datetime import date

from sqlalchemy import Date, ForeignKey, Integer, Numeric, String, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Book(Base):
    __tablename__ = "books"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(200))


class Loan(Base):
    __tablename__ = "loans"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    book_id: Mapped[int] = mapped_column(ForeignKey("books.id"))
    due: Mapped[date] = mapped_column(Date)


class LoanSummary(Base):
    __tablename__ = "loan_summary"
    book_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    loans: Mapped[int] = mapped_column(Integer)


class LateFee(Base):
    __tablename__ = "late_fees"
    loan_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    amount: Mapped[float] = mapped_column(Numeric(8, 2))


def setup(url: str) -> None:
    engine = create_engine(url)
    Base.metadata.create_all(engine)
    engine.dispose()


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "setup":
        sys.exit("usage: library_db.py setup SQLALCHEMY_URL")
    setup(sys.argv[2])
