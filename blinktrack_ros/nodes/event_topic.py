"""The event input of a node: its message type set by parameter or detected from the topic.

With `node.event_msg_type: auto` the subscription waits until the `events` topic has a
publisher and takes the type it publishes (dvs_msgs/EventArray is then subscribed raw and
decoded from the CDR buffer). A type set by parameter that differs from what the topic's
publishers use matches no publisher in DDS and would give silence: it is reported as an error in
the log and in /diagnostics (level ERROR) instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from blinktrack_ros.events.decode import prepare_evt3_backend
from blinktrack_ros.nodes import convert
from blinktrack_ros.nodes.config import AUTO

POLL_PERIOD_S = 0.2


def ros_type_name(topic_type: str) -> str:
    """'dvs_msgs/msg/EventArray' (graph API) -> 'dvs_msgs/EventArray' (parameter value)."""
    parts = topic_type.split("/")
    return f"{parts[0]}/{parts[-1]}" if len(parts) == 3 else topic_type


def event_msg_class(msg_type: str) -> Any:
    """The rclpy class of an event message type name (convert.EVENT_MSG_TYPES)."""
    if msg_type == convert.DVS_EVENT_ARRAY:
        from dvs_msgs.msg import EventArray

        return EventArray
    from event_camera_msgs.msg import EventPacket

    return EventPacket


class EventTopic:
    """Subscribes `events` of `node` (a GlueNode) once its type is known; checks it stays so.

    Attributes:
        msg_type: the type in use (None while waiting for a publisher to detect it).
        decoder: convert.EventInput of that type (None while waiting).
        subscription: the rclpy subscription (None while waiting).
    """

    def __init__(self, node: Any, configured: str, handler: Callable[[Any], None],
                 topic: str = "events") -> None:
        """Subscribe now (type set) or on the first publisher seen (auto)."""
        self.node, self.configured, self.handler, self.topic = node, configured, handler, topic
        self.msg_type: str | None = None
        self.decoder: convert.EventInput | None = None
        self.subscription: Any = None
        self.resolved = node.resolve_topic_name(topic)
        if configured != AUTO:
            self._subscribe(configured)
        self.poll()
        self.timer = node.steady_timer(POLL_PERIOD_S, self.poll)

    def _subscribe(self, msg_type: str) -> None:
        self.msg_type = msg_type
        self.decoder = convert.EventInput(msg_type)
        raw = msg_type == convert.DVS_EVENT_ARRAY
        self.subscription = self.node.subscribe(event_msg_class(msg_type), self.topic,
                                                self.handler, raw=raw)

    def published_types(self) -> set[str]:
        """Types the topic's publishers use now (parameter spelling)."""
        return {ros_type_name(info.topic_type)
                for info in self.node.get_publishers_info_by_topic(self.resolved)}

    def poll(self) -> None:
        """Detect the type (auto), or report publishers of another type than the one in use."""
        types = self.published_types()
        if not types:
            return
        if self.msg_type is None:
            usable = sorted(types & set(convert.EVENT_MSG_TYPES))
            if len(usable) == 1 and len(types) == 1:
                self._subscribe(usable[0])
                self.node.get_logger().info(f"{self.resolved}: event type {usable[0]} "
                                            "(detected from the topic)")
                self.node.errors.pop("event type", None)
                return
            self._error(f"{self.resolved} is published as {', '.join(sorted(types))}: not one "
                        f"event type of {', '.join(convert.EVENT_MSG_TYPES)}; no events are used")
            return
        other = types - {self.msg_type}
        if other:
            self._error(f"{self.resolved} is published as {', '.join(sorted(other))} but "
                        f"node.event_msg_type is {self.msg_type}: no events are received "
                        "(leave node.event_msg_type at auto, or set the published type)")
        else:
            self.node.errors.pop("event type", None)

    def _error(self, text: str) -> None:
        """Log once per distinct text; keep it in the node's diagnostics while it holds."""
        if self.node.errors.get("event type") != text:
            self.node.get_logger().error(text)
        self.node.errors["event type"] = text

    def decode(self, msg: Any) -> Any:
        """The EventBatch of one message of this topic."""
        return self.decoder.decode(msg)

    def stats(self) -> dict[str, Any]:
        """Decode counters (empty while waiting), and the type in use."""
        out = {"type": self.msg_type or "waiting for a publisher (auto)"}
        if self.decoder is not None:
            if self.msg_type != convert.DVS_EVENT_ARRAY:  # which evt3 decoder runs
                out["evt3 decoder"] = prepare_evt3_backend()
            out.update(self.decoder.stats.as_dict())
        return out
