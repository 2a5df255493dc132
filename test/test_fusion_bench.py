"""`blinktrack bench fusion --json` prints one JSON object with the documented figures."""

from __future__ import annotations

import json

import numpy as np
import pytest

from blinktrack_ros import cli, kalman
from blinktrack_ros.bench.fusion import reference_pinv_update


def test_bench_fusion_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", "fusion", "--json", "--repeats", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["bench"] == "fusion"
    for n in (64, 1000, 10000):
        assert out[f"kf_numpy_N{n}_track_updates_per_s"] > 0
    assert out["engine_apply_64_tracks_ms"] > 0 and out["speedup_vs_pinv_loop_N1000_x"] > 0


def test_bench_rejects_bad_repeats(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", "fusion", "--repeats", "0"]) == 2
    assert "--repeats" in capsys.readouterr().err


def test_pinv_reference_agrees_with_the_filter_mean(rng: np.random.Generator) -> None:
    """The comparison loop computes the same posterior mean (its Q is q I, so use q = 0)."""
    n = 8
    x = rng.normal(size=(n, 4))
    A = rng.normal(size=(n, 4, 4))
    P = A @ A.swapaxes(1, 2) + np.eye(4)
    z, R, dt = rng.normal(size=(n, 2)), np.tile(np.eye(2), (n, 1, 1)), rng.uniform(0, 0.1, n)
    x_ref, P_ref = reference_pinv_update(x, P, z, R, dt, 0.0)
    x_kf, P_kf = kalman.update(*kalman.predict(x, P, dt, 0.0), z, R)
    np.testing.assert_allclose(x_ref, x_kf, atol=1e-9)
    np.testing.assert_allclose(P_ref, P_kf, atol=1e-9)
