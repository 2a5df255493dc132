"""Timestamp order across streams that arrive with different delays (fusion_node's inputs).

In the split deployment the event node and the image node publish their observation arrays
after different processing times, so the fusion node receives them out of time order: an event
window at t arrives after a frame at t + 30 ms. Fused on arrival, the older array would be stale
for every track (dropped) and the tracks it gives could not be published (stamps must not go
back). The StreamOrder holds each array until no stream can still deliver an older one, and
hands the arrays out sorted by (time, arrival). A stream's next array comes at least its
smallest step so far after its newest one (event windows on their grid, frames at their
period), so an array at t is due once t <= newest + step for every stream that has delivered;
at the latest when it is `max_wait_ns` of data time behind the newest arrival of any stream (a
stream that stopped is not waited for longer). Plain Python, no ROS.
"""

from __future__ import annotations

import heapq
from typing import Any


class StreamOrder:
    """A reorder buffer keyed by data time with per-stream watermarks.

    Attributes:
        max_wait_ns: the most an array waits behind the newest arrival (data time); 0 hands
            every array out at once.
        late: arrays that came older than what was already handed out (the caller fuses them
            anyway; the fusion counts their entries as stale).
    """

    def __init__(self, max_wait_ns: int) -> None:
        """An empty buffer."""
        self.max_wait_ns = int(max_wait_ns)
        self.late = 0
        self.reset()

    def reset(self) -> None:
        """Forget everything buffered and every watermark (time went back)."""
        self._heap: list[tuple[int, int, Any]] = []
        self._arrivals = 0
        self._watermarks: dict[str, int] = {}  # newest time per stream
        self._steps: dict[str, int] = {}  # smallest positive step between a stream's times
        self._last_out_ns: int | None = None

    def push(self, stream: str, t_ns: int, item: Any) -> list[Any]:
        """Add one array of `stream` stamped t_ns; returns the items now due, in time order."""
        t_ns = int(t_ns)
        if self._last_out_ns is not None and t_ns < self._last_out_ns:
            self.late += 1
        last = self._watermarks.get(stream)
        if last is not None and t_ns > last:
            self._steps[stream] = min(self._steps.get(stream, t_ns - last), t_ns - last)
        self._watermarks[stream] = t_ns if last is None else max(last, t_ns)
        heapq.heappush(self._heap, (t_ns, self._arrivals, item))
        self._arrivals += 1
        newest = max(self._watermarks.values())
        safe = min(w + self._steps.get(k, 0) for k, w in self._watermarks.items())
        release_ns = max(safe, newest - self.max_wait_ns)
        out = []
        while self._heap and self._heap[0][0] <= release_ns:
            t_out, _, item = heapq.heappop(self._heap)
            self._last_out_ns = t_out if self._last_out_ns is None else max(self._last_out_ns,
                                                                             t_out)
            out.append(item)
        return out

    def __len__(self) -> int:
        """Arrays waiting."""
        return len(self._heap)
