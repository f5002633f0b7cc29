"""The run-ID scheme: one OpenLineage runId per (trace id, span id), the same everywhere.

``run_id_for(trace_id, span_id)`` is ``uuid5(RUN_ID_NAMESPACE, f"{trace_id:032x}{span_id:016x}")``
with ``RUN_ID_NAMESPACE = 5a2cde9c-eb3f-5eae-95e2-86bf67b8a06d``
(itself ``uuid5(NAMESPACE_URL, "urn:otel-sqla-lineage:run-id")``).

Why a name-based UUID and not openlineage-python's time-ordered ``generate_static_uuid``:
a child process only knows its parent's trace id and span id (the W3C ``traceparent``),
not the parent span's start time, and it must still name the parent's run. Any process,
and collector_exporter, computes the same id from the ids alone. The price is that our run
IDs are not time-ordered (UUIDv5, not v7); Marquez accepts any UUID.
"""

from __future__ import annotations

import functools
import hashlib
import uuid
from typing import Final

RUN_ID_NAMESPACE: Final = uuid.UUID("5a2cde9c-eb3f-5eae-95e2-86bf67b8a06d")


@functools.lru_cache(maxsize=4096)
def run_id_for(trace_id: int, span_id: int) -> str:
    """The OpenLineage runId of the run whose span has these ids (lower-case hex, as in
    the W3C trace context)."""
    # uuid.uuid5 without building a UUID: SHA-1 of namespace + name, version 5, RFC variant
    digest = bytearray(
        hashlib.sha1(_NS + f"{trace_id:032x}{span_id:016x}".encode()).digest()[:16]
    )
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_NS: Final = RUN_ID_NAMESPACE.bytes
