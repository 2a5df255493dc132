"""EventSource: patch centring, observation plumbing, add/remove rows, NaN handling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from blinktrack_ros.events.batch import EventBatch
from blinktrack_ros.models.event_config import EventNetConfig
from blinktrack_ros.models.event_net import EventNet
from blinktrack_ros.models.uncertainty import logits_to_covariance
from blinktrack_ros.tracking.event_source import EventSource, EventSourceConfig, crop_patches
from blinktrack_ros.tracking.observation import Source

S = EventNetConfig.lite().patch_size


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


@pytest.fixture(scope="module")
def model() -> EventNet:
    return lively(EventNet(EventNetConfig.lite())).eval()


class FakePatches:
    """Deterministic patches per (call, track id), recording the centres it was asked for."""

    def __init__(self, ids_of_call: list[np.ndarray], nan_ids: tuple[int, ...] = ()):
        self.ids_of_call, self.nan_ids, self.calls = ids_of_call, nan_ids, []

    def __call__(self, events, t1_ns, window_ns, centres, size, bins):
        ids = self.ids_of_call[len(self.calls)]
        self.calls.append(np.array(centres))
        out = np.stack([np.random.default_rng(int(i) + 1000 * len(self.calls))
                        .random((2 * bins, size, size), dtype=np.float32) for i in ids])
        out[np.isin(ids, self.nan_ids)] = np.nan
        return out


def _frame(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, (120, 160), dtype=np.uint8)


def test_crop_patches_at_pixel_aligned_centres_returns_the_image(rng) -> None:
    frame = _frame(rng)
    # even S: a centre at x + 0.5 puts patch columns exactly on pixels x - S/2 + 1 ... x + S/2
    centres = np.array([[40.5, 50.5], [100.5, 60.5]])
    patches = crop_patches(frame, centres, S)
    for (cx, cy), p in zip(centres, patches):
        x0, y0 = int(cx - (S - 1) / 2), int(cy - (S - 1) / 2)
        np.testing.assert_allclose(p, frame[y0:y0 + S, x0:x0 + S] / 255.0, atol=1e-6)
    edge = crop_patches(frame, np.array([[0.5, 0.5]]), S)[0]
    assert (edge[:S // 2 - 1] == 0).all() and (edge[:, :S // 2 - 1] == 0).all()


def test_observations_follow_the_network_and_centre_convention(model, rng) -> None:
    ids = np.array([7, 3, 11], np.uint32)
    frame = _frame(rng)
    birth = np.array([[50.2, 40.7], [80.5, 60.0], [30.0, 90.4]])
    query = birth + np.array([[1.3, -0.6], [0.5, 2.5], [-2.2, 0.49]])
    fake = FakePatches([ids])
    src = EventSource(model, EventSourceConfig(fast_inference=False), patch_fn=fake)
    src.add_tracks(ids, frame=frame, positions_px=birth)
    obs = src.observe(EventBatch.empty(160, 120), 5_000_000, 5_000_000, ids, query)
    centres = np.floor(query + 0.5)
    np.testing.assert_array_equal(fake.calls[0], centres)
    # independent recomputation with the model directly
    ref = torch.from_numpy(crop_patches(frame, birth, S))[:, None]
    fake2 = FakePatches([ids])
    sbt = torch.from_numpy(fake2(None, 0, 0, centres, S, 5))
    with torch.no_grad():
        disp, logits, _ = model(model.init_state(ref), sbt)
    cov, p_vis = logits_to_covariance(logits, 10.0, 0.9)
    assert obs.source == Source.EVENT and obs.t_ns == 5_000_000
    np.testing.assert_array_equal(obs.ids, ids)
    np.testing.assert_allclose(obs.positions_px, centres - 0.5 + disp.numpy(), atol=1e-5)
    np.testing.assert_allclose(obs.covariances, cov.numpy(), rtol=1e-5)
    np.testing.assert_allclose(obs.visibility, p_vis.numpy(), rtol=1e-5)


def test_removed_and_unobserved_tracks_keep_rows_independent(model, rng) -> None:
    """A source that lost tracks / skipped some observes the rest like one that never had them."""
    frame = _frame(rng)
    birth = rng.uniform(30, 90, (4, 2))
    ids = np.array([1, 2, 3, 4], np.uint32)
    calls = [ids, ids[[1, 3]], ids[[3, 1]]]
    full = EventSource(model, patch_fn=FakePatches(calls))
    full.add_tracks(ids, frame=frame, positions_px=birth)
    ev = EventBatch.empty(160, 120)
    full.observe(ev, 1, 1, ids, birth)
    assert full.remove_tracks(np.array([1, 9])) == 1 and full.stats["unknown_ids"] == 1
    full.observe(ev, 2, 1, ids[[1, 3]], birth[[1, 3]])  # track 3 not observed: row unchanged
    last = full.observe(ev, 3, 1, ids[[3, 1]], birth[[3, 1]])
    np.testing.assert_array_equal(full.track_ids, [2, 3, 4])

    calls_small = [ids[[1, 3]], ids[[1, 3]], ids[[3, 1]]]
    small = EventSource(model, patch_fn=FakePatches(calls_small))
    small.add_tracks(ids[[1, 3]], frame=frame, positions_px=birth[[1, 3]])
    small.observe(ev, 1, 1, ids[[1, 3]], birth[[1, 3]])
    small.observe(ev, 2, 1, ids[[1, 3]], birth[[1, 3]])
    ref = small.observe(ev, 3, 1, ids[[3, 1]], birth[[3, 1]])
    np.testing.assert_allclose(last.positions_px, ref.positions_px, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="already present"):
        full.add_tracks(np.array([2]), np.zeros((1, S, S)))


def test_nan_output_is_dropped_counted_and_not_stored(model, rng) -> None:
    frame = _frame(rng)
    ids = np.array([5, 6], np.uint32)
    birth = np.array([[60.0, 60.0], [90.0, 50.0]])
    ev = EventBatch.empty(160, 120)
    fake = FakePatches([ids, ids, ids])
    src = EventSource(model, patch_fn=fake)
    src.add_tracks(ids, frame=frame, positions_px=birth)
    src.observe(ev, 1, 1, ids, birth)
    fake.nan_ids = (6,)
    obs = src.observe(ev, 2, 1, ids, birth)
    assert obs.ids.tolist() == [5] and src.stats["nan_dropped"] == 1
    assert src.nonfinite_ids.tolist() == [6]  # for the pipeline, which ends the track
    assert np.isfinite(obs.positions_px).all()
    fake.nan_ids = ()
    after = src.observe(ev, 3, 1, ids, birth)
    # track 6's state must be as if the NaN step had not happened
    clean = EventSource(model, patch_fn=FakePatches([ids, ids[:1], ids]))
    clean.add_tracks(ids, frame=frame, positions_px=birth)
    clean.observe(ev, 1, 1, ids, birth)
    clean.observe(ev, 2, 1, ids[:1], birth[:1])
    expected = clean.observe(ev, 3, 1, ids, birth)
    np.testing.assert_allclose(after.positions_px, expected.positions_px, rtol=1e-5, atol=1e-5)
    unknown = src.observe(ev, 3, 1, np.array([99], np.uint32), np.array([[1.0, 1.0]]))
    assert len(unknown) == 0 and src.stats["unknown_ids"] == 1
    bad = src.observe(ev, 3, 1, np.array([5], np.uint32), np.array([[np.nan, 1.0]]))
    assert len(bad) == 0 and src.stats["bad_positions"] == 1


def test_with_real_sbt_patches(model, rng) -> None:
    pytest.importorskip("blinktrack_ros.events.sbt")
    n = 5000
    t = np.sort(rng.integers(0, 10_000_000, n)).astype(np.int64)
    events = EventBatch(rng.integers(0, 160, n).astype(np.uint16),
                        rng.integers(0, 120, n).astype(np.uint16), t,
                        rng.integers(0, 2, n).astype(np.uint8), 160, 120)
    ids = np.arange(8, dtype=np.uint32)
    pos = rng.uniform(0, 160, (8, 2)) * [1, 0.75]
    src = EventSource(model)
    src.add_tracks(ids, frame=_frame(rng), positions_px=pos)
    for k in range(1, 3):
        obs = src.observe(events, k * 5_000_000, 5_000_000, ids, pos)
        assert len(obs) == 8 and np.isfinite(obs.positions_px).all()
        assert np.all(np.abs(obs.positions_px - pos) < S)  # within the patch
        assert np.all((obs.visibility >= 0) & (obs.visibility <= 1))
        assert np.all(obs.covariances[:, 0, 0] > 0)


def test_bf16_autocast_close_to_float32(model, rng) -> None:
    frame = _frame(rng)
    ids = np.array([1, 2, 3], np.uint32)
    birth = rng.uniform(30, 90, (3, 2))
    out = []
    for bf16 in (False, True):
        src = EventSource(model, EventSourceConfig(bf16=bf16),
                          patch_fn=FakePatches([ids[:2], ids]))
        src.add_tracks(ids, frame=frame, positions_px=birth)
        # a partial step first: bf16 rows are written into the float32 birth state
        src.observe(EventBatch.empty(160, 120), 1, 1, ids[:2], birth[:2])
        out.append(src.observe(EventBatch.empty(160, 120), 2, 1, ids, birth))
    assert out[1].positions_px.dtype == np.float64
    disp = out[0].positions_px - birth
    assert np.ptp(disp, axis=0).max() > 0.5  # tracks differ: the comparison below means much
    # bfloat16 convs: about 1 % of the displacement (here up to ~20 px)
    np.testing.assert_allclose(out[1].positions_px, out[0].positions_px, atol=0.25)
    np.testing.assert_allclose(out[1].visibility, out[0].visibility, atol=0.05)
    with pytest.raises(ValueError, match="more than once"):
        src.observe(EventBatch.empty(160, 120), 4, 1, ids[[0, 0]], birth[:2])


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised inside torch.compile
def test_compiled_step_gives_the_same_observations(model, rng) -> None:
    frame = _frame(rng)
    ids = np.array([1, 2, 3], np.uint32)
    birth = rng.uniform(30, 90, (3, 2))
    out = []
    for compile_ in (False, True):
        src = EventSource(model, EventSourceConfig(compile=compile_),
                          patch_fn=FakePatches([ids] * 2))
        src.add_tracks(ids, frame=frame, positions_px=birth)
        src.observe(EventBatch.empty(160, 120), 1, 1, ids, birth)
        out.append(src.observe(EventBatch.empty(160, 120), 2, 1, ids, birth))
    np.testing.assert_allclose(out[1].positions_px, out[0].positions_px, atol=1e-4)
    np.testing.assert_allclose(out[1].visibility, out[0].visibility, atol=1e-5)


@pytest.mark.data
def test_closed_loop_on_real_slider_depth_events(model, shared_data) -> None:
    """16 Shi-Tomasi features of the first DAVIS frame, 10 ms event steps fed back 16 times."""
    pytest.importorskip("blinktrack_ros.events.sbt")
    import cv2

    root = shared_data / "ec_slider_depth"
    rows = np.loadtxt(root / "events_chunk.txt")
    assert rows.shape == (50_000, 4)  # the documented chunk
    events = EventBatch(rows[:, 1].astype(np.uint16), rows[:, 2].astype(np.uint16),
                        np.round(rows[:, 0] * 1e9).astype(np.int64),
                        rows[:, 3].astype(np.uint8), 240, 180)
    frame = cv2.imread(str(root / "images" / "frame_00000000.png"), cv2.IMREAD_GRAYSCALE)
    corners = cv2.goodFeaturesToTrack(frame, 16, 0.01, 10).reshape(-1, 2).astype(np.float64)
    ids = np.arange(len(corners), dtype=np.uint32)
    src = EventSource(model)
    src.add_tracks(ids, frame=frame, positions_px=corners)
    pos = corners
    window = 10_000_000
    for k in range(1, 17):
        obs = src.observe(events, 4_000_000 + k * window, window, ids, pos)
        assert obs.ids.tolist() == ids.tolist() and np.isfinite(obs.positions_px).all()
        step = np.abs(obs.positions_px - pos).max()
        assert step < EventNetConfig.lite().patch_size  # an observation stays in its patch
        pos = obs.positions_px
    assert src.stats == {"nan_dropped": 0, "unknown_ids": 0, "bad_positions": 0}
