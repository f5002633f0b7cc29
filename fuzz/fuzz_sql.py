"""Coverage-guided fuzzing (atheris) of the SQL text helpers: secret redaction, error
scrubbing, the openlineage-sql wrapper. Not in CI; see tests/test_fuzz.py for what is.

    .cache/venv/sqla-2.1/bin/pip install -r requirements/fuzz.txt
    .cache/venv/sqla-2.1/bin/python fuzz/fuzz_sql.py -max_total_time=300

Besides "never raises", each input checks the redaction contract: outside the ``'***'``
it puts in, the SQL is unchanged.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from otel_sqla_lineage.redact import REDACTED, _redact
    from otel_sqla_lineage.scrub import scrub_error_message
    from otel_sqla_lineage.sqltext import parse_sql


def TestOneInput(data: bytes) -> None:  # the name atheris documents
    provider = atheris.FuzzedDataProvider(data)
    choice = provider.ConsumeIntInRange(0, 3)
    text = provider.ConsumeUnicodeNoSurrogates(provider.remaining_bytes())
    if choice == 0:
        text = "UPDATE accounts SET password = " + text
    redacted = _redact(text)  # uncached: every input is lexed
    position = 0
    for part in redacted.split(REDACTED):
        found = text.find(part, position)
        if found < 0:
            raise AssertionError(f"redaction changed more than literals: {text!r}")
        position = found + len(part)
    scrub_error_message(text)
    if choice == 3 and text.strip():
        parse_sql.__wrapped__(text, "postgresql")


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
