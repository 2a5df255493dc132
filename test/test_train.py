"""Training pipeline: losses, masks, patch convention, one step learns, exact resume."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from blinktrack_ros.events.batch import EventBatch
from blinktrack_ros.events.sbt import sbt_max_patches
from blinktrack_ros.models.event_config import EventNetConfig
from blinktrack_ros.models.event_net import EventNet
from blinktrack_ros.models.image_config import LITE
from blinktrack_ros.models.image_net import ImageNet
from blinktrack_ros.train.data import Augment, DataSpec, load_or_generate, sample_snippets
from blinktrack_ros.train.event_rollout import (
    WINDOW_NS,
    displacement_loss,
    event_rollout,
    geometric_centre,
    visibility_loss,
)
from blinktrack_ros.train.image_rollout import image_rollout, iteration_loss
from blinktrack_ros.train.trainer import TrainConfig, Trainer

SPEC = DataSpec("clean", width=96, height=72, duration_s=0.2, seeds=(3, 4))


@pytest.fixture(scope="module")
def seqs(tmp_path_factory):
    return load_or_generate(SPEC, tmp_path_factory.mktemp("cache"), progress=False)


def test_displacement_loss_masks_outside_patch_and_invisible():
    disp = torch.tensor([[1.0, 2.0], [0.0, 0.0], [3.0, 0.0], [0.0, 0.0]])
    target = torch.tensor([[0.0, 0.0], [10.5, 0.0], [0.0, 0.0], [0.0, -9.0]])
    visible = torch.tensor([True, True, False, True])
    loss, keep = displacement_loss(disp, target, visible, half_patch=10.0)
    assert keep.tolist() == [True, False, False, True]  # |t|_inf 10.5 > 10; row 2 occluded
    assert loss.item() == pytest.approx((3.0 + 9.0) / 2)  # L1 summed over x, y, mean of kept
    none, _ = displacement_loss(disp, target, torch.zeros(4, dtype=torch.bool), 10.0)
    assert none.item() == 0.0


def test_visibility_and_iteration_losses_follow_their_masks():
    logits = torch.tensor([[0.0, 2.0], [1.0, -1.0], [5.0, 0.0]])
    label = torch.tensor([True, False, True])
    counted = torch.tensor([True, True, False])
    ce = torch.nn.functional.cross_entropy(logits[:2], label[:2].long())
    assert visibility_loss(logits, label, counted).item() == pytest.approx(ce.item())
    gt = torch.zeros(2, 2)
    its = [(torch.tensor([[1.0, 0.0], [50.0, 0.0]]), None),
           (torch.tensor([[0.0, 2.0], [50.0, 0.0]]), None)]
    keep = torch.tensor([True, False])
    assert iteration_loss(its, gt, keep, gamma=0.5).item() == pytest.approx(0.5 * 1 + 2)


def test_patch_convention_matches_sbt_layout():
    """An event at pixel (x0, y0) sits at geometric centre + its patch offset."""
    size, x0, y0 = 20, 37, 21
    events = EventBatch(np.array([x0], np.uint16), np.array([y0], np.uint16),
                        np.array([5], np.int64), np.array([1], np.uint8), 64, 48)
    pos = np.array([[33.3, 25.6]])
    ci = np.floor(pos + 0.5)
    patch = sbt_max_patches(events, 10, 10, ci, size=size, bins=5)[0].max(0)
    row, col = np.argwhere(patch > 0)[0]
    gc = geometric_centre(ci, size)[0]
    assert gc[0] + col - (size - 1) / 2 == x0 and gc[1] + row - (size - 1) / 2 == y0


def test_snippets_respect_ground_truth_and_augmentation(seqs, rng):
    s = sample_snippets(seqs, rng, 1, n_tracks=8, n_steps=4, step_ns=WINDOW_NS,
                        aug=Augment.none(), with_events=True)[0]
    assert np.all(s.vis[0] == 1) and np.allclose(s.start_xy, s.xy[0])
    assert s.events.t.min() > s.times_ns[0] and s.events.t.max() <= s.times_ns[-1]
    aug = sample_snippets(seqs, rng, 1, n_tracks=8, n_steps=4, step_ns=WINDOW_NS,
                          aug=Augment(), with_events=True)[0]
    assert np.abs(aug.start_xy - aug.xy[0]).max() <= 3.0
    assert aug.events.width == SPEC.width and np.all(aug.events.x < SPEC.width)


def test_event_step_reduces_loss_on_fixed_batch(seqs):
    torch.manual_seed(0)
    snippets = sample_snippets(seqs, np.random.default_rng(1), 2, n_tracks=8, n_steps=3,
                               step_ns=WINDOW_NS, aug=Augment.none(), with_events=True)
    net = EventNet(EventNetConfig.lite()).train()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        loss = event_rollout(net, snippets, kalman_in_loop=False).loss_disp
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


def test_image_step_reduces_loss_on_fixed_batch(seqs):
    torch.manual_seed(0)
    period = int(seqs[0].frame_times_ns[1] - seqs[0].frame_times_ns[0])
    snippets = sample_snippets(seqs, np.random.default_rng(2), 1, n_tracks=8, n_steps=2,
                               step_ns=period, aug=Augment.none(), with_events=False,
                               n_frames=3)
    net = ImageNet(LITE).train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    losses = []
    for _ in range(10):
        r = image_rollout(net, snippets)
        loss = r.loss_disp + r.loss_vis
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


def test_resume_restores_the_exact_state(tmp_path):
    cfg = TrainConfig(module="event", steps=4, snippets=1, tracks=4, unroll=((0.0, 2),),
                      val_every=0, ckpt_every=0, fresh_every=2)
    spec = replace(SPEC, seeds=(5,))
    straight = Trainer(cfg, spec, tmp_path / "a", tmp_path / "cache", progress=False)
    for _ in range(2):
        straight.train_step()
    straight.save()
    straight._refresh()  # the sequence swap of run() at step 2
    for _ in range(2):
        straight.train_step()
    resumed = Trainer(cfg, spec, tmp_path / "b", tmp_path / "cache", progress=False)
    resumed.resume(tmp_path / "a" / "last.pt")
    assert resumed.step == 2
    resumed._refresh()
    for _ in range(2):
        resumed.train_step()
    for (name, a), b in zip(straight.net.state_dict().items(),
                            resumed.net.state_dict().values()):
        assert torch.equal(a, b), name
    assert resumed.opt.state_dict()["state"][0]["step"] == 4


def test_unroll_schedule_follows_the_wall_time_of_a_minutes_run():
    """A --minutes run bounds --steps loosely (e.g. 1e6): its unroll schedule must advance
    with the fraction of the run done, not with step / steps (which stayed at the first
    length for whole runs before)."""
    cfg = TrainConfig(module="image", steps=1_000_000, minutes=10.0,
                      unroll=((0.0, 4), (0.3, 8), (0.6, 12)))
    assert cfg.unroll_at(5000) == 4  # by steps: 0.5 % done
    assert [cfg.unroll_at(5000, done) for done in (0.0, 0.29, 0.3, 0.59, 0.6, 1.0)] == [
        4, 4, 8, 8, 12, 12]
    assert TrainConfig(module="image", steps=100, unroll=((0.0, 4), (0.5, 8))).unroll_at(50) == 8


def test_initial_filter_velocity_from_ground_truth_with_noise():
    """--init-velocity: the filter starts at the true velocity of the first window (within its
    noise of 20 % of the speed + 5 px/s), else at rest."""
    from blinktrack_ros.train.event_rollout import initial_filter_state

    torch.manual_seed(0)
    n = 4000
    v = np.random.default_rng(2).uniform(-300, 300, (n, 2))  # px/s
    pos = np.random.default_rng(3).uniform(0, 100, (n, 2))
    times = np.stack([np.zeros(n), np.full(n, 10_000_000)]).astype(np.int64)
    gt = np.stack([pos, pos + v * 0.01])
    still = initial_filter_state(pos, gt, times, False)
    assert torch.equal(still[:, 2:], torch.zeros(n, 2))
    np.testing.assert_array_equal(still[:, :2].numpy(), pos)
    x = initial_filter_state(pos, gt, times, True).numpy()
    z = (x[:, 2:] - v) / (0.2 * np.abs(v) + 5.0)  # standard normal if the noise is as stated
    assert abs(z.mean()) < 0.05 and 0.95 < z.std() < 1.05


def test_frame_updates_correct_the_filter_at_the_frame_times(seqs):
    """--frame-updates: steps whose window holds a frame of the snippet are found, and there the
    in-loop filter takes the noisy ground truth (an untrained network's tracks drift; with
    the frame observations they stay within about the frame noise at those steps)."""
    from blinktrack_ros.train.event_rollout import FRAME_SIGMA_PX, frame_steps

    snippets = sample_snippets(seqs, np.random.default_rng(4), 2, n_tracks=8, n_steps=10,
                               step_ns=WINDOW_NS, aug=Augment.none(), with_events=True)
    mask = frame_steps(snippets)
    row = 0
    for s in snippets:  # brute force: a frame time in (t_{k-1}, t_k]
        for k in range(1, len(s.times_ns)):
            hit = any(s.times_ns[k - 1] < f <= s.times_ns[k] for f in s.span_frame_times_ns)
            assert (mask[k, row:row + s.xy.shape[1]] == hit).all()
        assert not mask[0, row:row + s.xy.shape[1]].any()
        row += s.xy.shape[1]
    assert mask.any()
    net = EventNet(EventNetConfig.lite()).eval()
    errs = {}
    for frames in (False, True):
        torch.manual_seed(0)
        with torch.no_grad():
            r = event_rollout(net, snippets, kalman_in_loop=True, frame_updates=frames)
        err = np.linalg.norm(r.positions - r.gt_xy, axis=2)
        errs[frames] = err[mask & (r.gt_vis == 1)]
    assert np.median(errs[True]) < 3 * FRAME_SIGMA_PX
    assert np.median(errs[True]) < 0.5 * np.median(errs[False])


def test_hard_pool_ranks_caps_replays_and_matches_lengths():
    from types import SimpleNamespace

    from blinktrack_ros.train.mining import HardPool

    def snip(k):
        return SimpleNamespace(times_ns=np.zeros(k))

    pool = HardPool(size=3, max_replays=2)
    a, b, c, d, e = snip(5), snip(5), snip(5), snip(9), snip(5)
    for s, diff in ((a, 1.0), (b, 7.0), (c, 3.0), (d, 9.0), (e, 0.5)):
        pool.add(s, diff, 0)
    assert len(pool.entries) == 3  # the hardest three kept: d 9, b 7, c 3
    got = pool.take(2, 5)  # length 5 only: b then c (d has 9 sample times)
    assert [s for s, _ in got] == [b, c] and [r for _, r in got] == [0, 0]
    assert [e[2] for e in pool.entries] == [d]
    pool.add(b, 8.0, 1)  # replayed once: back
    pool.add(c, 8.0, 2)  # replayed max_replays times: dropped
    assert [e[2] for e in pool.entries] == [d, b]
    pool.add(a, float("nan"), 0)  # no visible sample: not kept
    assert len(pool.entries) == 2 and pool.mean_difficulty() == 8.5


def test_snippet_difficulty_is_the_mean_visible_error_per_snippet():
    from blinktrack_ros.train.mining import snippet_difficulty

    rng = np.random.default_rng(0)
    gt = rng.uniform(0, 50, (4, 5, 2))
    pos = gt + rng.normal(0, 2, gt.shape)
    vis = rng.integers(-1, 2, (4, 5))
    got = snippet_difficulty(pos, gt, vis, [2, 3])
    for i, cols in enumerate((slice(0, 2), slice(2, 5))):
        errs = [np.hypot(*(pos[k, j] - gt[k, j])) for k in range(1, 4)
                for j in range(5)[cols] if vis[k, j] == 1]
        assert got[i] == pytest.approx(np.mean(errs) if errs else 0.0)


def test_mining_replays_hard_snippets_in_training(tmp_path):
    """--mine 0.5: after the first step half of each batch comes from the pool; the logged
    rows say how many and how hard; the run trains as usual."""
    cfg = TrainConfig(module="event", steps=4, snippets=2, tracks=4, unroll=((0.0, 2),),
                      val_every=0, ckpt_every=0, fresh_every=0, mine=0.5, mine_pool=4)
    tr = Trainer(cfg, replace(SPEC, seeds=(5,)), tmp_path / "r", tmp_path / "cache",
                 progress=False)
    rows = [tr.train_step() for _ in range(4)]
    assert [r["mined"] for r in rows] == [0, 1, 1, 1]
    assert all(np.isfinite(r["loss"]) and r["pool_difficulty_px"] > 0 for r in rows)
    assert len(tr.pool.entries) <= 4
