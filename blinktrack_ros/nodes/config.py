"""The nodes' own settings and the config sections they expose as ROS parameters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from blinktrack_ros.nodes.convert import EVENT_MSG_TYPES
from blinktrack_ros.tracking.event_source import EventSourceConfig
from blinktrack_ros.tracking.fusion_types import FusionConfig
from blinktrack_ros.tracking.image_source import ImageSourceConfig
from blinktrack_ros.tracking.klt import KltConfig
from blinktrack_ros.tracking.pipeline import PipelineConfig
from blinktrack_ros.tracking.seeding import SeedConfig

RELIABILITIES = ("best_effort", "reliable")
AUTO = "auto"  # event_msg_type: detected from the type the topic is published with
# Sections whose parameters may change while a node runs (the others are read_only).
DYNAMIC_SECTIONS = frozenset({"fusion"})
# Config fields that are not parameters of their own (set from another parameter).
SKIP_FIELDS = frozenset({"event_source.device"})  # = node.device


def _opt(default: Any, choices: tuple[str, ...] | None = None,
         value_range: tuple[float, float] | None = None, dynamic: bool = False) -> Any:
    meta: dict[str, Any] = {"dynamic": dynamic}
    if choices:
        meta["choices"] = choices
    if value_range:
        meta["range"] = value_range
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class NodeConfig:
    """ROS-side settings of the blinktrack_ros nodes (the core's settings are other sections).

    Attributes:
        event_msg_type: message type of the event input topic; auto = the type its publishers
            use (a set type that differs from the publishers' is an error in the log and in
            diagnostics).
        input_reliability: QoS reliability of the inputs (sensor-data profile otherwise).
        input_queue_depth: QoS history depth of the inputs (callbacks only enqueue, so this
            only has to hold a burst between two executor turns).
        inbox_capacity: input messages waiting for processing before the oldest are dropped
            (counted); when behind, the waiting event packets are processed together (see
            pipeline.backlog: merge or skip windows).
        loss_warn_fraction: diagnostics level WARN (and a throttled log line) when the fraction
            of inputs lost or unused in a diagnostics period is above this.
        camera_info_wait_s: with no CameraInfo after this long, images are used without it
            (no undistortion) and one warning names the topic.
        fusion_wait_ms: fusion_node: an observation array waits until the other module's
            arrays have reached its time, at most this long (data time) behind the newest
            arrival, so that the arrays are fused in timestamp order (the launch file sets 300
            in split mode); 0 = fused on arrival (older entries counted stale).
        device: torch device of the networks (cpu, cuda, cuda:1, ...).
        torch_threads: torch intra-op threads of the node's process (its worker threads
            included); 0 = torch's default (all cores). On 2 shared cores 1 gave the lower live
            latency (README, CPU timings).
        frame_join_ms: blinktrack_node: > 0 runs each frame on a second thread while the
            event windows of the next this many ms go on, published at once with the tracks
            fused without that frame; the frame is fused into the filter as soon as it is
            done (at the latest after this much data). 0 = frames in line (a frame delays the
            windows behind it). Pair with torch_threads 1.
        publish_refined: blinktrack_node: also publish `~/tracks_refined`: at each frame, the
            tracks of the event windows since the previous frame smoothed with that frame
            (a fixed lag of one frame: RTS over the interval, tracking.smoother.
            FixedLagSmoother), stamped with the windows' times, published with the first
            window after that frame (one frame period and one window late). With
            frame_join_ms the windows that went out before their frame are refined from
            their states fused with it; intervals that cannot be chained (a reset, frames
            stopping) are dropped and counted in diagnostics.
        event_weights: event network checkpoint; empty = the shipped weights/event_lite3.pt
            (the compact net, with its own R; the older weights/event_lite.pt and
            weights/event_lite2.pt load by path; see weights/README.md).
        image_weights: image network checkpoint; empty = the shipped weights/image_patch.pt
            (the patch network, with its own R; the paper-style weights/image_lite.pt by
            path).
        warm_up_s: blinktrack_node, event_node, image_node: at start, before subscribing, run
            this much synthetic data (a moving texture and random events) through the networks
            and forget it (tracks, ids, counters untouched; `warm-up s` in diagnostics), so that
            kernels, runtimes and the image network's traces are ready before the first
            message (cold, the first event window took about 1 s on 2 cores, and a live node
            then merged windows for seconds); 0 = off. The tracks do not change.
        warm_up_width, warm_up_height: image size of the warm-up: set the camera's (the image
            network traces per size; another size costs ~0.1-0.2 s at its first frame).
        camera_id: camera id written into the VINS-Fusion feature cloud.
        frame_id: frame_id of the outputs; empty = the input images' frame_id.
        debug_image_rate_hz: maximum rate of ~/debug_image; 0 = off.
        diagnostics_period_s: period of the /diagnostics status.
        malformed_log_period_s: at most one log line per this period about malformed input.
    """

    event_msg_type: str = _opt(AUTO, choices=(AUTO, *EVENT_MSG_TYPES))
    input_reliability: str = _opt("best_effort", choices=RELIABILITIES)
    input_queue_depth: int = _opt(100, value_range=(1, 10000))
    inbox_capacity: int = _opt(10000, value_range=(10, 1000000))
    loss_warn_fraction: float = _opt(0.01, value_range=(0.0, 1.0), dynamic=True)
    camera_info_wait_s: float = _opt(1.0, value_range=(0.0, 60.0))
    fusion_wait_ms: float = _opt(0.0, value_range=(0.0, 10000.0))
    device: str = _opt("cpu")
    torch_threads: int = _opt(0, value_range=(0, 256))
    frame_join_ms: float = _opt(0.0, value_range=(0.0, 1000.0))
    publish_refined: bool = _opt(False)
    event_weights: str = _opt("")
    image_weights: str = _opt("")
    warm_up_s: float = _opt(0.1, value_range=(0.0, 10.0))
    warm_up_width: int = _opt(240, value_range=(16, 8192))
    warm_up_height: int = _opt(180, value_range=(16, 8192))
    camera_id: int = _opt(0, value_range=(0, 255))
    frame_id: str = _opt("")
    debug_image_rate_hz: float = _opt(5.0, value_range=(0.0, 100.0), dynamic=True)
    diagnostics_period_s: float = _opt(1.0, value_range=(0.1, 60.0))
    malformed_log_period_s: float = _opt(5.0, value_range=(0.1, 3600.0), dynamic=True)

    def __post_init__(self) -> None:
        """Reject values outside the choices."""
        if self.event_msg_type not in (AUTO, *EVENT_MSG_TYPES):
            raise ValueError(f"event_msg_type {self.event_msg_type!r} is not one of "
                             f"{', '.join((AUTO, *EVENT_MSG_TYPES))}")
        if self.input_reliability not in RELIABILITIES:
            raise ValueError(f"input_reliability {self.input_reliability!r} is not one of "
                             f"{', '.join(RELIABILITIES)}")


def default_sections() -> dict[str, Any]:
    """Section name -> default config instance, in the order the parameters file lists them."""
    return {"node": NodeConfig(), "pipeline": PipelineConfig(), "fusion": FusionConfig(),
            "seeding": SeedConfig(), "event_source": EventSourceConfig(),
            "image_source": ImageSourceConfig(), "klt": KltConfig()}
