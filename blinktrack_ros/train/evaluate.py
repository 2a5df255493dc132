"""Per-network evaluation: trained vs untrained rollouts on held-out synthetic sequences.

Tracks start exactly on the ground truth at a frame time (no augmentation, no start noise) and
are followed for a fixed number of steps, as in validation; the figures come from
`blinktrack_ros.eval.metrics` (see `train.validate.rollout_metrics`). The untrained networks are
the same architectures initialised with torch.manual_seed(0).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from blinktrack_ros.models.event_net import EventNet, load_event_net
from blinktrack_ros.models.image_net import ImageNet, load_image_net
from blinktrack_ros.train.data import Augment, DataSpec, load_or_generate, sample_snippets
from blinktrack_ros.train.event_rollout import WINDOW_NS, RolloutResult, event_rollout
from blinktrack_ros.train.image_rollout import image_rollout
from blinktrack_ros.train.validate import rollout_metrics

EVENT_STEPS = 25  # 250 ms of 10 ms windows
IMAGE_STEPS = 12  # 240 ms at 50 Hz
SNIPPETS_PER_SEQUENCE = 4
TRACKS_PER_SNIPPET = 32


def _snippets(seqs: list, event: bool, seed: int = 7) -> list:
    rng = np.random.default_rng(seed)
    out = []
    for seq in seqs:
        if event:
            out += sample_snippets([seq], rng, SNIPPETS_PER_SEQUENCE,
                                   n_tracks=TRACKS_PER_SNIPPET, n_steps=EVENT_STEPS,
                                   step_ns=WINDOW_NS, aug=Augment.none(), with_events=True)
        else:
            period = int(seq.frame_times_ns[1] - seq.frame_times_ns[0])
            out += sample_snippets([seq], rng, SNIPPETS_PER_SEQUENCE,
                                   n_tracks=TRACKS_PER_SNIPPET, n_steps=IMAGE_STEPS,
                                   step_ns=period, aug=Augment.none(), with_events=False,
                                   n_frames=IMAGE_STEPS + 1)
    return out


def zero_motion(r: RolloutResult) -> RolloutResult:
    """The same rollout with every track held at its start position (the floor to beat)."""
    return replace(r, positions=np.broadcast_to(r.positions[:1], r.positions.shape).copy())


def evaluate_weights(event_path: Path | None, image_path: Path | None, preset: str,
                     seeds: tuple[int, ...], cache_dir: str | Path | None,
                     width: int = 240, height: int = 180, duration_s: float = 1.0
                     ) -> dict[str, dict[str, float]]:
    """Rows of figures: `event_untrained`, `event_trained` (Kalman filter in the loop),
    `event_*_raw` (self-rollout without filter), `image_untrained`, `image_trained`, and
    `*_zero_motion` (tracks that never move, on the same snippets)."""
    seqs = load_or_generate(DataSpec(preset, width, height, duration_s, tuple(seeds)),
                            cache_dir)
    rows: dict[str, dict[str, float]] = {}
    with torch.no_grad():
        if event_path is not None:
            snippets = _snippets(seqs, event=True)
            trained = load_event_net(event_path)
            torch.manual_seed(0)  # the same architecture and size, untrained
            nets = {"untrained": EventNet(trained.config).eval(), "trained": trained}
            for name, net in nets.items():
                for kf in (True, False):
                    r = event_rollout(net, snippets, kalman_in_loop=kf)
                    rows["event_zero_motion"] = rollout_metrics(zero_motion(r), width, height)
                    rows[f"event_{name}{'' if kf else '_raw'}"] = rollout_metrics(
                        r, width, height)
        if image_path is not None:
            snippets = _snippets(seqs, event=False)
            trained_image = load_image_net(image_path)
            torch.manual_seed(0)
            nets = {"untrained": ImageNet(trained_image.config).eval(), "trained": trained_image}
            for name, net in nets.items():
                r = image_rollout(net, snippets)
                rows[f"image_{name}"] = rollout_metrics(r, width, height)
            rows["image_zero_motion"] = rollout_metrics(zero_motion(r), width, height)
    return rows
