"""Error messages without bound parameter values, for events and for our own spans."""

from __future__ import annotations

import re
from typing import Final

_MAX_ERROR_CHARS: Final = 4000
# SQLAlchemy puts bound parameters in str(exception); PostgreSQL puts key values in DETAIL.
_PARAMETERS_BLOCK = re.compile(r"\[parameters: .*?\](?=\s*(?:\n|\(Background|$))", re.DOTALL)
_DETAIL_LINE = re.compile(r"^\s*DETAIL:.*$", re.MULTILINE)
# MySQL/MariaDB quote the offending value: "Duplicate entry 'ada@example.org' for key ..."
_DUPLICATE_ENTRY = re.compile(r"Duplicate entry '(?:[^'\\]|\\.)*'")
_BACKGROUND = re.compile(r"\(Background on this error at: [^)]*\)")
_BLANK_LINES = re.compile(r"\n\s*\n+")


def scrub_error_message(message: str) -> str:
    """SQLAlchemy's ``[parameters: …]`` block and PostgreSQL's ``DETAIL: Key (…)=(…)``
    line both carry bound values: they go; the database's own message stays."""
    message = _PARAMETERS_BLOCK.sub("[parameters: hidden by otel-sqla-lineage]", message)
    message = _DETAIL_LINE.sub("", message)
    message = _DUPLICATE_ENTRY.sub("Duplicate entry '<hidden>'", message)
    message = _BACKGROUND.sub("", message)
    message = _BLANK_LINES.sub("\n", message).strip()
    return message[:_MAX_ERROR_CHARS]
