"""`blinktrack bench runtimes`: the ONNX graphs compute what the PyTorch networks compute, and
the figures are what they claim (times per runtime, ratios of those times)."""

from __future__ import annotations

import numpy as np
import pytest

from blinktrack_ros.bench import runtimes as rt
from blinktrack_ros.cli import UsageError, main


def _close(got, want, atol):
    assert len(got) == len(want)
    for a, b in zip(got, want):
        a = np.asarray(a)
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=atol)


@pytest.mark.parametrize("make", [rt.event_case, rt.image_case], ids=["event", "image"])
def test_onnxruntime_matches_eager_torch(make):
    """The exported graph run by ONNX Runtime (another implementation of every operator) gives
    the eager PyTorch outputs; so does the traced network the pipeline runs, at other N too
    (the track axis stays dynamic in the graph)."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    case, _ = make(7, seed=3)
    got = case.torch_run()
    got = ([got[0], got[1], got[2].h, got[2].c, got[2].mem] if make is rt.event_case
           else list(got[-1]))
    _close([g.numpy() for g in got], case.reference, atol=1e-4)
    for threads in (1, 2):
        _close(case.combine(rt._OrtRunner(case.graphs, threads)), case.reference, atol=2e-4)
    # the same graph at another track count: feed rows of a 12-track case
    other, _ = make(12, seed=4)
    runner = rt._OrtRunner(case.graphs, 1)
    _close(other.combine(runner), other.reference, atol=2e-4)
    # the reference itself is not trivial (a broken export could not match it by chance)
    assert all(np.abs(r).max() > 0 for r in case.reference[:2])


def test_bench_figures_are_ratios_of_the_timed_medians():
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    figures = rt.bench_runtimes(sizes=(3, 5), threads=(1,), rounds=2, repeats=2,
                                nets=("event",), runtimes=("torch", "onnxruntime"),
                                default_n=5, progress=False)
    for n in (3, 5):
        for name in ("torch", "onnxruntime"):
            assert figures[f"event_N{n}_t1_{name}_ms"] > 0
        assert figures[f"event_N{n}_torch_max_abs_diff"] < 1e-4
        assert figures[f"event_N{n}_onnxruntime_max_abs_diff"] < 2e-4
    assert figures["event_N5_t1_onnxruntime_speedup"] == pytest.approx(
        figures["event_N5_t1_torch_ms"] / figures["event_N5_t1_onnxruntime_ms"])


def test_int8_runtime_times_the_shipped_event_graph_only():
    """`onnxruntime-int8` runs the shipped int8 graph of the default event weights: timed and
    compared with eager PyTorch (close, not equal); no image figures for it."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    if "onnxruntime-int8" not in rt.available_runtimes():
        pytest.skip("shipped int8 event graph not found")
    figures = rt.bench_runtimes(sizes=(5,), threads=(1,), rounds=1, repeats=2,
                                nets=("event", "image"), runtimes=("torch", "onnxruntime-int8"),
                                default_n=5, progress=False)
    assert figures["event_N5_t1_onnxruntime-int8_ms"] > 0
    assert 0 < figures["event_N5_onnxruntime-int8_max_abs_diff"] < 2.0  # int8: close, not equal
    assert figures["image_N5_t1_torch_ms"] > 0
    assert not any(k.startswith("image") and "int8" in k for k in figures)


def test_missing_runtime_is_a_usage_error_naming_the_install(monkeypatch, capsys):
    monkeypatch.setattr(rt, "available_runtimes", lambda: ("torch",))
    with pytest.raises(ImportError, match="pip install"):
        rt.bench_runtimes(runtimes=("torch", "openvino"), progress=False)
    assert main(["bench", "runtimes", "--runtimes", "openvino"]) != 0
    assert "openvino" in capsys.readouterr().err
    with pytest.raises((UsageError, SystemExit)):
        rt._ints("4,x", "sizes")
