"""Synthetic sequences: ground truth checked against the rendered frames, events against frames."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from blinktrack_ros.synth import esim
from blinktrack_ros.synth.config import preset
from blinktrack_ros.synth.groundtruth import OCCLUDED, OUTSIDE, VISIBLE, read_gt_txt, write_gt_txt
from blinktrack_ros.synth.motion import invert_affine
from blinktrack_ros.synth.scene import layer_alpha_images
from blinktrack_ros.synth.sequence import generate_sequence

R = 3  # patch radius: 7x7 patches


@pytest.fixture(scope="module")
def clean_seq():
    return generate_sequence(preset("clean", duration_s=0.2), seed=7)


@pytest.fixture(scope="module")
def occlusion_seq():
    return generate_sequence(preset("occlusion", duration_s=0.3), seed=3)


def _frame_rows(seq):
    return np.searchsorted(seq.gt.times_ns, seq.frame_times_ns)


def _patch_errors(seq, k: int, offset_px: float = 0.0):
    """Mean abs difference of 7x7 patches: frame k at GT vs frame 0 warped by the true motion.

    Only points whose patch lies entirely on their own layer (no edge, no nearer layer) in both
    frames are compared, so the warp of frame 0 predicts every pixel of the patch.
    """
    gt, scene = seq.gt, seq.scene
    t0, tk = seq.frame_times_ns[0] * 1e-9, seq.frame_times_ns[k] * 1e-9
    row = _frame_rows(seq)[k]
    alphas0, alphask = layer_alpha_images(scene, t0), layer_alpha_images(scene, tk)
    H, W = seq.frames[0].shape
    errors = []
    for layer in np.unique(gt.layer):
        traj = scene.layers[layer].trajectory
        rel = traj.matrices(tk)[0] @ np.vstack([invert_affine(traj.matrices(t0)[0]), [0, 0, 1]])
        warped = cv2.warpAffine(seq.frames[0], rel, (W, H), flags=cv2.INTER_CUBIC,
                                borderMode=cv2.BORDER_REFLECT_101)
        for n in np.flatnonzero((gt.layer == layer) & (gt.vis[row] == VISIBLE)):
            x, y = np.round(gt.xy[row, n]).astype(int)
            x0, y0 = np.round(gt.xy[0, n]).astype(int)
            d = int(round(offset_px))
            if not (R + 2 + d <= x < W - R - 2 - d and R + 2 + d <= y < H - R - 2 - d):
                continue
            win, win0 = np.s_[:, y - R:y + R + 1, x - R:x + R + 1], np.s_[:, y0 - R:y0 + R + 1,
                                                                           x0 - R:x0 + R + 1]
            own = all(a[layer].min() > 0.99 and (a[layer + 1:].max(initial=0) < 0.01)
                      for a in (alphask[win], alphas0[win0]))
            if own:
                moved = seq.frames[k][y + d - R:y + d + R + 1, x + d - R:x + d + R + 1]
                errors.append(np.abs(moved - warped[win[1:]]).mean())
    return np.array(errors)


def test_visible_points_follow_the_true_transform(clean_seq):
    k = len(clean_seq.frame_times_ns) - 1
    errors = _patch_errors(clean_seq, k)
    shifted = _patch_errors(clean_seq, k, offset_px=2.0)
    assert errors.size >= 20
    # Interpolation differences only (frames are re-rendered from the textures, not warped).
    assert np.median(errors) < 0.01 and np.mean(errors < 0.03) > 0.95
    # The check has power: a 2 px error in the GT is plainly visible.
    assert np.median(shifted) > 3 * np.median(errors) + 0.01


def test_occluded_points_are_under_a_nearer_layer(occlusion_seq):
    seq = occlusion_seq
    gt, n_occ, n_vis = seq.gt, 0, 0
    for k, row in enumerate(_frame_rows(seq)):
        alphas = layer_alpha_images(seq.scene, seq.frame_times_ns[k] * 1e-9)  # OpenCV warps
        xy, vis = gt.xy[row], gt.vis[row]
        inside = vis != OUTSIDE
        maps = xy.astype(np.float32).reshape(1, -1, 2)
        sampled = np.stack([cv2.remap(a, maps, None, cv2.INTER_LINEAR)[0] for a in alphas])
        nearer = np.array([sampled[gt.layer[n] + 1:, n].max(initial=0.0)
                           for n in range(gt.ids.size)])
        occ, vis1 = inside & (vis == OCCLUDED), inside & (vis == VISIBLE)
        # Same rule (nearer alpha > 0.5) through an independent path: OpenCV's warped alpha
        # image sampled at the GT position; a margin for its interpolation round-off.
        assert np.all(nearer[occ] > 0.4) and np.all(nearer[vis1] < 0.6)
        n_occ, n_vis = n_occ + occ.sum(), n_vis + vis1.sum()
    assert n_occ > 10 and n_vis > 100  # the preset really produces occlusions


def test_outside_label_matches_position(occlusion_seq):
    gt, cfg = occlusion_seq.gt, occlusion_seq.config
    x, y = gt.xy[..., 0], gt.xy[..., 1]
    outside = (x < -0.5) | (y < -0.5) | (x > cfg.width - 0.5) | (y > cfg.height - 0.5)
    np.testing.assert_array_equal(gt.vis == OUTSIDE, outside)
    assert np.all(gt.vis[0] == VISIBLE)  # queries start visible on the first frame


def test_gt_sampled_every_ms_and_at_frames(clean_seq):
    t = clean_seq.gt.times_ns
    assert np.all(np.isin(clean_seq.frame_times_ns, t))
    assert t[0] == 0 and t[-1] == 200_000_000 and np.max(np.diff(t)) <= 1_000_000


def test_event_sum_tracks_log_intensity_of_frames(clean_seq):
    """Uniform thresholds, no refractory: summed signed events x C = log change within C."""
    seq, cfg = clean_seq, clean_seq.config.esim
    ev = seq.events
    summed = np.zeros(seq.frames[0].shape)
    np.add.at(summed, (ev.y, ev.x), np.where(ev.p == 1, cfg.contrast_pos, -cfg.contrast_neg))
    dL = (esim.log_intensity(seq.frames[-1], cfg.log_floor)
          - esim.log_intensity(seq.frames[0], cfg.log_floor))
    assert len(ev) > 1000
    assert np.all(dL - summed < cfg.contrast_pos + 1e-6)
    assert np.all(dL - summed > -cfg.contrast_neg - 1e-6)


def test_same_seed_same_sequence_and_gt_file(tmp_path):
    config = preset("train", duration_s=0.05)
    a, b = generate_sequence(config, seed=11), generate_sequence(config, seed=11)
    c = generate_sequence(config, seed=12)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.events.t, b.events.t)
    np.testing.assert_array_equal(a.events.x, b.events.x)
    assert not np.array_equal(a.frames, c.frames)
    write_gt_txt(a.gt, tmp_path / "a.gt.txt")
    rows = read_gt_txt(tmp_path / "a.gt.txt")
    S, N = a.gt.vis.shape
    assert rows.shape == (S * N, 5)
    first = rows[rows[:, 0] == 0]
    np.testing.assert_allclose(first[:, 2:4], a.gt.xy[:, 0], atol=1e-4)
    np.testing.assert_allclose(first[:, 1], a.gt.times_ns * 1e-9, atol=1e-9)


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="size"):
        generate_sequence(preset("clean", width=16, height=16), seed=0)
    with pytest.raises(KeyError, match="choose from"):
        preset("nope")


def test_requery_tops_up_visible_points(tmp_path):
    config = replace(preset("occlusion", duration_s=0.2), requery_every_s=0.05, n_queries=60)
    seq = generate_sequence(config, seed=5)
    gt = seq.gt
    q_times = np.unique(gt.query_t_ns)
    assert q_times[0] == 0 and q_times.size >= 2 and np.all(np.isin(q_times, seq.frame_times_ns))
    for t in q_times[1:]:
        row = np.searchsorted(gt.times_ns, t)
        new = gt.query_t_ns == t
        old = (gt.query_t_ns < t) & (gt.vis[row] == VISIBLE)
        assert np.all(gt.vis[row, new] == VISIBLE)
        assert old.sum() + new.sum() <= config.n_queries
        d = np.linalg.norm(gt.xy[row, new][:, None] - gt.xy[row, old][None], axis=-1)
        assert d.size == 0 or d.min() >= config.query_min_distance - 1.0
    write_gt_txt(gt, tmp_path / "q.gt.txt")
    rows = read_gt_txt(tmp_path / "q.gt.txt")
    assert rows.shape[0] == gt.alive().sum()
    first_t = np.array([rows[rows[:, 0] == i, 1].min() for i in gt.ids])
    np.testing.assert_allclose(first_t, gt.query_t_ns * 1e-9, atol=1e-9)


def test_textures_from_a_folder(tmp_path, rng):
    from blinktrack_ros.synth.textures import folder_textures

    for i in range(3):
        img = (rng.random((60 + 10 * i, 80, 3)) * 255).astype(np.uint8)
        cv2.imwrite(str(tmp_path / f"t{i}.png"), img)
    (tmp_path / "notes.txt").write_text("not an image")
    textures = folder_textures(tmp_path)
    assert len(textures) == 3 and all(t.dtype == np.float32 and t.ndim == 2 for t in textures)
    seq = generate_sequence(preset("clean", duration_s=0.02), seed=1, textures=textures)
    assert seq.frames.shape == (2, 180, 240) and len(seq.events) > 0
    (tmp_path / "t1.png").unlink()
    (tmp_path / "t2.png").unlink()
    with pytest.raises(ValueError, match="at least 2"):
        folder_textures(tmp_path)
