"""Restarting background work in a forked child.

After ``fork`` (gunicorn ``--preload``, multiprocessing) the child has none of the parent's
threads, and its locks may have been held mid-operation by one of them. Each object that
owns a thread or a lock registers here, weakly, and resets itself in the child. One
``os.register_at_fork`` per registry, made at import: registries created by modules
imported first (deliveries before the pipelines that own them) reset first.
"""

from __future__ import annotations

import logging
import os
import weakref
from typing import Protocol

_log = logging.getLogger(__name__)


class ResetAfterFork(Protocol):
    def after_fork_in_child(self) -> None: ...


class ForkRegistry:
    """Live objects of one kind, reset in a forked child; a failure is logged, never
    raised into the child."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._live: weakref.WeakSet[ResetAfterFork] = weakref.WeakSet()
        os.register_at_fork(after_in_child=self._after_fork_in_child)

    def add(self, obj: ResetAfterFork) -> None:
        self._live.add(obj)

    def _after_fork_in_child(self) -> None:
        for obj in list(self._live):
            try:
                obj.after_fork_in_child()
            except Exception:
                _log.exception("otel-sqla-lineage: %s cannot be reset after fork", self._what)
