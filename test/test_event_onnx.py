"""The event step under ONNX Runtime (`event_source.runtime: onnxruntime`, models.event_onnx):
against the eager PyTorch network (the reference), the weights-digest guard, the int8 graph
(only the convolutions quantised) and the shipped int8 graph on the full tracker."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from blinktrack_ros.events.batch import EventBatch
from blinktrack_ros.models.event_config import EventNetConfig
from blinktrack_ros.models.event_net import EventNet, _example_inputs
from blinktrack_ros.tracking.event_source import EventSource, EventSourceConfig

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from blinktrack_ros.models import event_onnx  # noqa: E402  (needs onnx)


def lively(model: EventNet, seed: int = 0) -> EventNet:
    """He-initialised weights and BatchNorm statistics away from identity: outputs that depend
    on the input and on every folded layer (default init gives near-constant outputs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                m.weight.normal_(0, 1.0 / np.sqrt(m.weight[0].numel()), generator=g)
                if m.bias is not None:
                    m.bias.normal_(0, 0.1, generator=g)
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.2, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
                m.weight.uniform_(0.5, 1.5, generator=g)
        for name, m in model.named_modules():
            if name.endswith("regress"):  # displacements of a few px
                m.weight.mul_(20.0)
    return model.eval()


@pytest.fixture(scope="module", params=["lite", "lite3"])
def model(request) -> EventNet:
    return lively(EventNet(getattr(EventNetConfig, request.param)()))


def test_float_graph_equals_the_eager_network(model) -> None:
    net = event_onnx.OnnxEventNet(model)
    assert not net.quantized and net.max_check_error < 1e-3
    for n in (1, 7, 33):
        with torch.no_grad():
            state, sbt = _example_inputs(model, n, 100 + n)
            want = model(state, sbt)
            got = net(state, sbt)
        assert float(want[0].abs().max()) > 0.5  # outputs that mean something
        np.testing.assert_allclose(got[0].numpy(), want[0].numpy(), atol=1e-4)
        np.testing.assert_allclose(got[1].numpy(), want[1].numpy(), atol=1e-4)
        for name in ("h", "c", "mem"):
            np.testing.assert_allclose(getattr(got[2], name).numpy(),
                                       getattr(want[2], name).numpy(), atol=1e-4)
        assert got[2].ref_vec is state.ref_vec  # the reference rows are carried, not copied


def test_every_convolution_is_a_conv_node(model) -> None:
    """The 1x1 convolutions that eager torch runs as matrix products (PointwiseConv2d, the
    ConvLSTM gates) are exported as Conv nodes: ONNX Runtime runs them (and the int8 graph
    quantises them) faster, and the eager network is unchanged."""
    import onnx

    nodes = onnx.load_from_string(event_onnx.export_step(model)).graph.node
    assert not any(n.op_type == "Transpose" for n in nodes)  # the matrix products' permutes
    if model.config.arch == "compact":  # its step: every conv but the reference encoder's
        convs = [name for name, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)
                 and not name.startswith("ref_encoder")]
        assert sum(n.op_type == "Conv" for n in nodes) == len(convs) == 6


def test_event_source_gives_the_same_observations(model, rng) -> None:
    """EventSource with runtime onnxruntime against the torch trace: partial rows, a NaN patch
    (dropped and counted the same way), the state kept where the output is not finite."""
    ids = np.array([3, 5, 9], np.uint32)
    frame = rng.integers(0, 256, (120, 160), dtype=np.uint8)
    birth = rng.uniform(30, 90, (3, 2))
    calls = [ids[:2], ids, ids]

    def patches(events, t1_ns, window_ns, centres, size, bins):
        k = patches.k
        patches.k += 1
        out = np.stack([np.random.default_rng(int(i) + 100 * k).random((2 * bins, size, size),
                                                                         dtype=np.float32)
                        for i in calls[k]])
        if k == 1:
            out[1] = np.nan  # id 5 in the second call
        return out

    out = []
    for runtime in ("torch", "onnxruntime"):
        patches.k = 0
        src = EventSource(model, EventSourceConfig(runtime=runtime), patch_fn=patches)
        src.add_tracks(ids, frame=frame, positions_px=birth)
        obs = [src.observe(EventBatch.empty(160, 120), t, 1, calls[t - 1],
                           birth[:len(calls[t - 1])]) for t in (1, 2, 3)]
        out.append((obs, dict(src.stats)))
    (torch_obs, torch_stats), (ort_obs, ort_stats) = out
    assert ort_stats == torch_stats and torch_stats["nan_dropped"] == 1
    for a, b in zip(torch_obs, ort_obs):
        np.testing.assert_array_equal(a.ids, b.ids)
        np.testing.assert_allclose(b.positions_px, a.positions_px, atol=1e-4)
        np.testing.assert_allclose(b.visibility, a.visibility, atol=1e-5)
        np.testing.assert_allclose(b.covariances, a.covariances, rtol=1e-4, atol=1e-6)


def test_a_graph_from_other_weights_is_refused(model) -> None:
    graph = event_onnx.export_step(model)
    other = lively(EventNet(model.config), seed=7)
    with pytest.raises(ValueError, match="other weights"):
        event_onnx.OnnxEventNet(other, graph)
    import onnx

    bare = onnx.load_from_string(graph)
    del bare.metadata_props[:]
    with pytest.raises(ValueError, match="no weights digest"):
        event_onnx.OnnxEventNet(model, bare.SerializeToString())


def test_int8_graph_quantises_the_convolutions_only(model) -> None:
    import onnx

    feeds = [event_onnx.state_feed(*_example_inputs(model, 16, i)) for i in range(3)]
    graph = event_onnx.quantize_step(event_onnx.export_step(model), feeds)
    assert event_onnx.graph_digest(graph) == event_onnx.weights_digest(model)
    nodes = onnx.load_from_string(graph).graph.node
    made_by = {o: n.op_type for n in nodes for o in n.output}
    convs = [n for n in nodes if n.op_type == "Conv"]
    assert convs and all(made_by.get(n.input[0]) == "DequantizeLinear"
                         and made_by.get(n.input[1]) == "DequantizeLinear" for n in convs)
    dense = [n for n in nodes if n.op_type in ("Gemm", "MatMul")]
    assert dense and not any(made_by.get(i) == "DequantizeLinear" for n in dense
                             for i in n.input)
    net = event_onnx.OnnxEventNet(model, graph)
    assert net.quantized and np.isfinite(net.max_check_error)


def test_config_errors() -> None:
    with pytest.raises(ValueError, match="one of"):
        EventSourceConfig(runtime="tensorrt")
    with pytest.raises(ValueError, match="CPU only"):
        EventSourceConfig(runtime="onnxruntime", device="cuda")
    with pytest.raises(ValueError, match="set it to onnxruntime"):
        EventSourceConfig(onnx_model="x.onnx")
    with pytest.raises(ValueError, match="apply to the torch runtime"):
        EventSourceConfig(runtime="onnxruntime", bf16=True)
    from blinktrack_ros.tracking.build import make_event_source

    with pytest.raises(FileNotFoundError, match="no_such.onnx"):
        make_event_source(untrained=True, runtime="onnxruntime", onnx_model="no_such.onnx")


def test_the_parameter_is_exposed_with_its_choices() -> None:
    from blinktrack_ros.nodes.config import default_sections
    from blinktrack_ros.nodes.params import param_specs

    specs = {s.name: s for s in param_specs(default_sections())}
    assert specs["event_source.runtime"].choices == ("torch", "onnxruntime")
    assert specs["event_source.onnx_model"].default == ""


@pytest.mark.slow
def test_shipped_int8_graph_tracks_like_the_float_network(tmp_path) -> None:
    """The shipped `event_lite3_int8.onnx` loads beside the shipped weights (digest) and, on the
    full tracker (mode e-klt, a realistic synthetic sequence with ground truth), gives tracks
    close to the float network's and about the same feature age (validation sets: README)."""
    from types import SimpleNamespace

    from blinktrack_ros.eval.benchmark import gt_seeds
    from blinktrack_ros.eval.evaluate import sequence_metrics
    from blinktrack_ros.eval.tracker import pipeline_tracker
    from blinktrack_ros.resources import find_share_file
    from blinktrack_ros.synth.config import preset
    from blinktrack_ros.synth.groundtruth import read_gt_txt, write_gt_txt
    from blinktrack_ros.synth.sequence import generate_sequence

    try:
        find_share_file("weights/event_lite3_int8.onnx")
    except FileNotFoundError:
        pytest.skip("shipped int8 graph not found")
    s = generate_sequence(preset("davis", duration_s=0.4), seed=1017)  # a training seed
    write_gt_txt(s.gt, tmp_path / "davis_1017.gt.txt")
    seq = SimpleNamespace(name="davis_1017", frames=list(s.frames),
                          frame_times_ns=s.frame_times_ns, events=s.events,
                          gt=read_gt_txt(tmp_path / "davis_1017.gt.txt"))
    seeds = gt_seeds(seq.gt)
    rows, age = {}, {}
    for runtime, onnx_model in (("torch", ""), ("onnxruntime", "event_lite3_int8.onnx")):
        options = {"runtime": runtime, **({"onnx_model": onnx_model} if onnx_model else {})}
        rows[runtime] = pipeline_tracker(event_source=options)(seq, "e-klt", seeds, 10_000_000)
        age[runtime] = sequence_metrics(seq.name, rows[runtime], seq.gt,
                                        image_size=(240, 180))["feature_age"]
    a, b = rows["torch"], rows["onnxruntime"]
    assert a.shape == b.shape and len(a) > 100
    np.testing.assert_array_equal(a[:, :2], b[:, :2])  # the same ids and times
    gap = np.linalg.norm(a[:, 2:4] - b[:, 2:4], axis=1)
    # most rows within a fraction of a pixel (measured: median 0.07, p75 0.22 px); lost tracks
    # drift apart (the tail)
    assert np.median(gap) < 0.2 and np.percentile(gap, 75) < 0.5
    # one 0.4 s sequence (measured +0.011); over the validation sets the means moved <= 0.003
    assert abs(age["onnxruntime"] - age["torch"]) < 0.03, age


def test_step_runtime_names_what_runs_and_the_node_sections_build_it() -> None:
    """`EventSource.step_runtime` (the nodes' diagnostics "network event step") and the node
    path: parameter sections with event_source.runtime onnxruntime build an ONNX step."""
    from dataclasses import replace

    from blinktrack_ros.nodes.config import default_sections
    from blinktrack_ros.tracking.build import sources_from_configs
    from blinktrack_ros.tracking.pipeline import Mode

    model = lively(EventNet(EventNetConfig.lite3()))
    assert EventSource(model).step_runtime == "torch trace"
    assert EventSource(model, EventSourceConfig(fast_inference=False)).step_runtime == \
        "torch eager"
    assert EventSource(model, EventSourceConfig(runtime="onnxruntime")).step_runtime == \
        "onnxruntime float"
    configs = default_sections()
    configs["pipeline"] = replace(configs["pipeline"], mode=Mode("e"))
    configs["event_source"] = replace(configs["event_source"], runtime="onnxruntime",
                                      onnx_model="event_lite3_int8.onnx")
    try:
        event, image, klt = sources_from_configs(configs)
    except FileNotFoundError:
        pytest.skip("shipped weights not found")
    assert event.step_runtime == "onnxruntime int8" and image is None and klt is None
