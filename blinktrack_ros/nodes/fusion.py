"""fusion_node: ObservationArrays from the modules -> fused TrackArray, VINS feature cloud.

Subscribes `event_observations`, `image_observations` (ObservationArray; SEED arrays start
tracks; fused in timestamp order across the two, each array waiting at most
`node.fusion_wait_ms` for the other module to catch up), `camera_info` (optional: undistorted
output and ~/feature; one warning when none came) and `image` (only for ~/debug_image).
Publishes `~/tracks` on every fused update with a stamp
not older than the last one published (an older array is fused and counted, not published),
`~/feature` at frame rate (on each IMAGE array, when CameraInfo is known), `~/debug_image`
(throttled) and /diagnostics. Every message carries the frame_id (`node.frame_id`, else the
latest non-empty one of the inputs).
"""

from __future__ import annotations

from functools import partial
import time
from typing import Any

import numpy as np

from blinktrack_ros.images import image_msg_to_gray
from blinktrack_ros.nodes import camera, convert
from blinktrack_ros.nodes.base import GlueNode, run
from blinktrack_ros.nodes.camera_input import CameraInput
from blinktrack_ros.nodes.config import NodeConfig
from blinktrack_ros.nodes.ordering import StreamOrder
from blinktrack_ros.tracking import fusion_jit
from blinktrack_ros.tracking.fusion_types import FusionConfig, TrackSnapshot
from blinktrack_ros.tracking.modules import FusionModule
from blinktrack_ros.tracking.observation import Observations, Source


class FusionNode(GlueNode):
    """Glue around a FusionModule (default: the core's FusionModule)."""

    def __init__(self, module: Any = None, name: str = "blinktrack", **kwargs: Any) -> None:
        """Create the node; `module` defaults to the core's FusionModule."""
        super().__init__(name, {"node": NodeConfig(), "fusion": FusionConfig()}, **kwargs)
        self.module = module or FusionModule(self._fusion_config(self.params.configs["fusion"]))
        self._last_debug_s = -np.inf
        self._latest_snap: TrackSnapshot | None = None
        self.frame_id = self.cfg.frame_id
        self.init_outputs()
        self.order = StreamOrder(int(self.cfg.fusion_wait_ms * 1e6))
        for topic in ("event_observations", "image_observations"):
            self.subscribe(self.msg.ObservationArray, topic, partial(self.on_arrays, topic))
        self.camera = CameraInput(self, self.cfg.camera_info_wait_s, "camera_info")
        self.subscribe(self.sensor.Image, "image", self.on_image)

    @property
    def cam(self) -> camera.CameraModel | None:
        """The latest CameraInfo's model (None: none known)."""
        return self.camera.latest()

    def init_outputs(self) -> None:
        """Publishers of ~/tracks, ~/feature and ~/debug_image."""
        import sensor_msgs.msg

        import blinktrack_ros.msg

        self.msg, self.sensor = blinktrack_ros.msg, sensor_msgs.msg
        self.tracks_pub = self.create_publisher(self.msg.TrackArray, "~/tracks", self.out_qos)
        self.feature_pub = self.create_publisher(self.sensor.PointCloud, "~/feature",
                                                 self.out_qos)
        self.debug_pub = self.create_publisher(self.sensor.Image, "~/debug_image", self.out_qos)

    def _fusion_config(self, cfg: FusionConfig) -> FusionConfig:
        """cfg with the noise fitted for the weights the network nodes load (same
        node.event_weights / node.image_weights parameters), where they carry one."""
        from blinktrack_ros.tracking.build import weights_noise_fits
        from blinktrack_ros.tracking.pipeline import with_weights_noise

        if not cfg.noise_from_weights:
            return cfg
        node = self.params.configs["node"]
        try:
            fits = weights_noise_fits(node.event_weights or None, node.image_weights or None)
        except (OSError, ValueError) as exc:  # the network nodes report bad weights themselves
            self.get_logger().warning(f"fusion.noise_from_weights: cannot read the weights' "
                                      f"noise ({exc}); using the fusion.*_noise_* parameters")
            return cfg
        return with_weights_noise(cfg, fits)

    def on_config_change(self, section: str, cfg: Any) -> None:
        """Pass fusion parameter changes to the module."""
        super().on_config_change(section, cfg)
        if section == "fusion" and hasattr(self, "module"):
            self.module.set_config(self._fusion_config(cfg))

    def on_arrays(self, stream: str, msg: Any) -> None:
        """Convert; fuse (and publish) every array now due in timestamp order (StreamOrder:
        the event and image modules deliver with different delays)."""
        obs = convert.msg_to_observations(msg)
        if self.check_time(obs.t_ns, stream):
            self.module.reset()
            self.order.reset()
        for due, frame_id, arrival_ns in self.order.push(stream, obs.t_ns,
                                                         (obs, msg.header.frame_id,
                                                          self.arrival_ns)):
            self.arrival_ns = arrival_ns
            self.fuse(due, frame_id)

    def fuse(self, obs: Observations, frame_id: str = "") -> TrackSnapshot | None:
        """Fuse one array and publish the results."""
        snap = self.module.on_observations(obs)
        if snap is None:
            return None
        self.frame_id = self.cfg.frame_id or frame_id or self.frame_id
        self.camera.ready()  # warns once when no CameraInfo came
        cam = self.cam
        und = camera.undistort_normalised(cam, snap.positions_px) if cam else None
        if not self.publish_monotonic(self.tracks_pub,
                                      convert.snapshot_to_msg(snap, self.frame_id, und),
                                      snap.t_ns):
            return None
        self.record_latency("observations")
        if obs.source == Source.IMAGE and cam is not None:
            self.feature_pub.publish(camera.feature_cloud(snap, cam, self.cfg.camera_id,
                                                          self.frame_id))
        self._latest_snap = snap
        return snap

    def on_image(self, msg: Any) -> None:
        """Draw the latest tracks on this frame, at most debug_image_rate_hz times a second
        (the frames also give the outputs' frame_id when the observations carry none)."""
        self.frame_id = self.cfg.frame_id or msg.header.frame_id or self.frame_id
        rate = self.cfg.debug_image_rate_hz
        now = time.monotonic()
        if rate <= 0 or self._latest_snap is None or now - self._last_debug_s < 1.0 / rate:
            return
        self._last_debug_s = now
        img = camera.draw_tracks(image_msg_to_gray(msg), self._latest_snap)
        self.debug_pub.publish(camera.bgr_image_msg(
            img, convert.stamp_to_ns(msg.header.stamp), self.frame_id))

    def extra_diagnostics(self) -> dict[str, str]:
        """The fusion counters."""
        stats = self.module.stats() if hasattr(self.module, "stats") else {}
        out = {f"fusion {k}": str(v) for k, v in stats.items()}
        out["fusion kernel"] = fusion_jit.backend()
        out["arrays waiting for the other module"] = str(len(self.order))
        out["arrays arrived after later ones were fused"] = str(self.order.late)
        out.update(self.camera.stats())
        return out


def main(args: list[str] | None = None) -> int:
    """The fusion_node executable."""
    return run(FusionNode, args)
