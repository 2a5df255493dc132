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

from blinktrack_ros.events.batch import EventBatch
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
        self.frames_skipped = 0  # stale frames of a backlog, see _skip_stale_frames
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
        self._events_sub = self.subscribe(event_msg_class(self.cfg.event_msg_type), "events",
                                          self.on_events, raw=raw)
        self._image_sub = self.subscribe(sensor.Image, "image", self.on_image)
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
        """Decode, run the complete event windows, publish their updates (with the backlog)."""
        batch = self.events_in.decode(msg)
        self._run_inputs([(int(batch.t[-1]), 0, batch)] if len(batch) else [])

    def on_image(self, msg: Any) -> None:
        """Convert the frame, observe and seed, publish (with the backlog)."""
        self._run_inputs([(convert.stamp_to_ns(msg.header.stamp), 1, msg)])

    def _pending_inputs(self) -> list[tuple[int, int, Any]]:
        """(stamp ns, 0 events / 1 frame, batch or Image) of every message waiting in the
        input queues: when the node falls behind, the backlog is run at once, so that the
        pipeline's `max_pending_windows` / `backlog` policy bounds the latency (messages
        handled one by one would wait in the middleware queues instead)."""
        items = []
        for msg in self.take_pending("events", self._events_sub):
            try:
                batch = self.events_in.decode(msg)
            except ValueError as exc:
                self.count_malformed("events", exc)
                continue
            if len(batch):
                items.append((int(batch.t[-1]), 0, batch))
        for msg in self.take_pending("image", self._image_sub):
            items.append((convert.stamp_to_ns(msg.header.stamp), 1, msg))
        return items

    def _run_inputs(self, items: list[tuple[int, int, Any]]) -> None:
        """Run these inputs and the backlog in timestamp order (events up to a frame's stamp
        first, like the offline replay); consecutive event packets go in as one batch."""
        items = sorted(items + self._pending_inputs(), key=lambda item: item[:2])
        items = self._skip_stale_frames(items)
        batches: list[Any] = []
        for _, kind, value in items:
            if kind == 0 and (not batches or value.t[0] >= batches[-1].t[-1]):
                batches.append(value)
                continue
            if batches:
                self.publish_updates(self.pipeline.on_events(EventBatch.concatenate(batches)))
                batches = []
            if kind == 0:
                batches.append(value)
                continue
            try:
                self._frame(value)
            except ValueError as exc:
                self.count_malformed("image", exc)
        if batches:
            self.publish_updates(self.pipeline.on_events(EventBatch.concatenate(batches)))

    def _skip_stale_frames(self, items: list[tuple[int, int, Any]]
                           ) -> list[tuple[int, int, Any]]:
        """When the backlog spans more than the pipeline's event backlog bound
        (max_pending_windows x event_window_ms), frames older than the newest pending one
        are dropped (counted): each costs a whole image-network pass, so running them all
        would keep the node behind however the event windows are merged."""
        frames = [i for i, item in enumerate(items) if item[1] == 1]
        if len(frames) < 2:
            return items
        cfg = self.pipeline.config
        bound_ns = int(cfg.max_pending_windows * cfg.event_window_ms * 1e6)
        if items[-1][0] - items[0][0] <= bound_ns:
            return items
        stale = set(frames[:-1])
        self.frames_skipped += len(stale)
        return [item for i, item in enumerate(items) if i not in stale]

    def _frame(self, msg: Any) -> None:
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
        out["frames skipped (backlog)"] = str(self.frames_skipped)
        return out


def main(args: list[str] | None = None) -> int:
    """The blinktrack_node executable."""
    return run(PipelineNode, args)
