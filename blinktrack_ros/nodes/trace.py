"""Per-input timestamps of blinktrack_node's worker, for finding where live latency goes.

Off unless the environment variable BLINKTRACK_NODE_TRACE names a file: the node then records,
for every event batch and frame it processes, the monotonic ns of the input's arrival (the
receiver thread), of the worker taking it from the inbox, of the pipeline call's start and end
and of the last publish, and the worker thread's CPU time in the pipeline call; it writes them
as CSV when the node is destroyed. `blinktrack bench pipeline --trace FILE` sets it for the
live run's node and reports the medians of the stages.
"""

from __future__ import annotations

import os
from pathlib import Path
import time

TRACE_ENV = "BLINKTRACK_NODE_TRACE"
COLUMNS = ("kind", "t_data_ns", "updates", "arrival_ns", "taken_ns", "start_ns", "end_ns",
           "published_ns", "call_cpu_ns")


class NodeTrace:
    """Rows of (kind, data time, updates, arrival, taken, start, end, published, call CPU) ns."""

    def __init__(self, path: str | None = None) -> None:
        """Enabled when `path` (default: $BLINKTRACK_NODE_TRACE) is set."""
        self.path = path if path is not None else os.environ.get(TRACE_ENV) or None
        self.rows: list[tuple[str, int, int, int, int, int, int, int, int]] = []
        self.taken_ns = 0

    @property
    def enabled(self) -> bool:
        return self.path is not None

    def add(self, kind: str, t_data_ns: int, updates: int, arrival_ns: int, start_ns: int,
            end_ns: int, cpu_ns: int = 0) -> None:
        """One processed input; published now."""
        if self.path is not None:
            self.rows.append((kind, int(t_data_ns), int(updates), int(arrival_ns),
                              self.taken_ns, int(start_ns), int(end_ns), time.monotonic_ns(),
                              int(cpu_ns)))

    def save(self) -> None:
        """Write the CSV (no-op when disabled or empty)."""
        if self.path is None or not self.rows:
            return
        lines = [",".join(COLUMNS)] + [",".join(str(v) for v in row) for row in self.rows]
        Path(self.path).write_text("\n".join(lines) + "\n")
