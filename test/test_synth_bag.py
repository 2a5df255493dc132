"""`blinktrack synth` bags: read back with the bag reader and the event decoders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from blinktrack_ros.bag.reader import iter_messages
from blinktrack_ros.cli import main
from blinktrack_ros.events.decode import decode_dvs_cdr, decode_packet
from blinktrack_ros.synth.bagout import SYNTH_EPOCH_NS, write_sequence_bag
from blinktrack_ros.synth.config import preset
from blinktrack_ros.synth.groundtruth import read_gt_txt
from blinktrack_ros.synth.sequence import generate_sequence


@pytest.fixture(scope="module")
def seq():
    return generate_sequence(preset("occlusion", duration_s=0.06), seed=2)


def _events(bag: Path, topic: str, raw: bool):
    batches, state = [], None
    for m in iter_messages(bag, topics=[topic], raw=raw):
        if raw:
            batches.append(decode_dvs_cdr(m.rawdata))
        else:
            b, state = decode_packet(m.msg, state)
            batches.append(b)
        assert m.t_ns == batches[-1].t[-1]  # log time = last event of the packet
    return batches


@pytest.mark.parametrize("event_msg", ["dvs", "mono", "evt3"])
def test_bag_round_trip(tmp_path, seq, event_msg):
    bag = tmp_path / "s"
    counts = write_sequence_bag(seq, bag, event_msg)
    topic = "/dvs/events" if event_msg == "dvs" else "/event_camera/events"
    batches = _events(bag, topic, raw=event_msg == "dvs")
    assert counts[topic] == len(batches) and all(len(b) for b in batches)
    x, t = np.concatenate([b.x for b in batches]), np.concatenate([b.t for b in batches])
    np.testing.assert_array_equal(x, seq.events.x)
    t = t - SYNTH_EPOCH_NS  # the bag's stamps start at the synth epoch
    if event_msg == "evt3":  # microseconds relative to the first event
        assert np.abs(t - seq.events.t).max() < 1000
    else:
        np.testing.assert_array_equal(t, seq.events.t)
    frames = [m for m in iter_messages(bag, topics=["/camera/image_raw"])]
    assert len(frames) == len(seq.frames)
    img = np.frombuffer(frames[-1].msg.data, np.uint8).reshape(seq.frames[-1].shape)
    assert np.abs(img / 255.0 - seq.frames[-1]).max() <= 0.5 / 255 + 1e-6
    info = next(iter_messages(bag, topics=["/camera/camera_info"])).msg
    np.testing.assert_allclose(np.asarray(info.k).reshape(3, 3), seq.K)
    tracks = list(iter_messages(bag, topics=["/ground_truth/tracks"]))
    assert len(tracks) == seq.gt.times_ns.size
    last = tracks[-1].msg
    np.testing.assert_allclose(np.asarray(last.positions).reshape(-1, 2), seq.gt.xy[-1],
                               atol=1e-3)
    status = np.asarray(last.status)
    np.testing.assert_array_equal(status == 1, seq.gt.vis[-1] == 0)
    gt_rows = read_gt_txt(tmp_path / "s.gt.txt")
    assert gt_rows.shape[0] == seq.gt.vis.size


def test_bag_starts_at_the_documented_epoch(tmp_path, seq):
    """Stamps are 2026-01-01T00:00:00Z + sequence time; the GT keeps sequence time and names
    the origin in its header (and its t are exact: no float64 rounding at 1.8e9 s)."""
    import datetime

    from blinktrack_ros.eval.tracks_io import header_time_origin_ns

    epoch = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    assert SYNTH_EPOCH_NS == int(epoch.timestamp()) * 1_000_000_000
    bag = tmp_path / "s"
    write_sequence_bag(seq, bag, "dvs")
    msgs = list(iter_messages(bag, topics=["/camera/image_raw", "/ground_truth/tracks"]))
    stamps = [m.msg.header.stamp.sec * 1_000_000_000 + m.msg.header.stamp.nanosec
              for m in msgs]
    t0 = min(int(seq.frame_times_ns[0]), int(seq.gt.times_ns[0]))
    assert t0 == 0 and min(stamps) == SYNTH_EPOCH_NS  # sequence time 0 is the epoch
    assert min(m.t_ns for m in msgs) == SYNTH_EPOCH_NS
    frame_stamps = [s for s, m in zip(stamps, msgs) if m.topic == "/camera/image_raw"]
    np.testing.assert_array_equal(np.array(frame_stamps) - SYNTH_EPOCH_NS, seq.frame_times_ns)
    gt_path = tmp_path / "s.gt.txt"
    assert header_time_origin_ns(gt_path) == SYNTH_EPOCH_NS
    gt_t = np.unique(read_gt_txt(gt_path)[:, 1])
    np.testing.assert_array_equal(np.round(gt_t * 1e9).astype(np.int64), seq.gt.times_ns)


def _cli(out: Path, seed: int) -> int:
    return main(["synth", "--sequences", "1", "--seed", str(seed), "--preset", "train",
                 "--duration", "0.04", "--size", "96x64", "--out", str(out)])


def test_cli_same_seed_same_bytes(tmp_path):
    assert _cli(tmp_path / "a", 4) == 0 and _cli(tmp_path / "b", 4) == 0
    assert _cli(tmp_path / "c", 5) == 0
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*")
                     if p.is_file())
    assert len(files_a) == 3  # bag file, metadata.yaml, gt.txt
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    mcap_a = next((tmp_path / "a").rglob("*.mcap")).read_bytes()
    assert mcap_a != next((tmp_path / "c").rglob("*.mcap")).read_bytes()
    assert _cli(tmp_path / "a", 4) == 2  # never overwrites


def test_cli_usage_errors(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path), "--preset", "nope"]) == 2
    assert "choose from" in capsys.readouterr().err
    assert main(["synth", "--out", str(tmp_path), "--textures", str(tmp_path / "none")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["synth", "--out", str(tmp_path), "--size", "16x16"]) == 2
    assert "too small" in capsys.readouterr().err
