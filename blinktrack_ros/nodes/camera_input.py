"""The optional CameraInfo input of a node: synchronised by stamp when present, waited for a
short time, then done without (one warning naming the topic).

No message_filters: the pairing runs in the node's worker on the enqueued messages, so the node
behaves the same with and without a ROS install's message_filters (whose synchroniser drops
every image that has no CameraInfo partner: a camera without calibration gave no tracks).
"""

from __future__ import annotations

from collections import deque
import time
from typing import Any

from blinktrack_ros.nodes import camera, convert

SYNC_SLOP_NS = 10_000_000  # a CameraInfo within 10 ms of an image is its partner
INFOS_KEPT = 32


class CameraInput:
    """Subscribes `camera_info` of `node` (a GlueNode); answers which model goes with a frame.

    Attributes:
        models: (stamp ns, CameraModel) of the latest CameraInfos.
        gave_up: True once `wait_s` passed after the first frame without any CameraInfo.
        unsynchronised: frames given the latest model because none was within the slop.
    """

    def __init__(self, node: Any, wait_s: float, topic: str = "camera_info") -> None:
        """Subscribe (guarded and counted like every input)."""
        import sensor_msgs.msg

        self.node, self.wait_s, self.topic = node, float(wait_s), topic
        self.models: deque[tuple[int, camera.CameraModel]] = deque(maxlen=INFOS_KEPT)
        self.gave_up = False
        self.unsynchronised = 0
        self._first_frame_s: float | None = None
        node.subscribe(sensor_msgs.msg.CameraInfo, topic, self.on_info)

    def on_info(self, msg: Any) -> None:
        """Keep the intrinsics (malformed ones raise ValueError: counted by the node)."""
        self.models.append((convert.stamp_to_ns(msg.header.stamp),
                            camera.camera_model_from_info(msg)))
        self.gave_up = False

    def ready(self) -> bool:
        """True when frames can go: a CameraInfo is known, or the wait is over (warns once)."""
        if self.models or self.gave_up:
            return True
        now = time.monotonic()
        if self._first_frame_s is None:
            self._first_frame_s = now
        if now - self._first_frame_s < self.wait_s:
            return False
        self.gave_up = True
        self.node.get_logger().warning(
            f"no CameraInfo on {self.node.resolve_topic_name(self.topic)} within "
            f"{self.wait_s:g} s: using the images without it (no undistortion, no ~/feature)")
        return True

    def model_for(self, t_ns: int) -> camera.CameraModel | None:
        """The CameraInfo stamped within the slop of t_ns, else the latest one (static
        calibration; counted), None when none is known."""
        if not self.models:
            return None
        stamp, model = min(self.models, key=lambda sm: abs(sm[0] - int(t_ns)))
        if abs(stamp - int(t_ns)) > SYNC_SLOP_NS:
            self.unsynchronised += 1
            return self.models[-1][1]
        return model

    def latest(self) -> camera.CameraModel | None:
        """The latest CameraInfo's model (None when none is known)."""
        return self.models[-1][1] if self.models else None

    def stats(self) -> dict[str, str]:
        """Diagnostics values."""
        state = "known" if self.models else ("none (images used without)" if self.gave_up
                                             else "waiting")
        return {"camera_info": state, "camera_info unsynchronised frames":
                str(self.unsynchronised)}
