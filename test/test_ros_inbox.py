"""The nodes' inbox and worker (no rclpy): bounded with counted overflow, batches in arrival
order, an exception in processing reported and survived."""

from __future__ import annotations

import threading
import time

from blinktrack_ros.nodes.inbox import Inbox, Worker


def test_inbox_drops_oldest_and_counts_per_topic() -> None:
    inbox = Inbox(capacity=5)
    for k in range(8):
        inbox.put("events" if k % 2 else "image", k, arrival_ns=k)
    items = inbox.take_all(timeout_s=0.0)
    assert [i.msg for i in items] == [3, 4, 5, 6, 7]  # the newest five, in order
    assert dict(inbox.dropped) == {"image": 2, "events": 1}  # 0, 2 and 1 were dropped
    assert inbox.take_all(timeout_s=0.0) == []


def test_worker_processes_everything_and_survives_errors() -> None:
    inbox = Inbox()
    seen: list[int] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def process(items) -> None:
        for item in items:
            if item.msg == 3:
                raise RuntimeError("boom")
            seen.append(item.msg)
            if item.msg == 9:
                done.set()

    worker = Worker(inbox, process, errors.append)
    for k in range(10):
        inbox.put("t", k)
        if k == 3:  # the batch holding 3 fails at 3: the rest of that batch is lost,
            deadline = time.monotonic() + 5  # reported; the worker goes on
            while not errors and time.monotonic() < deadline:
                time.sleep(0.001)
    assert done.wait(5.0)
    worker.stop()
    assert len(errors) == 1 and "boom" in str(errors[0])
    assert seen[-6:] == [4, 5, 6, 7, 8, 9] and 3 not in seen
    assert worker.idle()
