"""EventNet: sizes, row-independent batching, explicit state, inference fast path, checkpoints."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from blinktrack_ros.models.checkpoint import CheckpointError, save_checkpoint
from blinktrack_ros.models.event_config import CONFIGS, EventNetConfig
from blinktrack_ros.models.event_layers import PointwiseConv2d, centre_crop, centre_vector
from blinktrack_ros.models.event_net import (
    EventNet,
    cat_states,
    load_event_net,
    prepare_for_inference,
    put_rows,
    save_event_net,
    select_rows,
    trace_for_inference,
)


def lively(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """He-initialised weights and O(1 px) displacements: outputs that depend on the input.

    (PyTorch's default init gives near-constant outputs, which would let row-mixing bugs pass.)
    """
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            torch.nn.init.kaiming_normal_(m.weight, a=0.1)
            if m.bias is not None:
                torch.nn.init.normal_(m.bias, std=0.1)
    with torch.no_grad():
        model.motion.regress.weight.mul_(20.0)
    return model


def _randomise_bn(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Non-trivial BatchNorm statistics so that folding them is actually tested."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)


@pytest.fixture(scope="module")
def lite() -> EventNet:
    torch.manual_seed(0)
    model = lively(EventNet(EventNetConfig.lite())).eval()
    _randomise_bn(model, torch.Generator().manual_seed(1))
    return model


def _inputs(cfg: EventNetConfig, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    s = cfg.patch_size
    return torch.rand(n, 1, s, s, generator=g), torch.rand(n, cfg.in_channels, s, s, generator=g)


def test_paper_parameter_count_matches_published_module() -> None:
    model = EventNet(EventNetConfig.paper())
    n = sum(p.numel() for p in model.parameters())
    assert abs(n - 34.0e6) / 34.0e6 < 0.02, n
    cfg = model.config
    assert cfg.encoder_sizes() == [62, 31, 23, 15, 5, 1]  # published comments: 62/31/23/15/5/1
    assert cfg.joint_channels == 514 and cfg.corr_size == 31
    assert cfg.motion_sizes()[1] == 7  # ConvLSTM at 7x7


def test_configs_are_valid_and_bad_ones_fail() -> None:
    for make in CONFIGS.values():
        make()
    with pytest.raises(ValueError, match="motion head"):
        dataclasses.replace(EventNetConfig.paper(), motion_final_kernel=2)
    with pytest.raises(ValueError, match="too small"):
        dataclasses.replace(EventNetConfig.paper(), patch_size=20)


def test_centre_crop_and_vector_keep_the_geometric_centre() -> None:
    # a linear ramp: the mean over any window symmetric about a point is the value there
    s = 62
    ramp = (torch.arange(s)[:, None] * 100.0 + torch.arange(s)[None, :]).expand(1, 1, s, s)
    centre = (s - 1) / 2 * 100 + (s - 1) / 2
    for size in (31, 30, 16):
        crop = centre_crop(ramp, size)
        assert crop.shape[-1] == size
        assert crop.mean().item() == pytest.approx(centre)
    assert centre_vector(ramp).item() == pytest.approx(centre)
    assert centre_vector(ramp[..., :61, :61]).item() == 30 * 100 + 30


def test_pointwise_conv_equals_conv2d() -> None:
    torch.manual_seed(3)
    conv = PointwiseConv2d(10, 8, 1)
    x = torch.randn(4, 10, 7, 5)
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight, conv.bias))


def test_forward_shapes_and_state_rows(lite: EventNet) -> None:
    ref, sbt = _inputs(lite.config, 5, 0)
    with torch.no_grad():
        state = lite.init_state(ref)
        disp, logits, new = lite(state, sbt)
    assert disp.shape == (5, 2) and logits.shape == (5, 2) and len(new) == 5
    assert torch.isfinite(disp).all() and torch.isfinite(logits).all()
    assert new.ref_mid is state.ref_mid  # reference features are computed once, at birth
    assert not torch.equal(new.mem, state.mem)  # the recurrent state advanced
    with pytest.raises(ValueError, match="patches for a state"):
        lite(state, sbt[:3])
    with pytest.raises(ValueError, match="expected"):
        lite(state, sbt[:, :4])


def test_batching_is_row_independent(lite: EventNet) -> None:
    """Tracks batched together give the same result as each track alone, over two steps."""
    ref, sbt = _inputs(lite.config, 6, 1)
    with torch.no_grad():
        state = lite.init_state(ref)
        d1, l1, s1 = lite(state, sbt)
        d2, l2, _ = lite(s1, sbt.flip(0))
        for i in (0, 3, 5):
            si = select_rows(state, [i])
            e1, _, ti = lite(si, sbt[i:i + 1])
            e2, m2, _ = lite(ti, sbt.flip(0)[i:i + 1])
            torch.testing.assert_close(e1, d1[i:i + 1], rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(e2, d2[i:i + 1], rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(m2, l2[i:i + 1], rtol=1e-4, atol=1e-5)


def test_state_row_operations(lite: EventNet) -> None:
    ref, sbt = _inputs(lite.config, 4, 2)
    with torch.no_grad():
        a, b = lite.init_state(ref[:2]), lite.init_state(ref[2:])
        both = cat_states([a, b])
        assert len(both) == 4
        torch.testing.assert_close(select_rows(both, [3, 2]).ref_vec, b.ref_vec.flip(0))
        _, _, stepped = lite(select_rows(both, [1, 3]), sbt[[1, 3]])
        merged = put_rows(both, torch.tensor([1, 3]), stepped)
        torch.testing.assert_close(merged.mem[[0, 2]], both.mem[[0, 2]])
        torch.testing.assert_close(merged.mem[[1, 3]], stepped.mem)


def test_fast_inference_copy_computes_the_same_function(lite: EventNet) -> None:
    ref, sbt = _inputs(lite.config, 7, 3)
    fast = prepare_for_inference(lite)
    cl = torch.channels_last
    with torch.inference_mode():
        d0, l0, s0 = lite(lite.init_state(ref), sbt)
        d1, l1, s1 = fast(fast.init_state(ref.contiguous(memory_format=cl)),
                          sbt.contiguous(memory_format=cl))
    torch.testing.assert_close(d1, d0, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(l1, l0, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(s1.h, s0.h, rtol=1e-3, atol=1e-4)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in lite.modules())  # original intact


def test_checkpoint_round_trip_and_mismatch(lite: EventNet, tmp_path) -> None:
    path = tmp_path / "lite.pt"
    save_event_net(path, lite)
    loaded = load_event_net(path, expected_config=EventNetConfig.lite())
    ref, sbt = _inputs(lite.config, 3, 4)
    with torch.no_grad():
        torch.testing.assert_close(loaded(loaded.init_state(ref), sbt)[0],
                                   lite(lite.init_state(ref), sbt)[0])
    other = dataclasses.replace(EventNetConfig.lite(), embed_dim=48)
    with pytest.raises(CheckpointError, match="config does not match"):
        load_event_net(path, expected_config=other)
    bad = tmp_path / "bad.pt"
    save_checkpoint(bad, "event_net", other, lite.state_dict())  # weights of another size
    with pytest.raises(CheckpointError, match="do not fit"):
        load_event_net(bad)
    save_checkpoint(bad, "image_net", lite.config, lite.state_dict())
    with pytest.raises(CheckpointError, match="expected 'event_net'"):
        load_event_net(bad)


def test_bench_command_prints_json(capsys) -> None:
    import json

    from blinktrack_ros.cli import main

    assert main(["bench", "event-net", "--config", "lite", "--sizes", "2", "--repeats", "1",
                 "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["bench"] == "event-net"
    assert figures["lite_N2_median_ms"] > 0 and figures["lite_bf16_N2_median_ms"] > 0
    assert figures["lite_GFLOP_per_track_step"] > 0
    assert main(["bench", "event-net", "--sizes", "0"]) == 2


def test_flops_per_track_scale_with_track_count(lite: EventNet) -> None:
    from torch.utils.flop_counter import FlopCounterMode

    from blinktrack_ros.bench.event_net import flops_per_track

    step, birth = flops_per_track(lite)
    ref, sbt = _inputs(lite.config, 3, 5)
    with torch.inference_mode():
        count_birth = FlopCounterMode(display=False)
        with count_birth:
            state = lite.init_state(ref)
        count_step = FlopCounterMode(display=False)
        with count_step:
            lite(state, sbt)
    assert count_step.get_total_flops() == pytest.approx(3 * step, rel=1e-6)
    assert count_birth.get_total_flops() == pytest.approx(3 * birth, rel=1e-6)
    assert step > birth > 0  # the step runs the target encoder plus both heads


def test_gradients_reach_every_parameter_through_two_steps() -> None:
    model = lively(EventNet(EventNetConfig.lite())).train()
    ref, sbt = _inputs(model.config, 3, 6)
    state = model.init_state(ref)
    d1, l1, state = model(state, sbt)
    d2, l2, _ = model(state, sbt.flip(0))
    (d1.square().sum() + d2.square().sum() + l1.sum() + l2.sum()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing, missing


def test_chunked_forward_equals_one_batch(lite: EventNet) -> None:
    from blinktrack_ros.models.event_net import auto_chunk_rows, forward_chunked

    ref, sbt = _inputs(lite.config, 5, 7)
    with torch.no_grad():
        state = lite.init_state(ref)
        d0, l0, s0 = lite(state, sbt)
        d1, l1, s1 = forward_chunked(lite, state, sbt, max_rows=2)
    torch.testing.assert_close(d1, d0, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(l1, l0, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(s1.c, s0.c, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(s1.mem, s0.mem, rtol=1e-4, atol=1e-5)
    assert auto_chunk_rows(EventNetConfig.paper()) == 2
    assert auto_chunk_rows(EventNetConfig.lite()) >= 256


def test_traced_step_computes_the_same_function_for_any_track_count(lite: EventNet) -> None:
    fast = prepare_for_inference(lite)
    traced = trace_for_inference(fast)
    assert traced is not None and traced.config == lite.config
    cl = torch.channels_last
    for n in (2, 9):  # neither the traced count nor a checked one
        ref, sbt = _inputs(lite.config, n, 10 + n)
        with torch.inference_mode():
            d0, l0, s0 = lite(lite.init_state(ref), sbt)
            state = traced.init_state(ref.contiguous(memory_format=cl))
            d1, l1, s1 = traced(state, sbt.contiguous(memory_format=cl))
        torch.testing.assert_close(d1, d0, rtol=1e-3, atol=1e-4)
        torch.testing.assert_close(l1, l0, rtol=1e-3, atol=1e-4)
        torch.testing.assert_close(s1.h, s0.h, rtol=1e-3, atol=1e-4)
        torch.testing.assert_close(s1.mem, s0.mem, rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match="patches"):
        traced(state, sbt[:1].contiguous(memory_format=cl))


def test_trace_that_differs_from_eager_is_not_used(lite: EventNet, monkeypatch) -> None:
    """The numerical check rejects a trace whose outputs differ (eager is used instead)."""
    fast = prepare_for_inference(lite)
    real_freeze = torch.jit.freeze

    def off_by_a_pixel(module, *args, **kw):
        graph = real_freeze(module, *args, **kw)
        return lambda *inputs: (graph(*inputs)[0] + 1.0, *graph(*inputs)[1:])

    monkeypatch.setattr(torch.jit, "freeze", off_by_a_pixel)
    assert trace_for_inference(fast) is None
