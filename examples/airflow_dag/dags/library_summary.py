"""A DAG whose tasks work on an ORM session through SQLAlchemySessionOperator.

seed_library -> summarize_loans ------> report (runs whatever happened upstream)
             -> load_late_fees (fails on purpose: a duplicate primary key) -^
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG
from library_db import Book, LateFee, Loan, LoanSummary
from sqla_session_operator import SQLAlchemySessionOperator
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

CONN_ID = "library_db"


def seed_library(session: Session, context: Any) -> int:
    session.execute(delete(Loan))
    session.execute(delete(Book))
    session.add_all([Book(id=1, title="Dune"), Book(id=2, title="Emma"),
                     Book(id=3, title="Ulysses")])
    session.flush()
    today = date.today()
    session.add_all([Loan(id=10, book_id=1, due=today - timedelta(days=3)),
                     Loan(id=11, book_id=1, due=today + timedelta(days=7)),
                     Loan(id=12, book_id=2, due=today - timedelta(days=1))])
    return 3


def summarize_loans(session: Session, context: Any) -> int:
    rows = session.execute(
        select(Book.id, Book.title, func.count(Loan.id))
        .join(Loan, Loan.book_id == Book.id)
        .group_by(Book.id, Book.title)
    ).all()
    session.execute(delete(LoanSummary))
    session.add_all([LoanSummary(book_id=i, title=t, loans=n) for i, t, n in rows])
    return len(rows)


def load_late_fees(session: Session, context: Any) -> None:
    overdue = session.scalars(select(Loan).where(Loan.due < date.today())).all()
    # the bug on purpose: every fee gets the first overdue loan's id
    session.add_all([LateFee(loan_id=overdue[0].id, amount=0.5) for _ in overdue])
    session.flush()  # IntegrityError: the operator rolls back, the task fails


def report(session: Session, context: Any) -> int:
    return int(session.scalar(select(func.sum(LoanSummary.loans))) or 0)


with DAG(
    dag_id="library_summary",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
) as dag:
    seed = SQLAlchemySessionOperator(task_id="seed_library", conn_id=CONN_ID,
                                     python_callable=seed_library)
    summarize = SQLAlchemySessionOperator(task_id="summarize_loans", conn_id=CONN_ID,
                                          python_callable=summarize_loans)
    fees = SQLAlchemySessionOperator(task_id="load_late_fees", conn_id=CONN_ID,
                                     python_callable=load_late_fees)
    final = SQLAlchemySessionOperator(task_id="report", conn_id=CONN_ID,
                                      python_callable=report, trigger_rule="all_done")
    seed >> [summarize, fees]
    [summarize, fees] >> final
