"""Benchmark plots (matplotlib, Agg backend, PNG): age against threshold, per-sequence bars.

Both take `results`: mode -> `{"sequences": {name: metrics}, "mean": metrics}` as returned by
`evaluate.summarize` / the benchmark runner.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from blinktrack_ros.eval.report import COLUMN_TITLES


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_age_vs_threshold(results: dict[str, dict], path: str | Path) -> Path:
    """Mean non-zero feature age and expected age (ratio x age) against threshold, per mode.

    Returns:
        The PNG path written.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharex=True)
    for mode, result in results.items():
        mean = result["mean"]
        thr = np.asarray(mean["thresholds_px"])
        age = np.asarray(mean["feature_age_per_threshold"])
        expected = np.asarray(mean["expected_feature_age_per_threshold"])
        axes[0].plot(thr, age, marker=".", label=f"{mode} (FA {mean['feature_age']:.3f})")
        axes[1].plot(thr, expected, marker=".",
                     label=f"{mode} (EFA {mean['expected_feature_age']:.3f})")
    for ax, title in zip(axes, ("feature age (non-zero tracks)", "expected feature age")):
        ax.set_title(title)
        ax.set_xlabel("error threshold [px]")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("relative age (mean over sequences)")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_sequence_bars(results: dict[str, dict], path: str | Path,
                       key: str = "expected_feature_age") -> Path:
    """Grouped bars of one metric per sequence (and the mean), one bar per mode.

    Returns:
        The PNG path written.
    """
    plt = _pyplot()
    modes = list(results)
    names = list(dict.fromkeys(n for r in results.values() for n in r["sequences"]))
    labels = names + ["mean"]
    width = 0.8 / max(len(modes), 1)
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(labels) + 2), 4.5))
    for i, mode in enumerate(modes):
        seqs = results[mode]["sequences"]
        values = [seqs.get(n, {}).get(key, np.nan) for n in names]
        values.append(results[mode]["mean"].get(key, np.nan))
        ax.bar(x + (i - (len(modes) - 1) / 2) * width, values, width, label=mode)
    ax.set_xticks(x)
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(COLUMN_TITLES.get(key, key))
    ax.set_title(f"{key.replace('_', ' ')} per sequence")
    if key != "te_5":
        ax.set_ylim(0, 1.0)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
