"""blinktrack_node: the whole tracker in one node around the core's Pipeline (lowest latency).

The same `tracking.pipeline.Pipeline` object the offline replay (`blinktrack track`) drives, so
a live run and a replay of the same messages give the same tracks. Subscribes `events`
(`node.event_msg_type`; dvs_msgs/EventArray raw, decoded from the CDR buffer), `image` and
`camera_info`. Publishes `~/tracks` (every fused update), `~/event_observations`,
`~/image_observations` (the observations behind each update), `~/feature` (VINS-Fusion cloud,
per frame once CameraInfo is known), `~/debug_image` (throttled), /diagnostics and, with
`node.publish_refined`, `~/tracks_refined` (the windows between two frames smoothed with the
later frame, published with the first window after it). The pipeline
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
from blinktrack_ros.nodes.camera_input import CameraInput
from blinktrack_ros.nodes.config import default_sections
from blinktrack_ros.nodes.event_topic import EventTopic
from blinktrack_ros.nodes.inbox import Arrival
from blinktrack_ros.nodes.trace import NodeTrace
from blinktrack_ros.tracking import fusion_jit
from blinktrack_ros.tracking.observation import Source


def make_pipeline(configs: dict[str, Any]) -> Any:
    """The core Pipeline for the parameter sections (weights and device from `node`)."""
    from blinktrack_ros.tracking.build import pipeline_from_configs

    try:
        return pipeline_from_configs(configs)
    except FileNotFoundError as exc:
        raise ValueError(str(exc)) from None


class PipelineNode(GlueNode):
    """Glue around a Pipeline: decode, call on_events / on_image, publish the updates.

    Callbacks only enqueue; the worker takes every input waiting and runs it in timestamp
    order (event packets up to a frame's stamp first, like the offline replay; consecutive
    packets as one batch, whose windows the pipeline merges or skips when behind,
    `pipeline.backlog`), so the latency stays bounded and no input waits in the middleware.
    """

    def __init__(self, pipeline: Any = None, name: str = "blinktrack", **kwargs: Any) -> None:
        """Create the node; `pipeline` defaults to make_pipeline(parameters)."""
        super().__init__(name, default_sections(), **kwargs)
        self.pipeline = pipeline or make_pipeline(self.params.configs)
        self.warm_up(self.pipeline)
        import sensor_msgs.msg

        import blinktrack_ros.msg

        msg, sensor = blinktrack_ros.msg, sensor_msgs.msg
        self._last_debug_s = -np.inf
        self.frames_skipped = 0  # stale frames of a backlog, see _skip_stale_frames
        self._frames_out: dict[int, np.ndarray] = {}  # frames whose tracks are not out yet
        self.trace = NodeTrace()  # per-input timestamps when $BLINKTRACK_NODE_TRACE is set
        self._frame_id = self.cfg.frame_id
        pub = self.create_publisher
        self.tracks_pub = pub(msg.TrackArray, "~/tracks", self.out_qos)
        self.obs_pubs = {Source.EVENT: pub(msg.ObservationArray, "~/event_observations",
                                           self.out_qos)}
        image_obs = pub(msg.ObservationArray, "~/image_observations", self.out_qos)
        self.obs_pubs.update({Source.IMAGE: image_obs, Source.KLT: image_obs})
        self.feature_pub = pub(sensor.PointCloud, "~/feature", self.out_qos)
        self.debug_pub = pub(sensor.Image, "~/debug_image", self.out_qos)
        self.refined_pub, self.smoother = None, None
        if self.cfg.publish_refined:
            from blinktrack_ros.tracking.smoother import FixedLagSmoother

            self.refined_pub = pub(msg.TrackArray, "~/tracks_refined", self.out_qos)
            self.smoother = FixedLagSmoother(self.pipeline.engine.config.q)
        self.subscribe(sensor.Image, "image", lambda m: None)
        self.camera = CameraInput(self, self.cfg.camera_info_wait_s, "camera_info")
        self.events = EventTopic(self, self.cfg.event_msg_type, lambda m: None, "events")

    @property
    def events_in(self) -> Any:
        """The event decoder (None until the event type is known)."""
        return self.events.decoder

    @property
    def cam(self) -> camera.CameraModel | None:
        """The latest CameraInfo's model (None: none known)."""
        return self.camera.latest()

    def on_config_change(self, section: str, cfg: Any) -> None:
        """Fusion parameter changes go to the pipeline's engine."""
        super().on_config_change(section, cfg)
        if section == "fusion" and hasattr(self, "pipeline"):
            from blinktrack_ros.tracking.pipeline import fusion_config_for

            p = self.pipeline
            p.engine.config = fusion_config_for(
                p.config.mode, cfg, p.event.source if p.event is not None else None,
                p.image.image_source)

    def process(self, items: list[Arrival]) -> None:
        """CameraInfo at once; events and frames in timestamp order (see the class)."""
        self.trace.taken_ns = time.monotonic_ns()
        inputs = []
        for item in items:
            if item.topic == "events":
                try:
                    batch = self.events.decode(item.msg)
                except ValueError as exc:
                    self.count_malformed("events", exc)
                    continue
                if len(batch):
                    inputs.append((int(batch.t[-1]), 0, item.arrival_ns, batch))
            elif item.topic == "image":
                inputs.append((convert.stamp_to_ns(item.msg.header.stamp), 1, item.arrival_ns,
                               item.msg))
            else:
                super().process([item])
        self._run_inputs(inputs)

    def _run_inputs(self, items: list[tuple[int, int, int, Any]]) -> None:
        """Run (stamp, 0 events / 1 frame, arrival, value) in timestamp order; consecutive
        event packets go in as one batch."""
        items = self._skip_stale_frames(sorted(items, key=lambda item: item[:2]))
        batches: list[Any] = []
        for _, kind, arrival_ns, value in items:
            if kind == 0 and (not batches or value.t[0] >= batches[-1].t[-1]):
                batches.append(value)
                self.arrival_ns = max(self.arrival_ns, arrival_ns)
                continue
            if batches:
                self._run_events(EventBatch.concatenate(batches))
                batches = []
            self.arrival_ns = arrival_ns
            if kind == 0:
                batches.append(value)
                continue
            try:
                self._frame(value)
            except ValueError as exc:
                self.count_malformed("image", exc)
        if batches:
            self._run_events(EventBatch.concatenate(batches))

    def _run_events(self, batch: EventBatch) -> None:
        if self.check_time(int(batch.t[0]), "events"):  # the pipeline resets itself
            self.events.decoder.reset()
            self._frames_out.clear()
        start, cpu = time.monotonic_ns(), time.thread_time_ns()
        updates = self.pipeline.on_events(batch)
        end, cpu = time.monotonic_ns(), time.thread_time_ns() - cpu
        self.publish_updates(updates)
        self.trace.add("events", int(batch.t[-1]), len(updates), self.arrival_ns, start, end, cpu)

    def _skip_stale_frames(self, items: list[tuple[int, int, int, Any]]
                           ) -> list[tuple[int, int, int, Any]]:
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
        if self.check_time(t_ns, "image"):  # output stamps start again (the pipeline resets)
            self._frames_out.clear()
        self._frame_id = self.cfg.frame_id or msg.header.frame_id or self._frame_id
        gray = image_msg_to_gray(msg)
        self.camera.ready()  # warns once when no CameraInfo came
        self._frames_out[t_ns] = gray  # its feature cloud goes out with its tracks
        start, cpu = time.monotonic_ns(), time.thread_time_ns()
        updates = self.pipeline.on_image(t_ns, gray)
        end, cpu = time.monotonic_ns(), time.thread_time_ns() - cpu
        self.publish_updates(updates)
        self.trace.add("frame", t_ns, len(updates), self.arrival_ns, start, end, cpu)

    def _frame_outputs(self, updates: list[Any]) -> None:
        """The feature cloud and debug image of each frame whose tracks are in `updates` (at
        once with frames in line; at the frame's join with node.frame_join_ms)."""
        last = {u.tracks.t_ns: u.tracks for u in updates if u.tracks.t_ns in self._frames_out}
        for t_ns, tracks in sorted(last.items()):
            gray = self._frames_out.pop(t_ns)
            for old in [t for t in self._frames_out if t < t_ns]:  # reset or skipped
                del self._frames_out[old]
            cam = self.camera.model_for(t_ns, gray.shape)
            if cam is not None:
                self.feature_pub.publish(camera.feature_cloud(
                    tracks, cam, self.cfg.camera_id, self._frame_id))
            rate, now = self.cfg.debug_image_rate_hz, time.monotonic()
            if rate > 0 and now - self._last_debug_s >= 1.0 / rate:
                self._last_debug_s = now
                self.debug_pub.publish(camera.bgr_image_msg(
                    camera.draw_tracks(gray, tracks), t_ns, self._frame_id))

    def publish_updates(self, updates: list[Any]) -> None:
        """Tracks, then the observations behind them, of each update, in order and never going
        back in time (an update older than the last published is fused and counted, not
        published); latency from the wall-clock arrival of the input that completed it (the
        tracks go out first: they are what a consumer waits for). A frame's `late` updates
        (node.frame_join_ms: later windows already went out) publish their observations and
        the frame's feature cloud only."""
        cam = self.cam
        for update in updates:
            snap = update.tracks
            if getattr(update, "refit", False):  # went out provisionally: smoother only
                if self.smoother is not None:
                    self._publish_refined(update, cam)
                continue
            if getattr(update, "late", False):
                pass
            elif self.publish_monotonic(self.tracks_pub, convert.snapshot_to_msg(
                    snap, self._frame_id,
                    camera.undistort_normalised(cam, snap.positions_px) if cam else None),
                    snap.t_ns):
                self.record_latency("updates")
            if update.observations is not None:
                pub = self.obs_pubs.get(update.observations.source)
                if pub is not None:
                    self.publish_monotonic(pub, convert.observations_to_msg(
                        update.observations, self._frame_id), update.observations.t_ns)
            if self.smoother is not None and not getattr(update, "provisional", False):
                self._publish_refined(update, cam)  # provisional windows: their refit later
        if self._frames_out:
            self._frame_outputs(updates)

    def _publish_refined(self, update: Any, cam: Any) -> None:
        """Feed the fixed-lag smoother; at a frame, publish the refined windows before it."""
        config = self.pipeline.engine.config  # fusion parameters may change at run time
        self.smoother.q, self.smoother.constant_q = config.q, config.constant_q
        for snap in self.smoother.add(update.tracks, frame=not update.event_window):
            self.publish_monotonic(self.refined_pub, convert.snapshot_to_msg(
                snap, self._frame_id,
                camera.undistort_normalised(cam, snap.positions_px) if cam else None),
                snap.t_ns)

    def extra_diagnostics(self) -> dict[str, str]:
        """Pipeline counters (windows merged/skipped, births, losses, resets) and decoding."""
        stats = asdict(self.pipeline.stats)
        out = {f"pipeline {k}": str(v) for k, v in stats.items()
               if k not in ("fusion", "sources")}
        out.update({f"fusion {k}": str(v) for k, v in stats.get("fusion", {}).items()})
        out.update({f"network {k}": str(v) for k, v in stats.get("sources", {}).items()})
        if self.pipeline.event_source is not None:
            out["network event step"] = self.pipeline.event_source.step_runtime
        out.update({f"decode {k}": str(v) for k, v in self.events.stats().items()})
        out["fusion kernel"] = fusion_jit.backend()
        out["pipeline backlog policy"] = str(getattr(self.pipeline.config.backlog, "value",
                                                     self.pipeline.config.backlog))
        out["frames skipped (backlog)"] = str(self.frames_skipped)
        if self.smoother is not None:
            out["refined windows dropped"] = str(self.smoother.dropped)
        out.update(self.camera.stats())
        return out

    def unused_inputs(self) -> int:
        """Also the frames skipped and the event windows skipped when behind."""
        skipped = getattr(self.pipeline.stats, "windows_skipped", 0)
        return super().unused_inputs() + self.frames_skipped + int(skipped)


    def destroy_node(self) -> None:
        """Stop processing, write the trace (when enabled), destroy the node."""
        super().destroy_node()
        self.trace.save()


def main(args: list[str] | None = None) -> int:
    """The blinktrack_node executable."""
    return run(PipelineNode, args)
