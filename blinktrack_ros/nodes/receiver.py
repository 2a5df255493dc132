"""A thread that takes the input messages from the middleware and enqueues them (no executor).

rclpy's executor runs each message's callback through a task built per message and rebuilds
its wait set on every turn: about a few hundred microseconds of Python per message, holding the
GIL that the worker's pipeline needs. At 1000 event packets/s that contention slowed the node
(the live bench: median window latency 175 ms against 100 ms for the node before the inbox, a
third of the event updates). The Receiver waits on the input subscriptions with a wait set of
its own, takes every message ready (tens of microseconds each) and puts it in the Inbox with its
arrival time, exactly what the enqueue-only callbacks did. The subscriptions sit in a callback
group the executor never runs (it still serves timers, parameters and QoS events).
"""

from __future__ import annotations

import atexit
from collections.abc import Callable
import threading
from typing import Any
import weakref

from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.subscription import Subscription

WAIT_NS = 50_000_000  # wake up this often to see new subscriptions and the stop request
_RUNNING: weakref.WeakSet[Receiver] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    """Stop the receivers still running at interpreter exit: a thread waking in the middleware's
    wait after Python finalised aborts the process ("terminate called ...")."""
    for receiver in list(_RUNNING):
        receiver.stop()


class ReceiverGroup(ReentrantCallbackGroup):
    """Callback group whose subscriptions the executor leaves alone (the Receiver takes them);
    the other entities in it (the subscriptions' QoS event handlers) run as usual."""

    def can_execute(self, entity: Any) -> bool:
        return not isinstance(entity, Subscription)


class Receiver:
    """Takes the messages of the added subscriptions on its own thread: `deliver(topic, msg)`."""

    def __init__(self, context: Any, deliver: Callable[[str, Any], None],
                 on_error: Callable[[BaseException], None], name: str = "blinktrack_receiver"
                 ) -> None:
        """Start the thread (daemon) with no subscription yet."""
        self._context, self._deliver, self._on_error = context, deliver, on_error
        self._subs: list[tuple[str, Subscription]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.group = ReceiverGroup()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        _RUNNING.add(self)
        context.on_shutdown(self.stop)

    def add(self, topic: str, sub: Subscription) -> None:
        """Receive `sub`'s messages from now on (as `topic`)."""
        with self._lock:
            self._subs.append((topic, sub))

    def remove(self, sub: Subscription) -> None:
        """Stop receiving `sub` (before it is destroyed)."""
        with self._lock:
            self._subs = [(t, s) for t, s in self._subs if s is not sub]

    def _run(self) -> None:
        from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy

        wait_set, waited = None, None
        while not self._stop.is_set():
            with self._lock:
                subs = list(self._subs)
            if not subs:
                self._stop.wait(WAIT_NS * 1e-9)
                continue
            try:
                if waited != [id(s) for _, s in subs]:
                    waited = [id(s) for _, s in subs]
                    wait_set = _rclpy.WaitSet(len(subs), 0, 0, 0, 0, 0, self._context.handle)
                wait_set.clear_entities()
                for _, sub in subs:
                    wait_set.add_subscription(sub.handle)
                wait_set.wait(WAIT_NS)
                for topic, sub in subs:
                    self._take_all(topic, sub)
            except Exception as exc:  # noqa: BLE001 - shutdown races, or a real error
                if self._stop.is_set() or not self._context.ok():
                    return
                self._on_error(exc)
                self._stop.wait(WAIT_NS * 1e-9)

    def _take_all(self, topic: str, sub: Subscription) -> None:
        while True:
            with sub.handle:
                taken = sub.handle.take_message(sub.msg_type, sub.raw)
            if taken is None:
                return
            self._deliver(topic, taken[0])

    def stop(self, timeout_s: float = 2.0) -> None:
        """End the thread (it wakes within WAIT_NS)."""
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout_s)
