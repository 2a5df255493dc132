"""What every blinktrack_ros node shares: parameters, QoS, guarded callbacks, diagnostics.

The nodes are glue around ROS-free modules. The interfaces assumed of those modules (written in
`blinktrack_ros.tracking.modules`: EventModule, ImageModule, FusionModule on the
FusionEngine) are the Protocols below: each callback converts its message, calls one method and
publishes what comes back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
import time
from typing import Any, Protocol

import numpy as np
from rclpy.node import Node

from blinktrack_ros.events.batch import EventBatch
from blinktrack_ros.nodes.config import DYNAMIC_SECTIONS, NodeConfig
from blinktrack_ros.nodes.declare import NodeParameters
from blinktrack_ros.nodes.diagnostics import ERROR, OK, WARN, InputStats, ThrottledCounter
from blinktrack_ros.nodes.inbox import Arrival, Inbox, Worker
from blinktrack_ros.nodes.qos import input_qos, output_qos
from blinktrack_ros.nodes.runner import run  # the executables' main, imported from here
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

    Subclasses create their subscriptions with `self.subscribe(topic, ..., handler)`: the
    callback only enqueues the message (with its wall-clock arrival) into `self.inbox`, and the
    node's worker thread runs `process(items)` on everything waiting (by default each handler in
    arrival order). ValueError (malformed input) becomes a counted drop logged at a throttled
    rate. Diagnostics run on a steady-clock timer (they go on when /clock stops) and report
    latency from the wall-clock arrival of the input to the publication of its result.
    """

    def __init__(self, name: str, sections: dict[str, Any], **node_kwargs: Any) -> None:
        """Create the node, declare `sections` (must include "node") and start diagnostics."""
        super().__init__(name, **node_kwargs)
        self.params = NodeParameters(self, sections, DYNAMIC_SECTIONS, self.on_config_change)
        self.cfg: NodeConfig = self.params.configs["node"]
        if self.cfg.torch_threads > 0:
            import torch

            torch.set_num_threads(self.cfg.torch_threads)  # the worker threads use it too
        self.in_qos = input_qos(self.cfg.input_reliability, self.cfg.input_queue_depth)
        self.out_qos = output_qos()
        self.inputs: dict[str, InputStats] = {}
        self.malformed = ThrottledCounter(self.cfg.malformed_log_period_s)
        self.loss_log = ThrottledCounter(self.cfg.malformed_log_period_s)
        self.resets = 0
        self.errors: dict[str, str] = {}  # key -> text: level ERROR in diagnostics while set
        self.processing_errors = 0
        self.held_back: dict[str, int] = {}  # output topic -> arrays not published (older)
        self._last_out_ns: dict[str, int] = {}
        self._newest_by_stream: dict[str, int] = {}
        self._handlers: dict[str, Callable[[Any], None]] = {}
        self._loss_seen = (0, 0)
        self.arrival_ns = 0  # arrival of the input being processed (for latency)
        self.warm_up_s = 0.0  # wall s of the start's warm-up (see warm_up)
        from diagnostic_msgs.msg import DiagnosticArray

        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.steady_timer(self.cfg.diagnostics_period_s, self.publish_diagnostics)
        self.inbox = Inbox(self.cfg.inbox_capacity)
        self.worker = Worker(self.inbox, self.process, self.on_processing_error,
                             name=f"{name}_worker")

    def steady_timer(self, period_s: float, callback: Callable[[], None]) -> Any:
        """A timer on the steady clock: it runs whether or not /clock (sim time) advances."""
        from rclpy.clock import Clock, ClockType

        return self.create_timer(period_s, callback,
                                 clock=Clock(clock_type=ClockType.STEADY_TIME))

    def on_config_change(self, section: str, cfg: Any) -> None:
        """A runtime parameter change was accepted (subclasses pass it to their module)."""
        if section == "node":
            self.cfg = cfg
            self.malformed.period_s = cfg.malformed_log_period_s

    def warm_up(self, pipeline: Any = None, event_source: Any = None, image_source: Any = None,
                klt: Any = None) -> float:
        """`Pipeline.warm_up` with node.warm_up_* (call before subscribing): of `pipeline`, or
        of a throwaway one around the given sources (split nodes). Logs and returns the wall
        seconds, also kept in `warm_up_s` (0: node.warm_up_s is 0, the pipeline already ran or
        the warm-up failed)."""
        self.warm_up_s = self._warm_up(pipeline, event_source, image_source, klt)
        return self.warm_up_s

    def _warm_up(self, pipeline: Any, event_source: Any, image_source: Any, klt: Any) -> float:
        cfg = self.cfg
        if cfg.warm_up_s <= 0:
            return 0.0
        if pipeline is None:
            from blinktrack_ros.tracking.pipeline import Mode, Pipeline

            modes = {(True, False, False): Mode.E, (True, True, False): Mode.EI,
                     (True, False, True): Mode.E_KLT, (False, True, False): Mode.I,
                     (False, False, True): Mode.KLT}
            key = (event_source is not None, image_source is not None, klt is not None)
            if key not in modes:
                return 0.0
            config = replace(self.params.configs["pipeline"], mode=modes[key])
            pipeline = Pipeline(config, seeding=self.params.configs["seeding"],
                                event_source=event_source, image_source=image_source, klt=klt)
        try:
            seconds = pipeline.warm_up(cfg.warm_up_width, cfg.warm_up_height, cfg.warm_up_s)
        except RuntimeError as exc:  # a pipeline given after it ran: nothing to warm up
            self.get_logger().warning(f"no warm-up: {exc}")
            return 0.0
        except Exception as exc:  # noqa: BLE001 - the node starts all the same (cold)
            self.get_logger().error(f"warm-up failed, starting cold: {exc!r}")
            return 0.0
        self.get_logger().info(f"warmed up in {seconds:.2f} s ({cfg.warm_up_width}x"
                               f"{cfg.warm_up_height}, {cfg.warm_up_s:g} s of synthetic data)")
        return seconds

    def subscribe(self, msg_type: Any, topic: str, handler: Callable[[Any], None],
                  raw: bool = False, **kwargs: Any) -> Any:
        """Subscribe with the input QoS; the callback enqueues, the worker runs `handler(msg)`.

        Samples the middleware reports lost (QoS event `message_lost`) count as dropped.
        """
        from rclpy.event_handler import SubscriptionEventCallbacks

        stats = self.inputs.setdefault(topic, InputStats())

        def lost(info: Any) -> None:
            stats.dropped += int(info.total_count_change)

        self._handlers[topic] = handler
        return self.create_subscription(
            msg_type, topic, self.enqueuer(topic), self.in_qos, raw=raw,
            event_callbacks=SubscriptionEventCallbacks(message_lost=lost), **kwargs)

    def enqueuer(self, topic: str) -> Callable[[Any], None]:
        """The subscription callback of `topic`: count and enqueue, nothing else."""
        stats = self.inputs.setdefault(topic, InputStats())

        def callback(msg: Any) -> None:
            stats.on_message(time.monotonic())
            self.inbox.put(topic, msg)

        return callback

    def process(self, items: list[Arrival]) -> None:
        """Run the handlers of these inputs in arrival order (the worker thread)."""
        for item in items:
            self.arrival_ns = item.arrival_ns
            try:
                self._handlers[item.topic](item.msg)
            except ValueError as exc:  # malformed input: counted, logged throttled, node lives
                self.count_malformed(item.topic, exc)

    def on_processing_error(self, exc: BaseException) -> None:
        """An unexpected exception in the worker: logged (throttled) and counted; node lives."""
        self.processing_errors += 1
        line = self.malformed.hit(f"error while processing input: {exc!r}")
        if line:
            self.get_logger().error(line)

    def count_malformed(self, topic: str, exc: Exception) -> None:
        """Count a malformed message of `topic` and log it at a throttled rate."""
        self.inputs.setdefault(topic, InputStats()).malformed += 1
        line = self.malformed.hit(f"malformed message on {topic}: {exc}")
        if line:
            self.get_logger().warning(line)

    def record_latency(self, topic: str, arrival_ns: int | None = None) -> None:
        """Latency from the wall-clock arrival of the input (default: the one being processed)
        to now, its result published (independent of sim time and of the stamps' epoch)."""
        arrival = self.arrival_ns if arrival_ns is None else arrival_ns
        latency_s = (time.monotonic_ns() - arrival) * 1e-9
        self.inputs.setdefault(topic, InputStats()).add_latency(time.monotonic(), latency_s)

    def publish_monotonic(self, pub: Any, msg: Any, t_ns: int) -> bool:
        """Publish `msg` (stamped t_ns) unless it is older than the last one published on `pub`:
        output stamps never go back (SLAM front-ends need that); held-back arrays are counted
        (their observations were applied to the filter all the same)."""
        topic = pub.topic_name
        last = self._last_out_ns.get(topic)
        if last is not None and t_ns < last:
            self.held_back[topic] = self.held_back.get(topic, 0) + 1
            return False
        self._last_out_ns[topic] = int(t_ns)
        pub.publish(msg)
        return True

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
            self._last_out_ns.clear()
            self.resets += 1
            return True
        self._newest_by_stream[stream] = t_ns if newest is None else max(newest, t_ns)
        return False

    def extra_diagnostics(self) -> dict[str, str]:
        """Module-specific key/values (queue depth, merged or skipped windows, ...)."""
        return {}

    def unused_inputs(self) -> int:
        """Input messages (or their content) the node could not use, in total: middleware
        losses, inbox overflow, malformed ones (subclasses add skipped frames, windows)."""
        return sum(s.malformed + s.dropped for s in self.inputs.values()) + \
            sum(self.inbox.dropped.values())

    def _loss_level(self) -> tuple[int, str]:
        """WARN when the fraction of inputs lost since the last report passes the threshold."""
        received = sum(s.received for s in self.inputs.values())
        lost = self.unused_inputs()
        d_received, d_lost = received - self._loss_seen[0], lost - self._loss_seen[1]
        self._loss_seen = (received, lost)
        fraction = d_lost / max(d_received + d_lost, 1)
        if d_lost and fraction > self.cfg.loss_warn_fraction:
            text = (f"{d_lost} inputs lost or unused in the last "
                    f"{self.cfg.diagnostics_period_s:g} s ({100 * fraction:.1f} %, {lost} in "
                    "total; see the diagnostics values)")
            line = self.loss_log.hit(text)
            if line:
                self.get_logger().warning(line)
            return WARN, text
        return OK, "ok"

    def publish_diagnostics(self) -> None:
        """Publish input rates, drops, malformed counts, latency and the module's figures."""
        from blinktrack_ros.nodes.diagnostics import diagnostic_array

        now = time.monotonic()
        values: dict[str, str] = {}
        for topic, stats in self.inputs.items():
            values.update(stats.values(now, topic))
        for topic, count in self.inbox.dropped.items():
            values[f"{topic} dropped (inbox full)"] = str(count)
        values["inbox waiting"] = str(len(self.inbox))
        values["processing errors"] = str(self.processing_errors)
        for topic, count in self.held_back.items():
            values[f"{topic} held back (older than the last published)"] = str(count)
        values["time resets"] = str(self.resets)
        values["warm-up s"] = f"{self.warm_up_s:.2f}"
        values.update(self.extra_diagnostics())
        level, text = self._loss_level()
        if self.errors:
            level, text = ERROR, "; ".join(self.errors.values())
        self._diag_pub.publish(diagnostic_array(
            f"blinktrack_ros: {self.get_name()}", self.get_fully_qualified_name(), level, text,
            values, self.get_clock().now().to_msg()))

    def destroy_node(self) -> None:
        """Stop the worker, then destroy the node."""
        self.worker.stop()
        super().destroy_node()


__all__ = ["EventModule", "FusionModule", "GlueNode", "ImageModule", "run"]
