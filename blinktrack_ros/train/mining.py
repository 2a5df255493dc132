"""Hard-example mining: replay the snippets the network tracked worst (`--mine`).

Each training batch is `snippets` snippets; with mining a fraction of them comes from a pool
of earlier snippets ranked by how badly the network tracked them when they were last used
(mean endpoint error over their visible (step, track) samples), the rest are drawn fresh.
Every snippet used in a step goes back into the pool with its new difficulty until it has
been replayed `max_replays` times (so an unlearnable snippet cannot stay forever); the pool
keeps the `size` hardest. A replayed snippet is the same data as when drawn (augmentation
included), and only snippets of the step's unroll length are replayed (the schedule changes
the length: the pool then refills). The pool is not saved in checkpoints: a resumed run
starts with an empty one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def snippet_difficulty(positions: np.ndarray, gt_xy: np.ndarray, gt_vis: np.ndarray,
                       tracks_per_snippet: list[int]) -> np.ndarray:
    """Mean endpoint error (px) of each snippet over its visible samples after the start.

    Args:
        positions: (K, N, 2) tracked positions of a rollout (row 0: the start).
        gt_xy: (K, N, 2) ground truth.
        gt_vis: (K, N) visibility (1 visible).
        tracks_per_snippet: how many of the N columns each snippet holds, in order.

    Returns:
        (len(tracks_per_snippet),) errors; 0 for a snippet without visible samples.
    """
    err = np.linalg.norm(positions[1:] - gt_xy[1:], axis=2)  # K-1 N
    vis = gt_vis[1:] == 1
    out = np.zeros(len(tracks_per_snippet))
    start = 0
    for i, n in enumerate(tracks_per_snippet):
        v = vis[:, start:start + n]
        if v.any():
            out[i] = float(err[:, start:start + n][v].mean())
        start += n
    return out


@dataclass
class HardPool:
    """The hardest snippets seen so far: [difficulty, times replayed, snippet] entries."""

    size: int = 64
    max_replays: int = 3
    entries: list = field(default_factory=list)

    def take(self, m: int, n_times: int) -> list[tuple[object, int]]:
        """Remove and return the m hardest (snippet, replays) with n_times sample times."""
        fit = [e for e in self.entries if len(e[2].times_ns) == n_times]
        fit.sort(key=lambda e: -e[0])
        chosen = fit[:max(m, 0)]
        ids = {id(e) for e in chosen}
        self.entries = [e for e in self.entries if id(e) not in ids]
        return [(e[2], e[1]) for e in chosen]

    def add(self, snippet: object, difficulty: float, replays: int) -> None:
        """Put a used snippet back (unless replayed max_replays times); keep the hardest."""
        if replays >= self.max_replays or not np.isfinite(difficulty):
            return
        self.entries.append([float(difficulty), replays, snippet])
        if len(self.entries) > self.size:
            self.entries.sort(key=lambda e: -e[0])
            del self.entries[self.size:]

    def mean_difficulty(self) -> float:
        """Mean difficulty of the pool (NaN when empty)."""
        return float(np.mean([e[0] for e in self.entries])) if self.entries else float("nan")
