"""image_node: images (+ CameraInfo, fused tracks) -> image ObservationArrays and seeds.

Subscribes `image`, `camera_info` and `tracks`. Publishes `~/observations` (IMAGE arrays, and
SEED arrays when the module proposes new features). Where message_filters is installed (a ROS
install; not in the pip wheels) image and CameraInfo are paired by its
ApproximateTimeSynchronizer (slop 10 ms); without it the latest CameraInfo is used, which is the
same for the usual static calibration.
"""

from __future__ import annotations

from typing import Any

from blinktrack_ros.images import image_msg_to_gray
from blinktrack_ros.nodes import camera, convert
from blinktrack_ros.nodes.base import GlueNode, run
from blinktrack_ros.nodes.config import default_sections
from blinktrack_ros.nodes.modules import build_modules

try:  # optional: part of a ROS install, not of the pip wheels
    import message_filters
except ImportError:
    message_filters = None
SYNC_SLOP_S = 0.01


class ImageNode(GlueNode):
    """Glue around an ImageModule."""

    def __init__(self, module: Any = None, name: str = "blinktrack_image", **kwargs: Any) -> None:
        """Create the node; `module` defaults to the core's image module."""
        super().__init__(name, default_sections(), **kwargs)
        self.module = module or build_modules(self.params.configs).image
        import sensor_msgs.msg

        import blinktrack_ros.msg

        self.msg = blinktrack_ros.msg
        self.cam: camera.CameraModel | None = None
        self.obs_pub = self.create_publisher(self.msg.ObservationArray, "~/observations",
                                             self.out_qos)
        if message_filters is None:
            self.subscribe(sensor_msgs.msg.Image, "image", self.on_image)
            self.subscribe(sensor_msgs.msg.CameraInfo, "camera_info", self.on_camera_info)
        else:
            self._sync = self.synchronise(sensor_msgs.msg)
        self.subscribe(self.msg.TrackArray, "tracks", self.on_tracks)

    def synchronise(self, sensor_msgs_msg: Any) -> Any:
        """Pair image and CameraInfo with message_filters (guarded like `subscribe`)."""
        subs = [message_filters.Subscriber(self, sensor_msgs_msg.Image, "image",
                                           qos_profile=self.in_qos),
                message_filters.Subscriber(self, sensor_msgs_msg.CameraInfo, "camera_info",
                                           qos_profile=self.in_qos)]
        sync = message_filters.ApproximateTimeSynchronizer(subs, 10, SYNC_SLOP_S)
        guarded = self.guard("image", lambda pair: (self.on_camera_info(pair[1]),
                                                    self.on_image(pair[0])))
        sync.registerCallback(lambda image, info: guarded((image, info)))
        return subs, sync

    def on_camera_info(self, msg: Any) -> None:
        """Keep the latest intrinsics."""
        self.cam = camera.camera_model_from_info(msg)

    def on_image(self, msg: Any) -> None:
        """Convert the frame, run the module, publish its observations and seeds."""
        t_ns = convert.stamp_to_ns(msg.header.stamp)
        if self.check_time(t_ns):
            self.module.reset()
        frame_id = self.cfg.frame_id or msg.header.frame_id
        for obs in self.module.on_image(t_ns, image_msg_to_gray(msg)):
            self.obs_pub.publish(convert.observations_to_msg(obs, frame_id))
        self.record_latency("image", t_ns)

    def on_tracks(self, msg: Any) -> None:
        """Fused positions: search starts for the next frame."""
        self.module.on_tracks(convert.msg_to_snapshot(msg))


def main(args: list[str] | None = None) -> int:
    """The image_node executable."""
    return run(ImageNode, args)
