"""Enqueue-only callbacks: the messages of every input wait here for the node's worker thread.

A subscription callback only stamps the message with its wall-clock arrival and puts it in the
Inbox (microseconds), so the middleware queue never overflows while the networks run; the worker
takes everything waiting at once and processes it (merging event windows when behind). Plain
Python with no rclpy, testable anywhere.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
import threading
import time
from typing import Any


@dataclass(frozen=True)
class Arrival:
    """One input message as its callback received it.

    Attributes:
        topic: the subscription's topic name (as the node named it, before remapping).
        msg: the message (an rclpy object, or bytes for raw subscriptions).
        arrival_ns: time.monotonic_ns() when the callback ran (latency is measured from it).
    """

    topic: str
    msg: Any
    arrival_ns: int


class Inbox:
    """A bounded FIFO of Arrivals between the executor's callbacks and one worker thread.

    When more than `capacity` messages wait, the oldest is dropped and counted per topic
    (`dropped`): memory stays bounded if the worker stops keeping up entirely.
    """

    def __init__(self, capacity: int = 10_000) -> None:
        """An empty inbox holding at most `capacity` messages."""
        self.capacity = int(capacity)
        self.dropped: Counter[str] = Counter()
        self._items: deque[Arrival] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self.in_flight = 0  # messages taken by the worker and not yet processed

    def put(self, topic: str, msg: Any, arrival_ns: int | None = None) -> None:
        """Enqueue one message (what a subscription callback does, and nothing else)."""
        item = Arrival(topic, msg, time.monotonic_ns() if arrival_ns is None else arrival_ns)
        with self._cond:
            self._items.append(item)
            while len(self._items) > self.capacity:
                self.dropped[self._items.popleft().topic] += 1
            self._cond.notify()

    def take_all(self, timeout_s: float = 0.1) -> list[Arrival]:
        """Everything waiting, oldest first; waits up to timeout_s for the first one."""
        with self._cond:
            if not self._items and not self._closed:
                self._cond.wait(timeout_s)
            items = list(self._items)
            self._items.clear()
            self.in_flight = len(items)
        return items

    def done(self) -> None:
        """The worker finished the batch it took."""
        with self._cond:
            self.in_flight = 0

    def __len__(self) -> int:
        """Messages waiting now."""
        return len(self._items)

    def close(self) -> None:
        """Wake the worker for the last time."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        """True once close() was called."""
        return self._closed


class Worker:
    """The thread that runs `process(items)` on every batch the Inbox hands out.

    An exception from `process` is passed to `on_error` (the node logs and counts it) and the
    thread goes on with the next batch: an input that breaks the core never stops the node.
    """

    def __init__(self, inbox: Inbox, process: Callable[[list[Arrival]], None],
                 on_error: Callable[[BaseException], None], name: str = "blinktrack_worker"
                 ) -> None:
        """Start the thread (daemon: a hung teardown cannot keep the process alive)."""
        self.inbox, self._process, self._on_error = inbox, process, on_error
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self.inbox.closed:
            items = self.inbox.take_all()
            if not items:
                continue
            try:
                self._process(items)
            except Exception as exc:  # noqa: BLE001 - reported by on_error, the node goes on
                self._on_error(exc)
            finally:
                self.inbox.done()

    def stop(self, timeout_s: float = 2.0) -> None:
        """Close the inbox and wait (bounded) for the batch in progress to finish."""
        self.inbox.close()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout_s)

    def idle(self) -> bool:
        """Nothing waiting and nothing being processed."""
        return self.inbox.in_flight == 0 and len(self.inbox) == 0
