"""image_node: images (+ CameraInfo, fused tracks) -> image ObservationArrays and seeds.

Subscribes `image`, `camera_info` (optional) and `tracks`. Publishes `~/observations` (IMAGE
arrays, and SEED arrays when the module proposes new features). Each frame goes with the
CameraInfo stamped within 10 ms of it (else the latest: static calibration); until the first
CameraInfo, frames wait up to `node.camera_info_wait_s`, then are used without one (one
warning naming the topic). Callbacks only enqueue; when the worker is behind, only the newest
waiting frame is run (the older ones are counted as skipped).
"""

from __future__ import annotations

from typing import Any

from blinktrack_ros.images import image_msg_to_gray
from blinktrack_ros.nodes import convert
from blinktrack_ros.nodes.base import GlueNode, run
from blinktrack_ros.nodes.camera_input import CameraInput
from blinktrack_ros.nodes.config import default_sections
from blinktrack_ros.nodes.inbox import Arrival
from blinktrack_ros.nodes.modules import build_modules

HELD_FRAMES_MAX = 100  # frames held while waiting for a first CameraInfo
TICK = "_tick"


class ImageNode(GlueNode):
    """Glue around an ImageModule."""

    def __init__(self, module: Any = None, name: str = "blinktrack_image", **kwargs: Any) -> None:
        """Create the node; `module` defaults to the core's image module."""
        super().__init__(name, default_sections(), **kwargs)
        self.module = module or build_modules(self.params.configs).image
        if module is None:  # a module given by the caller is the caller's to warm up
            self.warm_up(image_source=self.module.image_source, klt=self.module.klt)
        import sensor_msgs.msg

        import blinktrack_ros.msg

        self.msg = blinktrack_ros.msg
        self.obs_pub = self.create_publisher(self.msg.ObservationArray, "~/observations",
                                             self.out_qos)
        self.frames_skipped = 0
        self.frames_held_skipped = 0
        self._held: list[tuple[Any, int]] = []  # (Image, arrival ns) waiting for CameraInfo
        self.camera = CameraInput(self, self.cfg.camera_info_wait_s, "camera_info")
        self.subscribe(sensor_msgs.msg.Image, "image", self.on_image)
        self.subscribe(self.msg.TrackArray, "tracks", self.on_tracks)
        self._handlers[TICK] = lambda _: self._flush()
        self.steady_timer(0.1, lambda: self.inbox.put(TICK, None) if self._held else None)

    def process(self, items: list[Arrival]) -> None:
        """Everything in arrival order, except frames: of several waiting, the newest only."""
        frames = [i for i, item in enumerate(items) if item.topic == "image"]
        stale = set(frames[:-1])
        self.frames_skipped += len(stale)
        super().process([item for i, item in enumerate(items) if i not in stale])

    def on_image(self, msg: Any) -> None:
        """Hold the frame until CameraInfo is settled (known, or waited for), then run it."""
        self._held.append((msg, self.arrival_ns))
        if len(self._held) > HELD_FRAMES_MAX:
            self._held.pop(0)
            self.frames_held_skipped += 1
        self._flush()

    def _flush(self) -> None:
        if not self._held or not self.camera.ready():
            return
        # frames held while waiting for the first CameraInfo: the newest is run, the older
        # ones are counted (not as a loss: the start-up wait is by design)
        self.frames_held_skipped += len(self._held) - 1
        held, self._held = self._held[-1:], []
        for msg, arrival_ns in held:
            try:
                self._frame(msg, arrival_ns)
            except ValueError as exc:
                self.count_malformed("image", exc)

    def _frame(self, msg: Any, arrival_ns: int) -> None:
        """Convert the frame, run the module, publish its observations and seeds."""
        t_ns = convert.stamp_to_ns(msg.header.stamp)
        if self.check_time(t_ns):
            self.module.reset()
        gray = image_msg_to_gray(msg)
        # pairs the frame with its CameraInfo (counted if none, or if its size differs)
        self.camera.model_for(t_ns, gray.shape)
        frame_id = self.cfg.frame_id or msg.header.frame_id
        for obs in self.module.on_image(t_ns, gray):
            self.publish_monotonic(self.obs_pub, convert.observations_to_msg(obs, frame_id),
                                   obs.t_ns)
        self.record_latency("image", arrival_ns)

    def on_tracks(self, msg: Any) -> None:
        """Fused positions: search starts for the next frame."""
        self.module.on_tracks(convert.msg_to_snapshot(msg))

    def extra_diagnostics(self) -> dict[str, str]:
        """CameraInfo state, skipped frames and the module's counters."""
        out = dict(self.camera.stats())
        out["frames skipped (backlog)"] = str(self.frames_skipped)
        out["frames skipped (waiting for camera_info)"] = str(self.frames_held_skipped)
        out.update({f"image module {k}": str(v)
                    for k, v in getattr(self.module, "counts", {}).items()})
        return out

    def unused_inputs(self) -> int:
        """Also the frames skipped when behind."""
        return super().unused_inputs() + self.frames_skipped


def main(args: list[str] | None = None) -> int:
    """The image_node executable."""
    return run(ImageNode, args)
