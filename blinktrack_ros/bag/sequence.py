"""A whole bag in memory as a sequence: frames, events, and the ground truth beside it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from blinktrack_ros.bag.core import GrayFrame, iter_core
from blinktrack_ros.bag.reader import BagError, bag_summary
from blinktrack_ros.bag.types import DVS_EVENT_ARRAY, EVENT_PACKET, IMAGE, LEGACY_EVENT_ARRAY
from blinktrack_ros.events.batch import EventBatch

EVENT_TYPES = (DVS_EVENT_ARRAY, EVENT_PACKET, LEGACY_EVENT_ARRAY)


@dataclass
class BagSequence:
    """What the benchmark runner and the offline tools need of a recording.

    Attributes:
        name: the bag's name (the `<name>.gt.txt` beside it is its ground truth).
        frames: list of (H, W) float32 frames in [0, 1].
        frame_times_ns: (F,) int64 header stamps.
        events: all events, time-sorted.
        gt: (K, 4|5) rows `id t x y [vis]` (t in s), or None.
        time_origin_ns: the bag stamp of time 0 (the ground truth's `# time origin` header,
            e.g. `blinktrack synth`'s epoch; 0 without one). frame_times_ns and events.t are
            the stamps minus it, in the time of gt.
    """

    name: str
    frames: list[np.ndarray]
    frame_times_ns: np.ndarray
    events: EventBatch
    gt: np.ndarray | None
    time_origin_ns: int = 0


def pick_topics(bag: str | Path, event_topic: str | None = None,
                image_topic: str | None = None) -> tuple[str | None, str | None]:
    """The event and image topics to use: the given ones (checked) or the only candidates."""
    topics = bag_summary(bag)["topics"]
    chosen = []
    for given, types, what in ((event_topic, EVENT_TYPES, "event"),
                               (image_topic, (IMAGE,), "image")):
        found = [t for t, info in topics.items() if info["type"] in types]
        if given is not None:
            if given not in topics:
                raise BagError(f"{bag}: no topic {given!r}; it has {sorted(topics)}")
            chosen.append(given)
        elif len(found) > 1:
            raise BagError(f"{bag}: several {what} topics {found}: choose one with "
                           f"--{what}-topic")
        else:
            chosen.append(found[0] if found else None)
    return chosen[0], chosen[1]


def load_bag_sequence(bag: str | Path, event_topic: str | None = None,
                      image_topic: str | None = None) -> BagSequence:
    """Read a bag's events and frames (and `<bag>.gt.txt` when present) into memory, in the
    time of the ground truth (stamps minus its time origin)."""
    from blinktrack_ros.eval.tracks_io import header_time_origin_ns

    bag = Path(bag)
    gt_path = bag.parent / f"{bag.name}.gt.txt"
    origin = header_time_origin_ns(gt_path) if gt_path.is_file() else 0
    ev_topic, im_topic = pick_topics(bag, event_topic, image_topic)
    topics = [t for t in (ev_topic, im_topic) if t]
    batches: list[EventBatch] = []
    frames: list[GrayFrame] = []
    for m in iter_core(bag, topics=topics):
        if isinstance(m.value, EventBatch):
            batches.append(m.value)
        elif isinstance(m.value, GrayFrame):
            frames.append(m.value)
    if batches:
        events = EventBatch.concatenate(batches)
        order = np.argsort(events.t, kind="stable")
        events = EventBatch(events.x[order], events.y[order],
                            events.t[order] - np.int64(origin), events.p[order], events.width,
                            events.height)
    else:
        h, w = frames[0].gray.shape if frames else (0, 0)
        events = EventBatch.empty(w, h)
    gt = np.loadtxt(gt_path, ndmin=2) if gt_path.is_file() else None
    return BagSequence(bag.name, [f.gray for f in frames],
                       np.array([f.t_ns - origin for f in frames], np.int64), events, gt,
                       origin)


def discover_bags(data: str | Path) -> list[Path]:
    """Bag folders (with metadata.yaml) that have a `<name>.gt.txt` beside them, sorted."""
    data = Path(data)
    candidates = [data] if (data / "metadata.yaml").is_file() else sorted(
        p for p in data.iterdir() if p.is_dir() and (p / "metadata.yaml").is_file())
    return [p for p in candidates if (p.parent / f"{p.name}.gt.txt").is_file()]
