"""Coverage-guided fuzzing (atheris) of what collector_exporter does with request bytes:
protobuf parse, OTLP decoding, run assembly and conversion, serialization. Not in CI
(open-ended); the property-based tests in tests/test_fuzz.py are.

    .cache/venv/sqla-2.1/bin/pip install -r requirements/fuzz.txt
    .cache/venv/sqla-2.1/bin/python fuzz/fuzz_otlp.py -max_total_time=300 -rss_limit_mb=2048

A crash (an exception out of ``TestOneInput``) is a bug: the service would answer the
request with an error it does not mean, or lose the spans. libFuzzer options follow the
script name (``-runs=N``, ``-max_len=N``, a corpus directory).
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    from collector_exporter.decode import decode_request
    from collector_exporter.service import children_first
    from otel_sqla_lineage.assemble import RunAssembler
    from otel_sqla_lineage.convert import Converter
    from otel_sqla_lineage.events import to_json
    from otel_sqla_lineage.settings import LineageSettings

# seeds, so the fuzzer starts from requests that decode into runs: an enclosing span and
# its statement (our attributes), and a statement with only the semantic conventions
CORPUS = Path(__file__).resolve().parent.parent / ".cache" / "fuzz" / "otlp"

_ASSEMBLERS = {
    granularity: RunAssembler(Converter(LineageSettings(granularity=granularity,
                                                        buffer_max_spans=64)),
                              clock=lambda: 0.0)
    for granularity in ("job", "statement")
}


def TestOneInput(data: bytes) -> None:  # the name atheris documents
    try:
        request = ExportTraceServiceRequest.FromString(data)
    except DecodeError:
        return  # the gRPC layer answers these
    # RecursionError: protobuf's own nesting limit, also answered by the gRPC layer
    decoded = decode_request(request)
    assembler = _ASSEMBLERS["job" if len(data) % 2 else "statement"]
    events = []
    for span in children_first(decoded.spans):
        events.extend(assembler.add(span))
    events.extend(assembler.drain())
    for event in events:
        to_json(event)


def _write_seeds() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from procs.otlp_tools import request, semconv_statement, span, sqlalchemy_statement

    CORPUS.mkdir(parents=True, exist_ok=True)
    seeds = [
        request([sqlalchemy_statement(0x31, 0xC1, operation="INSERT", written=("loans",)),
                 span(0xC1, "checkout_book")]),
        request([semconv_statement(0x32, None, attributes={
            "db.system.name": "postgresql", "db.namespace": "shop",
            "server.address": "db", "server.port": 5432,
            "db.query.text": "SELECT * FROM books b JOIN loans l ON b.id = l.book_id"})]),
    ]
    for number, seed in enumerate(seeds):
        (CORPUS / f"seed-{number}").write_bytes(seed.SerializeToString())


def main() -> None:
    argv = sys.argv
    if not any(not a.startswith("-") for a in argv[1:]):
        _write_seeds()
        argv = [*argv, str(CORPUS)]
    atheris.Setup(argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
