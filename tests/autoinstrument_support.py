"""Helpers of the tests that run an application under ``opentelemetry-instrument`` in a
child process: the smallest such application, and the spans ``ConsoleSpanExporter`` printed.
"""

from __future__ import annotations

import json
from typing import Any

# The start of a one-model application (``__main__.Book``, table ``books``) on the SQLite file
# named by its first argument; the tests append what it does with ``engine``.
BOOK_APP_MODEL = """
import sys

import sqlalchemy
from sqlalchemy import Column, Integer, String, event, select
from sqlalchemy.orm import Session, declarative_base

Base = declarative_base()


class Book(Base):
    __tablename__ = "books"
    id = Column(Integer, primary_key=True)
    title = Column(String(50), nullable=False)


engine = sqlalchemy.create_engine("sqlite:///" + sys.argv[1])
"""


def console_spans(stdout: str) -> list[dict[str, Any]]:
    """The JSON objects the SDK's ConsoleSpanExporter printed, one per span (it prints them
    indented, one after another, not one a line)."""
    decoder = json.JSONDecoder()
    spans, index = [], 0
    while True:
        index = stdout.find("{", index)
        if index < 0:
            return spans
        span, index = decoder.raw_decode(stdout, index)
        spans.append(span)
