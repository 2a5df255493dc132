"""blinktrack_node: the whole tracker in one node around the core's Pipeline (lowest latency).

The same `tracking.pipeline.Pipeline` object the offline replay (`blinktrack track`) drives, so
a live run and a replay of the same messages give the same tracks. Subscribes `events`
(`node.event_msg_type`; dvs_msgs/EventArray raw, decoded from the CDR buffer), `image` and
`camera_info`. Publishes `~/tracks` (every fused update), `~/event_observations`,
`~/image_observations` (the observations behind each update), `~/feature` (VINS-Fusion cloud,
per frame once CameraInfo is known), `~/debug_image` (throttled) and /diagnostics. The pipeline
is not thread-safe: all callbacks share the node's one mutually exclusive callback group.
"""

from __future__ import annotations

from dataclasses import asdict
import time
from typing import Any

import numpy as np

from blinktrack_ros.images import image_msg_to_gray
from blinktrack_ros.nodes import camera, convert
from blinktrack_ros.nodes.base import GlueNode, run
from blinktrack_ros.nodes.config import default_sections
from blinktrack_ros.nodes.event import event_msg_class
from blinktrack_ros.tracking.observation import Source


def make_pipeline(configs: dict[str, Any]) -> Any:
    """The core Pipeline for the parameter sections (weights and device from `node`)."""
    from blinktrack_ros.tracking.build import pipeline_from_configs

    try:
        return pipeline_from_configs(configs)
    except FileNotFoundError as exc:
        raise ValueError(str(exc)) from None


class PipelineNode(GlueNode):
    """Glue around a Pipeline: decode, call on_events / on_image, publish the updates."""

    def __init__(self, pipeline: Any = None, name: str = "blinktrack", **kwargs: Any) -> None:
        """Create the node; `pipeline` defaults to make_pipeline(parameters)."""
        super().__init__(name, default_sections(), **kwargs)
        self.pipeline = pipeline or make_pipeline(self.params.configs)
        import sensor_msgs.msg

        import blinktrack_ros.msg

        msg, sensor = blinktrack_ros.msg, sensor_msgs.msg
        self.events_in = convert.EventInput(self.cfg.event_msg_type)
        self.cam: camera.CameraModel | None = None
        self._last_debug_s = -np.inf
        self._frame_id = self.cfg.frame_id
        pub = self.create_publisher
        self.tracks_pub = pub(msg.TrackArray, "~/tracks", self.out_qos)
        self.obs_pubs = {Source.EVENT: pub(msg.ObservationArray, "~/event_observations",
                                           self.out_qos)}
        image_obs = pub(msg.ObservationArray, "~/image_observations", self.out_qos)
        self.obs_pubs.update({Source.IMAGE: image_obs, Source.KLT: image_obs})
        self.feature_pub = pub(sensor.PointCloud, "~/feature", self.out_qos)
        self.debug_pub = pub(sensor.Image, "~/debug_image", self.out_qos)
        raw = self.cfg.event_msg_type == convert.DVS_EVENT_ARRAY
        self.subscribe(event_msg_class(self.cfg.event_msg_type), "events", self.on_events,
                       raw=raw)
        self.subscribe(sensor.Image, "image", self.on_image)
        self.subscribe(sensor.CameraInfo, "camera_info", self.on_camera_info)

    def on_config_change(self, section: str, cfg: Any) -> None:
        """Fusion parameter changes go to the pipeline's engine."""
        super().on_config_change(section, cfg)
        if section == "fusion" and hasattr(self, "pipeline"):
            from blinktrack_ros.tracking.pipeline import fusion_config_for

            self.pipeline.engine.config = fusion_config_for(self.pipeline.config.mode, cfg)

    def on_camera_info(self, msg: Any) -> None:
        """Keep the latest intrinsics."""
        self.cam = camera.camera_model_from_info(msg)

    def on_events(self, msg: Any) -> None:
        """Decode, run the complete event windows, publish their updates."""
        batch = self.events_in.decode(msg)
        self.publish_updates(self.pipeline.on_events(batch))

    def on_image(self, msg: Any) -> None:
        """Convert the frame, observe and seed, publish; the feature cloud and debug image."""
        t_ns = convert.stamp_to_ns(msg.header.stamp)
        self._frame_id = self.cfg.frame_id or msg.header.frame_id
        gray = image_msg_to_gray(msg)
        updates = self.pipeline.on_image(t_ns, gray)
        self.publish_updates(updates)
        if updates and self.cam is not None:
            self.feature_pub.publish(camera.feature_cloud(
                updates[-1].tracks, self.cam, self.cfg.camera_id, self._frame_id))
        rate, now = self.cfg.debug_image_rate_hz, time.monotonic()
        if updates and rate > 0 and now - self._last_debug_s >= 1.0 / rate:
            self._last_debug_s = now
            self.debug_pub.publish(camera.bgr_image_msg(
                camera.draw_tracks(gray, updates[-1].tracks), t_ns, self._frame_id))

    def publish_updates(self, updates: list[Any]) -> None:
        """Observations and tracks of each update, in order; latency from the update's stamp."""
        for update in updates:
            if update.observations is not None:
                pub = self.obs_pubs.get(update.observations.source)
                if pub is not None:
                    pub.publish(convert.observations_to_msg(update.observations,
                                                            self._frame_id))
            snap = update.tracks
            und = camera.undistort_normalised(self.cam, snap.positions_px) if self.cam else None
            self.tracks_pub.publish(convert.snapshot_to_msg(snap, self._frame_id, und))
            self.record_latency("updates", snap.t_ns)

    def extra_diagnostics(self) -> dict[str, str]:
        """Pipeline counters (windows merged/skipped, births, losses, resets) and decoding."""
        stats = asdict(self.pipeline.stats)
        out = {f"pipeline {k}": str(v) for k, v in stats.items() if k != "fusion"}
        out.update({f"fusion {k}": str(v) for k, v in stats.get("fusion", {}).items()})
        out.update({f"decode {k}": str(v) for k, v in self.events_in.stats.as_dict().items()})
        return out


def main(args: list[str] | None = None) -> int:
    """The blinktrack_node executable."""
    return run(PipelineNode, args)
