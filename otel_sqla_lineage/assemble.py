"""Which statements belong to which run, and when a run is complete: shared by the
in-process exporter and collector_exporter. No I/O; the clock is injected.

Spans end inside-out: statement spans first, then the span that encloses them, then its
ancestors. So:

* a statement span is held under its parent span (``job`` granularity: the enclosing span
  is the run; a database span in between, such as a manual ``db`` span, passes its held
  statements up to its own parent);
* when a non-database span ends with statements held under it, it is a run. The run is
  itself held under *its* parent until that ends, so its ``parent`` facet can name the
  nearest ancestor run (and ``root`` the outermost), then everything is emitted;
* a span whose parent is in another process (or that has none) settles its subtree
  at once; a remote parent is named by runId (computed from the trace context);
* what waits longer than ``buffer_timeout_seconds``, or beyond ``buffer_max_spans``
  statements held, is emitted without waiting further, and counted.

Spans that arrive after their parent (possible on the Collector path) are emitted on
their own: a late statement becomes its own run.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from otel_sqla_lineage.convert import Converter, RunRef, StatementSummary
from otel_sqla_lineage.spans import SpanView

_log = logging.getLogger(__name__)

Event = dict[str, Any]


@dataclass
class _Draft:
    """A run whose span has ended, waiting to learn its parent run."""

    span: SpanView
    statements: list[StatementSummary]
    as_statement: bool
    children: list[_Draft] = field(default_factory=list)


@dataclass
class _Bucket:
    """What waits for one open span."""

    born: float
    statements: list[StatementSummary] = field(default_factory=list)
    drafts: list[_Draft] = field(default_factory=list)

    def size(self) -> int:
        return len(self.statements) + sum(_draft_size(d) for d in self.drafts)


def _draft_size(draft: _Draft) -> int:
    return len(draft.statements) + 1 + sum(_draft_size(c) for c in draft.children)


@dataclass
class AssemblerStats:
    spans_seen: int = 0
    statements_seen: int = 0
    runs_emitted: int = 0
    events_emitted: int = 0
    # emitted without their enclosing/parent span: waited too long, or buffer full
    expired: int = 0
    evicted: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class RunAssembler:
    """Not thread-safe: callers serialise access (the exporter holds a lock)."""

    def __init__(
        self, converter: Converter, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.converter = converter
        self.settings = converter.settings
        self._clock = clock
        self._buckets: OrderedDict[tuple[int, int], _Bucket] = OrderedDict()
        self._held = 0
        self.stats = AssemblerStats()

    @property
    def held(self) -> int:
        """Statements and runs waiting (what ``buffer_max_spans`` bounds)."""
        return self._held

    def held_traces(self) -> set[int]:
        """Trace IDs with spans waiting (collector_exporter keeps their requests logged)."""
        return {trace_id for trace_id, _ in self._buckets}

    def add(self, span: SpanView) -> list[Event]:
        self.stats.spans_seen += 1
        out: list[Event] = []
        summary = self.converter.summarize(span)
        bucket = self._pop(span)
        if summary is not None:
            self.stats.statements_seen += 1
            if bucket is not None:  # statements nested in a statement span: pass them up
                self._pass_up(span, bucket.statements, bucket.drafts, out)
            if self.settings.granularity == "statement":
                draft = _Draft(span, [summary], as_statement=True)
                self._hold_or_settle(draft, out)
            elif span.has_local_parent:
                self._bucket(span).statements.append(summary)
                self._held += 1
            else:
                self._settle(_Draft(span, [summary], as_statement=True), out)
        elif bucket is not None:
            if span.is_database_span:
                self._pass_up(span, bucket.statements, bucket.drafts, out)
            elif bucket.statements or self._has_statement_children(bucket):
                children = bucket.drafts
                draft = _Draft(span, bucket.statements, as_statement=False, children=children)
                self._hold_or_settle(draft, out)
            else:  # not a run itself: its child runs look further up for a parent run
                self._pass_up(span, [], bucket.drafts, out)
        out.extend(self.expire())
        self._enforce_bound(out)
        return out

    def expire(self) -> list[Event]:
        """Emit what has waited longer than ``buffer_timeout_seconds``."""
        out: list[Event] = []
        deadline = self._clock() - self.settings.buffer_timeout_seconds
        while self._buckets:
            key, bucket = next(iter(self._buckets.items()))
            if bucket.born > deadline:
                break
            del self._buckets[key]
            size = bucket.size()
            self._held -= size
            self.stats.expired += size
            self._flush_orphans(key, bucket, out)
        return out

    def drain(self) -> list[Event]:
        """Emit everything held (force_flush, shutdown)."""
        out: list[Event] = []
        while self._buckets:
            key, bucket = self._buckets.popitem(last=False)
            self._held -= bucket.size()
            self._flush_orphans(key, bucket, out)
        return out

    # -- internals -----------------------------------------------------------------------

    def _has_statement_children(self, bucket: _Bucket) -> bool:
        # granularity "statement": the enclosing span is a run because its statements are
        return any(d.as_statement for d in bucket.drafts)

    def _bucket(self, span: SpanView) -> _Bucket:
        key = (span.trace_id, span.parent_span_id or 0)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(born=self._clock())
        return bucket

    def _pop(self, span: SpanView) -> _Bucket | None:
        bucket = self._buckets.pop((span.trace_id, span.span_id), None)
        if bucket is not None:
            self._held -= bucket.size()
        return bucket

    def _pass_up(
        self,
        span: SpanView,
        statements: list[StatementSummary],
        drafts: list[_Draft],
        out: list[Event],
    ) -> None:
        if not statements and not drafts:
            return
        if span.has_local_parent:
            target = self._bucket(span)
            target.statements.extend(statements)
            target.drafts.extend(drafts)
            self._held += len(statements) + sum(_draft_size(d) for d in drafts)
            return
        parent = self.converter.remote_parent_ref(span)
        for statement in statements:
            self._emit(_Draft(statement.span, [statement], as_statement=True), parent, None, out)
        for draft in drafts:
            self._emit(draft, parent, None, out)

    def _hold_or_settle(self, draft: _Draft, out: list[Event]) -> None:
        if draft.span.has_local_parent:
            self._bucket(draft.span).drafts.append(draft)
            self._held += _draft_size(draft)
        else:
            self._settle(draft, out)

    def _settle(self, draft: _Draft, out: list[Event]) -> None:
        """A run with no local parent: its parent is remote (or there is none)."""
        self._emit(draft, self.converter.remote_parent_ref(draft.span), None, out)

    def _emit(
        self,
        draft: _Draft,
        parent: RunRef | None,
        root: RunRef | None,
        out: list[Event],
    ) -> None:
        converter = self.converter
        statement = draft.statements[0] if draft.as_statement and draft.statements else None
        me = converter.ref(draft.span, statement)
        # statement granularity: the enclosing run lists no datasets; its statements do
        own = [] if self._children_are_statement_runs(draft) else draft.statements
        events = converter.run_events(
            draft.span, own, as_statement=draft.as_statement, parent=parent, root=root, ref=me
        )
        out.extend(events)
        self.stats.runs_emitted += 1
        self.stats.events_emitted += len(events)
        child_root = root or (me if parent is None else None)
        for child in draft.children:
            self._emit(child, me, child_root, out)

    def _children_are_statement_runs(self, draft: _Draft) -> bool:
        return not draft.as_statement and self.settings.granularity == "statement"

    def _flush_orphans(self, key: tuple[int, int], bucket: _Bucket, out: list[Event]) -> None:
        """Emit what waited for span ``key`` without it: statements as their own runs,
        runs without a parent facet (the parent never arrived)."""
        for statement in bucket.statements:
            self._emit(_Draft(statement.span, [statement], as_statement=True), None, None, out)
        for draft in bucket.drafts:
            self._emit(draft, None, None, out)
        if bucket.statements or bucket.drafts:
            _log.debug(
                "otel-sqla-lineage: emitted %d statement(s) and %d run(s) without their "
                "enclosing span %032x/%016x",
                len(bucket.statements),
                len(bucket.drafts),
                key[0],
                key[1],
            )

    def _enforce_bound(self, out: list[Event]) -> None:
        limit = self.settings.buffer_max_spans
        while self._held > limit and self._buckets:
            key, bucket = self._buckets.popitem(last=False)
            size = bucket.size()
            self._held -= size
            self.stats.evicted += size
            self._flush_orphans(key, bucket, out)
