"""event_node: events (+ images, fused tracks) -> event ObservationArrays.

Subscribes `events` (`node.event_msg_type`, `auto` = the type the topic is published with:
EventPacket objects, or dvs_msgs/EventArray subscribed raw and decoded from the CDR buffer with
numpy), `image` (reference patches at track birth) and `tracks` (fused positions = next crop
centres). Publishes `~/observations`. Callbacks only enqueue; the worker thread runs the event
network on every event packet waiting at once (windows merged or skipped when behind,
`pipeline.backlog`), after the frames and tracks that arrived before them.
"""

from __future__ import annotations

from typing import Any

from blinktrack_ros.events.batch import EventBatch
from blinktrack_ros.images import image_msg_to_gray
from blinktrack_ros.nodes import convert
from blinktrack_ros.nodes.base import GlueNode, run
from blinktrack_ros.nodes.config import default_sections
from blinktrack_ros.nodes.event_topic import EventTopic, event_msg_class
from blinktrack_ros.nodes.inbox import Arrival
from blinktrack_ros.nodes.modules import build_modules

__all__ = ["EventNode", "event_msg_class", "main"]


class EventNode(GlueNode):
    """Glue around an EventModule."""

    def __init__(self, module: Any = None, name: str = "blinktrack_event", **kwargs: Any) -> None:
        """Create the node; `module` defaults to the core's event module."""
        super().__init__(name, default_sections(), **kwargs)
        self.module = module or build_modules(self.params.configs).event
        if self.module is None:
            mode = self.params.configs["pipeline"].mode.value
            raise ValueError(f"pipeline.mode {mode!r} uses no events: do not start event_node "
                             "(modes with events: e, ei, ei-naive, e-klt)")
        if module is None:  # a module given by the caller is the caller's to warm up
            self.warm_up(event_source=self.module.source)
        import sensor_msgs.msg

        import blinktrack_ros.msg

        self.msg = blinktrack_ros.msg
        self.frame_id = self.cfg.frame_id
        self.obs_pub = self.create_publisher(self.msg.ObservationArray, "~/observations",
                                             self.out_qos)
        self.subscribe(sensor_msgs.msg.Image, "image", self.on_image)
        self.subscribe(self.msg.TrackArray, "tracks", self.on_tracks)
        self.events = EventTopic(self, self.cfg.event_msg_type, self.on_event_batch, "events")

    @property
    def events_in(self) -> Any:
        """The event decoder (None until the event type is known)."""
        return self.events.decoder

    def process(self, items: list[Arrival]) -> None:
        """Frames and tracks first, in arrival order; then the event packets waiting, as one
        batch (one call of the module: its backlog policy bounds the work)."""
        batch: list[EventBatch] = []
        arrival = 0
        for item in items:
            if item.topic != "events":
                super().process([item])
                continue
            try:
                decoded = self.events.decode(item.msg)
            except ValueError as exc:
                self.count_malformed("events", exc)
                continue
            if len(decoded) and batch and decoded.t[0] < batch[-1].t[-1]:
                self._run_events(EventBatch.concatenate(batch), arrival)  # out of order: split
                batch = []
            if len(decoded):
                batch.append(decoded)
                arrival = item.arrival_ns
        if batch:
            self._run_events(EventBatch.concatenate(batch), arrival)

    def on_event_batch(self, msg: Any) -> None:
        """One event message (the default handler path, unused by `process`)."""
        self._run_events(self.events.decode(msg), self.arrival_ns)

    def _run_events(self, batch: EventBatch, arrival_ns: int) -> None:
        """Pass to the module, publish the observations of the completed windows."""
        if len(batch) and self.check_time(int(batch.t[0])):
            self.module.reset()
            self.events.decoder.reset()
        for obs in self.module.on_events(batch):
            if self.publish_monotonic(self.obs_pub,
                                      convert.observations_to_msg(obs, self.frame_id), obs.t_ns):
                self.record_latency("events", arrival_ns)

    def on_image(self, msg: Any) -> None:
        """Frames give the reference patches of new tracks (and the outputs' frame_id)."""
        self.frame_id = self.cfg.frame_id or msg.header.frame_id or self.frame_id
        self.module.on_image(convert.stamp_to_ns(msg.header.stamp), image_msg_to_gray(msg))

    def on_tracks(self, msg: Any) -> None:
        """Fused positions for the next windows."""
        self.module.on_tracks(convert.msg_to_snapshot(msg))

    def extra_diagnostics(self) -> dict[str, str]:
        """Decode counters and the module's own figures (queue depth, merged/skipped windows)."""
        out = {f"decode {k}": str(v) for k, v in self.events.stats().items()}
        if hasattr(self.module, "stats"):
            out.update({f"event module {k}": str(v) for k, v in self.module.stats().items()})
        elif hasattr(self.module, "counts"):
            out.update({f"event module {k}": str(v) for k, v in self.module.counts.items()})
        source = getattr(self.module, "source", None)
        if hasattr(source, "step_runtime"):
            out["network event step"] = source.step_runtime
        return out

    def unused_inputs(self) -> int:
        """Also the windows skipped when behind and the births whose frame was gone."""
        counts = getattr(self.module, "counts", {})
        return super().unused_inputs() + int(counts.get("windows_skipped", 0)) + \
            int(counts.get("births_frame_lost", 0))


def main(args: list[str] | None = None) -> int:
    """The event_node executable."""
    return run(EventNode, args)
