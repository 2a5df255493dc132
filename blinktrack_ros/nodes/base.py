"""What every blinktrack_ros node shares: parameters, QoS, guarded callbacks, diagnostics.

The nodes are glue around ROS-free modules. The interfaces assumed of those modules (written in
`blinktrack_ros.tracking.modules`: EventModule, ImageModule, FusionModule on the
FusionEngine) are the Protocols below: each callback converts its message, calls one method and
publishes what comes back.
"""

from __future__ import annotations

from collections.abc import Callable
import sys
import time
from typing import Any, Protocol

import numpy as np
from rclpy.node import Node

from blinktrack_ros.events.batch import EventBatch
from blinktrack_ros.nodes.config import DYNAMIC_SECTIONS, NodeConfig
from blinktrack_ros.nodes.declare import NodeParameters
from blinktrack_ros.nodes.diagnostics import OK, WARN, InputStats, ThrottledCounter
from blinktrack_ros.nodes.qos import input_qos, output_qos
from blinktrack_ros.tracking.fusion_types import TrackSnapshot
from blinktrack_ros.tracking.observation import Observations

# A stamp this much older than the newest one seen means the source restarted (looped bag).
BACKWARDS_TOLERANCE_NS = 100_000_000


class EventModule(Protocol):
    """Event-side core: event windows -> observations (network inference inside)."""

    def on_events(self, batch: EventBatch) -> list[Observations]:
        """Add events; return the observations of every window completed (may merge/skip)."""

    def on_image(self, t_ns: int, gray: np.ndarray) -> None:
        """A frame, (H, W) float32 in [0, 1]: reference patches for newly born tracks."""

    def on_tracks(self, snap: TrackSnapshot) -> None:
        """The fused tracks: crop centres for the next windows, births and deaths."""

    def reset(self) -> None:
        """Forget everything (time went backwards)."""


class ImageModule(Protocol):
    """Image-side core: frames -> observations, plus SEED observations for new features."""

    def on_image(self, t_ns: int, gray: np.ndarray) -> list[Observations]:
        """Track the alive features into this frame; seed new ones when below the target."""

    def on_tracks(self, snap: TrackSnapshot) -> None:
        """The fused tracks: search starts for the next frame, births and deaths."""

    def reset(self) -> None:
        """Forget everything (time went backwards)."""


class FusionModule(Protocol):
    """Fusion core: observations (SEED ones start tracks) -> the fused track snapshot."""

    def on_observations(self, obs: Observations) -> TrackSnapshot | None:
        """Fuse one array; the snapshot at its time to publish (None: nothing to publish)."""

    def reset(self) -> None:
        """Forget every track (ids keep counting)."""


class GlueNode(Node):
    """An rclpy node with the blinktrack parameters, QoS, input statistics and /diagnostics.

    Subclasses create their subscriptions with `self.subscribe(...)`, which counts every
    message, measures its latency and turns ValueError (malformed input) into a counted drop
    logged at a throttled rate.
    """

    def __init__(self, name: str, sections: dict[str, Any], **node_kwargs: Any) -> None:
        """Create the node, declare `sections` (must include "node") and start diagnostics."""
        super().__init__(name, **node_kwargs)
        self.params = NodeParameters(self, sections, DYNAMIC_SECTIONS, self.on_config_change)
        self.cfg: NodeConfig = self.params.configs["node"]
        self.in_qos = input_qos(self.cfg.input_reliability, self.cfg.input_queue_depth)
        self.out_qos = output_qos()
        self.inputs: dict[str, InputStats] = {}
        self.malformed = ThrottledCounter(self.cfg.malformed_log_period_s)
        self.resets = 0
        self._newest_by_stream: dict[str, int] = {}
        from diagnostic_msgs.msg import DiagnosticArray

        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(self.cfg.diagnostics_period_s, self.publish_diagnostics)

    def on_config_change(self, section: str, cfg: Any) -> None:
        """A runtime parameter change was accepted (subclasses pass it to their module)."""
        if section == "node":
            self.cfg = cfg
            self.malformed.period_s = cfg.malformed_log_period_s

    def subscribe(self, msg_type: Any, topic: str, handler: Callable[[Any], None],
                  raw: bool = False, **kwargs: Any) -> Any:
        """Subscribe with the input QoS; `handler(msg)` runs guarded and counted.

        Samples the middleware reports lost (QoS event `message_lost`) count as dropped.
        """
        from rclpy.event_handler import SubscriptionEventCallbacks

        stats = self.inputs.setdefault(topic, InputStats())

        def lost(info: Any) -> None:
            stats.dropped += int(info.total_count_change)

        return self.create_subscription(
            msg_type, topic, self.guard(topic, handler), self.in_qos, raw=raw,
            event_callbacks=SubscriptionEventCallbacks(message_lost=lost), **kwargs)

    def guard(self, topic: str, handler: Callable[[Any], None]) -> Callable[[Any], None]:
        """`handler` counted in the topic's statistics, with ValueError a counted drop."""
        stats = self.inputs.setdefault(topic, InputStats())

        def callback(msg: Any) -> None:
            stats.on_message(time.monotonic())
            try:
                handler(msg)
            except ValueError as exc:  # malformed input: counted, logged throttled, node lives
                self.count_malformed(topic, exc)

        return callback

    def count_malformed(self, topic: str, exc: Exception) -> None:
        """Count a malformed message of `topic` and log it at a throttled rate."""
        self.inputs.setdefault(topic, InputStats()).malformed += 1
        line = self.malformed.hit(f"malformed message on {topic}: {exc}")
        if line:
            self.get_logger().warning(line)

    def take_pending(self, topic: str, subscription: Any, limit: int = 1000) -> list[Any]:
        """The messages waiting in `subscription`'s queue (at most `limit`), taken now and
        counted as received: a callback that falls behind processes its backlog at once."""
        stats = self.inputs.setdefault(topic, InputStats())
        out: list[Any] = []
        while len(out) < limit:
            try:
                with subscription.handle:
                    taken = subscription.handle.take_message(subscription.msg_type,
                                                             subscription.raw)
            except Exception:  # noqa: BLE001 - a destroyed subscription: nothing to take
                break
            if taken is None:
                break
            stats.on_message(time.monotonic())
            out.append(taken[0])
        return out

    def record_latency(self, topic: str, stamp_ns: int) -> None:
        """Latency from a message's stamp to now (node clock: sim time during replays)."""
        latency_s = (self.get_clock().now().nanoseconds - stamp_ns) * 1e-9
        self.inputs.setdefault(topic, InputStats()).add_latency(time.monotonic(), latency_s)

    def check_time(self, t_ns: int, stream: str = "") -> bool:
        """True (after a warning) when t_ns jumped back: the caller resets its module.

        Each input stream is checked against itself: streams from different modules may lag
        each other (an event network behind the frames) without any of them going back.
        """
        newest = self._newest_by_stream.get(stream)
        if newest is not None and t_ns < newest - BACKWARDS_TOLERANCE_NS:
            self.get_logger().warning(
                f"{stream or 'input'} time went backwards by {(newest - t_ns) * 1e-9:.3f} s "
                "(looped bag?): resetting the tracks")
            self._newest_by_stream = {stream: t_ns}
            self.resets += 1
            return True
        self._newest_by_stream[stream] = t_ns if newest is None else max(newest, t_ns)
        return False

    def extra_diagnostics(self) -> dict[str, str]:
        """Module-specific key/values (queue depth, merged or skipped windows, ...)."""
        return {}

    def publish_diagnostics(self) -> None:
        """Publish input rates, drops, malformed counts, latency and the module's figures."""
        from blinktrack_ros.nodes.diagnostics import diagnostic_array

        now = time.monotonic()
        values: dict[str, str] = {}
        for topic, stats in self.inputs.items():
            values.update(stats.values(now, topic))
        values["time resets"] = str(self.resets)
        values.update(self.extra_diagnostics())
        bad = sum(s.malformed + s.dropped for s in self.inputs.values())
        level, text = (WARN, f"{bad} inputs malformed or dropped") if bad else (OK, "ok")
        self._diag_pub.publish(diagnostic_array(
            f"blinktrack_ros: {self.get_name()}", self.get_fully_qualified_name(), level, text,
            values, self.get_clock().now().to_msg()))


EXIT_GRACE_S = 5.0


def _exit_watchdog() -> Any:
    """A started timer that ends the process if teardown takes longer than EXIT_GRACE_S; cancel
    it when teardown is done. DDS teardown occasionally hangs (a known class of upstream bugs,
    e.g. ros2/system_tests#486); a stopped node must not keep a launch file waiting."""
    import os
    import threading

    def _exit() -> None:
        sys.stderr.write(f"blinktrack_ros: shutdown did not finish within {EXIT_GRACE_S} s "
                         "(DDS teardown); exiting\n")
        sys.stderr.flush()
        os._exit(0)

    timer = threading.Timer(EXIT_GRACE_S, _exit)
    timer.daemon = True
    timer.start()
    return timer


def run(make_node: Callable[..., Node], args: list[str] | None = None,
        multithreaded: bool = False) -> int:
    """`main()` of a node executable: init, build (invalid parameters: exit 2), spin, shut down.

    SIGINT/SIGTERM (rclpy's handlers shut the context down) end the process with 0 whenever they
    arrive: while the node is being built, while it spins, or in the race where the executor
    builds its wait set on a context that was just shut down (rclpy raises RCLError there).
    """
    import rclpy
    from rclpy.exceptions import InvalidParameterValueException
    from rclpy.executors import (
        ExternalShutdownException,
        MultiThreadedExecutor,
        SingleThreadedExecutor,
    )

    rclpy.init(args=args)
    node = None
    try:
        try:
            node = make_node()
        except (ValueError, InvalidParameterValueException) as exc:
            if not rclpy.ok():
                return 0
            rclpy.logging.get_logger("blinktrack_ros").fatal(f"invalid parameters: {exc}")
            return 2
        executor = MultiThreadedExecutor() if multithreaded else SingleThreadedExecutor()
        for each in getattr(node, "nodes", [node]):
            executor.add_node(each)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if rclpy.ok():  # a real error, not the shutdown racing the build or the spin
            raise
    finally:
        watchdog = _exit_watchdog()
        try:
            if node is not None:
                try:
                    node.destroy_node()
                except Exception:  # destroying after shutdown can fail; the process ends anyway
                    if rclpy.ok():
                        raise
            rclpy.try_shutdown()
        finally:
            watchdog.cancel()
    return 0
