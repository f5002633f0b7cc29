"""Error messages without bound parameter values, for events and for our own spans.

Drivers and SQLAlchemy put values in exception text: SQLAlchemy's ``[parameters: …]``,
PostgreSQL's ``DETAIL:`` and statement excerpt, values a driver could not convert. What
SQL an error quotes is redacted by :mod:`otel_sqla_lineage.redact`.
"""

from __future__ import annotations

import functools
import re
from typing import Final

from otel_sqla_lineage.redact import SENSITIVE_ANYWHERE, redact_sql

_MAX_ERROR_CHARS: Final = 4000
# SQLAlchemy puts bound parameters in str(exception); PostgreSQL puts key values in DETAIL.
_PARAMETERS_BLOCK = re.compile(r"\[parameters: .*?\](?=\s*(?:\n|\(Background|$))", re.DOTALL)
_DETAIL_LINE = re.compile(r"^\s*DETAIL:.*$", re.MULTILINE)
# psycopg2 binds on the client, so PostgreSQL's excerpt of the statement ("LINE 1: …" and
# its caret line) shows bound values; so may QUERY: and CONTEXT: (PL/pgSQL, COPY rows)
_STATEMENT_EXCERPT = re.compile(
    r"^LINE \d+: .*$(?:\n^[ \t]*\^[ \t]*$)?|^\s*(?:QUERY|CONTEXT):.*$", re.MULTILINE
)
# MySQL/MariaDB quote the offending value: "Duplicate entry 'ada@example.org' for key ..."
_DUPLICATE_ENTRY = re.compile(r"Duplicate entry '(?:[^'\\]|\\.)*'")
# PostgreSQL quotes a bound value it cannot convert in the message itself
_INVALID_INPUT = re.compile(
    r'((?:invalid|malformed|out of range|unrecognized)[^:\n]{0,80}: )"(?:[^"\n]|"")*"'
)
# MySQL/MariaDB: "Incorrect integer value: 'abc' for column ..."
_INCORRECT_VALUE = re.compile(
    r"((?:Incorrect|Truncated incorrect) [\w ]{1,40} value: )'(?:[^'\\]|\\.)*'"
)
# PostgreSQL names the token it stopped at; a string literal there may be a bound value
_AT_OR_NEAR_LITERAL = re.compile(r'(at or near )"\'(?:[^"\n]|"")*\'?"')
_SQL_BLOCK = re.compile(r"\[SQL: (.*?)\](?=\s*(?:\n|\[parameters|\(Background|$))", re.DOTALL)
_BACKGROUND = re.compile(r"\(Background on this error at: [^)]*\)")
_BLANK_LINES = re.compile(r"\n\s*\n+")


def scrub_error_message(message: str) -> str:
    """SQLAlchemy's ``[parameters: …]`` block and PostgreSQL's ``DETAIL: Key (…)=(…)``
    line both carry bound values: they go, as does PostgreSQL's excerpt of the statement
    (``LINE 1: …``, bound values interpolated by psycopg2) and the values drivers quote in
    the message itself; the database's own message stays, with the SQL SQLAlchemy quotes
    (``[SQL: …]``) redacted like any statement."""
    message = _PARAMETERS_BLOCK.sub("[parameters: hidden by otel-sqla-lineage]", message)
    message = _DETAIL_LINE.sub("", message)
    message = _STATEMENT_EXCERPT.sub("", message)
    message = _DUPLICATE_ENTRY.sub("Duplicate entry '<hidden>'", message)
    message = _INVALID_INPUT.sub(r'\1"<hidden>"', message)
    message = _INCORRECT_VALUE.sub(r"\1'<hidden>'", message)
    message = _AT_OR_NEAR_LITERAL.sub(r'\1"<hidden>"', message)
    message = _SQL_BLOCK.sub(lambda m: f"[SQL: {redact_sql(m.group(1))}]", message)
    message = _BACKGROUND.sub("", message)
    message = _BLANK_LINES.sub("\n", message).strip()
    if SENSITIVE_ANYWHERE.search(message):
        # driver messages quote the statement line by line (PostgreSQL's "LINE 1: ...")
        message = "\n".join(redact_sql(line) for line in message.split("\n"))
    return message[:_MAX_ERROR_CHARS]


# Messages longer than this are scrubbed each time rather than kept: the cache stays
# within ~8 MiB whatever the application's exceptions look like.
_CACHED_MAX_CHARS: Final = 16 * 1024


def scrub_repeated_message(message: str) -> str:
    """:func:`scrub_error_message` for messages that repeat: a failing statement gives the
    same message and stack trace on every span, and a dozen regular expressions over a
    stack trace cost more than converting the span (14% of collector_exporter's CPU
    before this cache, in bench_collector's load)."""
    if len(message) > _CACHED_MAX_CHARS:
        return scrub_error_message(message)
    return _scrub_cached(message)


@functools.lru_cache(maxsize=512)
def _scrub_cached(message: str) -> str:
    return scrub_error_message(message)
