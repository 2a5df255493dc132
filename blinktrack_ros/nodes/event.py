"""event_node: events (+ images, fused tracks) -> event ObservationArrays.

Subscribes `events` (`node.event_msg_type`: EventPacket objects, or dvs_msgs/EventArray
subscribed raw and decoded from the CDR buffer with numpy), `image` (reference patches at track
birth) and `tracks` (fused positions = next crop centres). Publishes `~/observations`.
"""

from __future__ import annotations

from typing import Any

from blinktrack_ros.images import image_msg_to_gray
from blinktrack_ros.nodes import convert
from blinktrack_ros.nodes.base import GlueNode, run
from blinktrack_ros.nodes.config import default_sections
from blinktrack_ros.nodes.modules import build_modules


def event_msg_class(msg_type: str) -> Any:
    """The rclpy class of an event message type name (convert.EVENT_MSG_TYPES)."""
    if msg_type == convert.DVS_EVENT_ARRAY:
        from dvs_msgs.msg import EventArray

        return EventArray
    from event_camera_msgs.msg import EventPacket

    return EventPacket


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
        import sensor_msgs.msg

        import blinktrack_ros.msg

        self.msg = blinktrack_ros.msg
        self.events_in = convert.EventInput(self.cfg.event_msg_type)
        self.obs_pub = self.create_publisher(self.msg.ObservationArray, "~/observations",
                                             self.out_qos)
        raw = self.cfg.event_msg_type == convert.DVS_EVENT_ARRAY
        self.subscribe(event_msg_class(self.cfg.event_msg_type), "events", self.on_events,
                       raw=raw)
        self.subscribe(sensor_msgs.msg.Image, "image", self.on_image)
        self.subscribe(self.msg.TrackArray, "tracks", self.on_tracks)

    def on_events(self, msg: Any) -> None:
        """Decode, pass to the module, publish the observations of completed windows."""
        batch = self.events_in.decode(msg)
        if len(batch) and self.check_time(int(batch.t[0])):
            self.module.reset()
            self.events_in.reset()
        for obs in self.module.on_events(batch):
            self.obs_pub.publish(convert.observations_to_msg(obs, self.cfg.frame_id))
            self.record_latency("events", obs.t_ns)

    def on_image(self, msg: Any) -> None:
        """Frames give the reference patches of new tracks."""
        self.module.on_image(convert.stamp_to_ns(msg.header.stamp), image_msg_to_gray(msg))

    def on_tracks(self, msg: Any) -> None:
        """Fused positions for the next windows."""
        self.module.on_tracks(convert.msg_to_snapshot(msg))

    def extra_diagnostics(self) -> dict[str, str]:
        """Decode counters and the module's own figures (queue depth, merged/skipped windows)."""
        out = {f"decode {k}": str(v) for k, v in self.events_in.stats.as_dict().items()}
        if hasattr(self.module, "stats"):
            out.update({f"event module {k}": str(v) for k, v in self.module.stats().items()})
        return out


def main(args: list[str] | None = None) -> int:
    """The event_node executable."""
    return run(EventNode, args)
