"""Forks, again and again, while this process's spool sender reads segments as fast as it
can (a backlog of events, a sink that takes them at once): each child must come out of
the fork hooks and exit. A child still there after CHILD_DEADLINE seconds is counted as
hung and killed. Prints one JSON line: forks, hung."""

import json
import os
import signal
import sys
import time

from otel_sqla_lineage.delivery import SpooledDelivery
from otel_sqla_lineage.spool import Spool

FORKS = int(os.environ.get("FORKS", "60"))
CHILD_DEADLINE = 10.0


class CountingSink:
    description = "counting sink"

    def __init__(self) -> None:
        self.taken = 0

    def emit(self, event: dict) -> None:
        self.taken += 1

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


spool_dir = sys.argv[1]
sink = CountingSink()
delivery = SpooledDelivery(sink, Spool(spool_dir, 1 << 30), max_events=1 << 20)
event = {"eventType": "START", "run": {"runId": "r"}, "job": {"name": "j" * 200}}
delivery.put_many([event] * 400_000)  # a backlog: the sender reads for a while
time.sleep(0.5)
hung = 0
for _ in range(FORKS):
    pid = os.fork()
    if pid == 0:
        os._exit(0)  # the fork hooks ran (or hang) before this line
    deadline = time.monotonic() + CHILD_DEADLINE
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.monotonic() > deadline:
            hung += 1
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            break
        time.sleep(0.005)
    time.sleep(0.01)
print(json.dumps({"forks": FORKS, "hung": hung, "delivered_meanwhile": sink.taken}), flush=True)
os._exit(0)
