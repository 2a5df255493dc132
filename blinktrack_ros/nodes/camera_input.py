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
        size_mismatch: frames whose size differs from their CameraInfo's width x height: the
            model is not used for them (wrong intrinsics would give wrong undistorted
            positions); warned once per size pair.
    """

    def __init__(self, node: Any, wait_s: float, topic: str = "camera_info") -> None:
        """Subscribe (guarded and counted like every input)."""
        import sensor_msgs.msg

        self.node, self.wait_s, self.topic = node, float(wait_s), topic
        self.models: deque[tuple[int, camera.CameraModel]] = deque(maxlen=INFOS_KEPT)
        self.gave_up = False
        self.unsynchronised = 0
        self.size_mismatch = 0
        self._warned_sizes: set[tuple[int, int, int, int]] = set()
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

    def model_for(self, t_ns: int, size: tuple[int, int] | None = None
                  ) -> camera.CameraModel | None:
        """The CameraInfo stamped within the slop of t_ns, else the latest one (static
        calibration; counted), None when none is known or when the frame's (height, width)
        `size` differs from the CameraInfo's (counted, warned once per size pair)."""
        if not self.models:
            return None
        stamp, model = min(self.models, key=lambda sm: abs(sm[0] - int(t_ns)))
        if abs(stamp - int(t_ns)) > SYNC_SLOP_NS:
            self.unsynchronised += 1
            model = self.models[-1][1]
        if size is not None and model.width > 0 and model.height > 0 and \
                (int(size[0]), int(size[1])) != (model.height, model.width):
            self.size_mismatch += 1
            key = (int(size[1]), int(size[0]), model.width, model.height)
            if key not in self._warned_sizes:
                self._warned_sizes.add(key)
                self.node.get_logger().warning(
                    f"frames are {key[0]}x{key[1]} but the CameraInfo on "
                    f"{self.node.resolve_topic_name(self.topic)} says {key[2]}x{key[3]}: its "
                    "intrinsics are not used for these frames (no undistortion, no ~/feature)")
            return None
        return model

    def latest(self) -> camera.CameraModel | None:
        """The latest CameraInfo's model (None when none is known)."""
        return self.models[-1][1] if self.models else None

    def stats(self) -> dict[str, str]:
        """Diagnostics values."""
        state = "known" if self.models else ("none (images used without)" if self.gave_up
                                             else "waiting")
        return {"camera_info": state, "camera_info unsynchronised frames":
                str(self.unsynchronised), "camera_info size mismatch frames":
                str(self.size_mismatch)}
