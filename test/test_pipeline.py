"""Pipeline (the node logic without ROS): event window grid, backlog policies, seeding, resets,
and KLT tracking of a synthetic sequence against its exact ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from blinktrack_ros.events.batch import EventBatch
from blinktrack_ros.tracking.build import build_pipeline
from blinktrack_ros.tracking.klt import KltSource
from blinktrack_ros.tracking.observation import Observations, Source
from blinktrack_ros.tracking.offline import EventInput, FrameInput, interleave, run_offline
from blinktrack_ros.tracking.pipeline import Backlog, Mode, Pipeline, PipelineConfig
from blinktrack_ros.tracking.seeding import Seeds

MS = 1_000_000


class RecordingEventSource:
    """Stands in for the event network: observes each track at its query position."""

    def __init__(self) -> None:
        self.ids = np.zeros(0, np.uint32)
        self.calls: list[tuple[int, int, int]] = []  # (t1, window, n events)

    @property
    def track_ids(self) -> np.ndarray:
        return self.ids.copy()

    def add_tracks(self, ids, frame=None, positions_px=None) -> None:
        self.ids = np.concatenate([self.ids, np.asarray(ids, np.uint32)])

    def remove_tracks(self, ids) -> int:
        keep = ~np.isin(self.ids, ids)
        removed = int((~keep).sum())
        self.ids = self.ids[keep]
        return removed

    def observe(self, events, t1_ns, window_ns, ids, positions_px) -> Observations:
        assert len(events) == 0 or (events.t.min() > t1_ns - window_ns and events.t.max() <= t1_ns)
        self.calls.append((t1_ns, window_ns, len(events)))
        n = len(ids)
        return Observations(Source.EVENT, t1_ns, np.asarray(ids, np.uint32),
                            np.asarray(positions_px, float), np.tile(np.eye(2), (n, 1, 1)),
                            np.ones(n))


def _events(t_ns: np.ndarray) -> EventBatch:
    n = t_ns.size
    return EventBatch(np.full(n, 50, np.uint16), np.full(n, 40, np.uint16),
                      t_ns.astype(np.int64), np.ones(n, np.uint8), 120, 90)


def _frame(rng: np.random.Generator) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(rng.random((90, 120)).astype(np.float32), (0, 0), 2.0)


def _event_pipeline(**kw) -> tuple[Pipeline, RecordingEventSource]:
    src = RecordingEventSource()
    return Pipeline(PipelineConfig(mode=Mode.E, event_window_ms=10.0, **kw),
                    event_source=src), src


def test_event_windows_tile_time_from_the_first_birth(rng):
    pipe, src = _event_pipeline()
    assert pipe.on_events(_events(np.arange(1, 5 * MS, 100_000))) == []  # no track yet
    pipe.on_image(5 * MS, _frame(rng))
    assert len(src.ids) > 0
    updates = []
    for start in range(5 * MS, 60 * MS, 3 * MS):  # packets of 3 ms
        updates += pipe.on_events(_events(np.arange(start + 1, start + 3 * MS + 1, 50_000)))
    ends = [c[0] for c in src.calls]
    # windows (5+10k, 15+10k] ms, complete once a later event arrived (the last event is 62 ms)
    assert ends == [15 * MS + 10 * MS * k for k in range(5)]
    assert all(c[1] == 10 * MS for c in src.calls)
    assert all(c[2] == 200 for c in src.calls)  # 10 ms of events every 50 us
    assert len(updates) == 5 and all(u.observations.source is Source.EVENT for u in updates)


@pytest.mark.parametrize("policy", [Backlog.MERGE, Backlog.SKIP])
def test_backlog_policy_bounds_the_work(rng, policy):
    pipe, src = _event_pipeline(max_pending_windows=2, backlog=policy)
    pipe.on_image(0, _frame(rng))
    pipe.on_events(_events(np.arange(1, 55 * MS, 100_000)))  # 5 windows at once
    assert len(src.calls) == 1
    t1, window, n = src.calls[0]
    assert t1 == 50 * MS
    if policy is Backlog.MERGE:
        assert (window, n, pipe.stats.windows_merged) == (50 * MS, 500, 4)
    else:
        assert (window, n, pipe.stats.windows_skipped) == (10 * MS, 100, 4)


def test_time_going_backwards_resets_tracks(rng):
    pipe, src = _event_pipeline()
    pipe.on_image(100 * MS, _frame(rng))
    first_ids = src.ids.copy()
    assert first_ids.size > 0
    pipe.on_image(50 * MS, _frame(rng))  # a looped bag
    assert pipe.stats.time_resets == 1
    ids = pipe.engine.tracks.ids
    assert len(src.ids) == len(ids) > 0 and ids.min() > first_ids.max()  # ids never reused


def test_lost_tracks_leave_every_source(rng):
    pipe, src = _event_pipeline()
    pipe.on_image(0, _frame(rng))
    first_ids = src.ids.copy()
    born = first_ids.size
    # no observation for longer than lost_after_s: every track is lost at the next frame
    updates = pipe.on_image(int(2e9), _frame(rng))
    assert pipe.stats.tracks_lost == born
    assert not np.isin(src.ids, first_ids).any()
    assert any((u.tracks.status == 2).sum() == born for u in updates)


def test_interleave_orders_events_before_their_frames():
    t = np.arange(1, 30 * MS, 250_000)
    frames = np.zeros((3, 4, 4), np.float32)
    items = list(interleave(frames, np.array([0, 10 * MS, 20 * MS]), _events(t), MS))
    last_t = -1
    n_events = 0
    for item in items:
        if isinstance(item, EventInput):
            assert item.batch.t[0] > last_t
            last_t = int(item.batch.t[-1])
            n_events += len(item.batch)
        else:
            assert isinstance(item, FrameInput) and item.t_ns >= last_t
            last_t = item.t_ns
    assert n_events == t.size


def test_klt_mode_follows_synthetic_ground_truth():
    from blinktrack_ros.synth.config import preset
    from blinktrack_ros.synth.sequence import generate_sequence

    seq = generate_sequence(preset("slow", duration_s=0.3), seed=7)
    gt = seq.gt
    t0 = int(seq.frame_times_ns[0])
    k0 = int(np.searchsorted(gt.times_ns, t0))
    start = (gt.query_t_ns <= t0) & (gt.vis[k0] == 1)
    seeds = Seeds(ids=gt.ids[start].astype(np.uint32), t_s=np.full(start.sum(), t0 * 1e-9),
                  positions_px=gt.xy[k0, start], visibility=np.ones(start.sum()))
    pipe = build_pipeline(PipelineConfig(mode=Mode.KLT))
    assert isinstance(pipe.image.klt, KltSource)
    pipe.set_seeds(seeds)
    rows = run_offline(pipe, interleave(seq.frames, seq.frame_times_ns, seq.events)).as_rows(
        pipe.external_ids)
    assert set(np.unique(rows[:, 0]).astype(int)) <= set(gt.ids[start].tolist())
    errors = []
    for track_id, t_s, x, y, _ in rows:
        k = int(np.searchsorted(gt.times_ns, int(round(t_s * 1e9))))
        j = int(np.flatnonzero(gt.ids == track_id)[0])
        if gt.vis[k, j] == 1:
            errors.append(np.hypot(x - gt.xy[k, j, 0], y - gt.xy[k, j, 1]))
    assert len(errors) > 10 * start.sum()
    assert np.median(errors) < 0.5


class MovingEventSource(RecordingEventSource):
    """Observes every track 1 px right of its query position (so the fused tracks move)."""

    def __init__(self) -> None:
        super().__init__()
        self.queries: list[np.ndarray] = []

    def observe(self, events, t1_ns, window_ns, ids, positions_px) -> Observations:
        self.queries.append(np.array(positions_px, float))
        obs = super().observe(events, t1_ns, window_ns, ids, positions_px)
        return Observations(obs.source, obs.t_ns, obs.ids, obs.positions_px + [1.0, 0.0],
                            obs.covariances, obs.visibility)


def test_windows_of_one_batch_see_the_previous_window_fused(rng):
    """A batch completing several windows (a node running its backlog) gives the observations
    that the same events in one packet per window give: each window's crop centres come from
    the tracks fused up to the window before."""
    frame = _frame(rng)
    runs = []
    for packet_ms in (2, 40):  # 40 ms: 3 windows complete in one call
        src = MovingEventSource()
        pipe = Pipeline(PipelineConfig(mode=Mode.E, event_window_ms=10.0), event_source=src)
        pipe.on_image(0, frame)
        t = np.arange(1, 42 * MS, 100_000)
        for start in range(0, 42 * MS, packet_ms * MS):
            pipe.on_events(_events(t[(t > start) & (t <= start + packet_ms * MS)]))
        runs.append(src)
    one_by_one, batched = runs
    assert len(one_by_one.queries) == len(batched.queries) == 4
    for a, b in zip(one_by_one.queries, batched.queries):
        np.testing.assert_allclose(b, a)
    assert not np.allclose(batched.queries[0], batched.queries[2])  # the tracks did move


@pytest.mark.parametrize("policy", [Backlog.MERGE, Backlog.SKIP])
def test_each_window_gets_its_events_whatever_the_packets(rng, policy):
    """The events each window is observed with (RecordingEventSource asserts they lie inside
    it) do not depend on how they were packed: 0.3, 2 and 7 ms packets against one packet per
    window, events before the first frame included (the buffer before the window grid), and a
    packet of a window already done is counted late; one batch of everything gives one merged
    window or the newest one (the backlog policy)."""
    frame = _frame(rng)
    t = np.sort(rng.integers(-20 * MS, 61 * MS, 6000))
    runs = {}
    for packet_ns in (300_000, 2 * MS, 7 * MS, 10 * MS, 100 * MS):
        pipe, src = _event_pipeline(backlog=policy,
                                    max_pending_windows=1 if packet_ns == 100 * MS else 4)
        if packet_ns == 100 * MS:  # the frame, then every later event in one batch
            pipe.on_image(0, frame)
            pipe.on_events(_events(t[t > 0]))
        else:
            for start in range(-20 * MS, 61 * MS, packet_ns):
                if 0 <= start < packet_ns:  # before the first packet from 0 on
                    pipe.on_image(0, frame)  # the window grid starts at this frame
                pipe.on_events(_events(t[(t > start) & (t <= start + packet_ns)]))
        pipe.on_events(_events(np.array([60 * MS])))  # the window ending at 60 ms is done
        runs[packet_ns] = (src.calls, pipe.stats.events_late, pipe.stats.time_resets)
    calls, late, resets = runs[10 * MS]
    assert [c[0] // MS for c in calls] == [10, 20, 30, 40, 50, 60] and late == 1 and not resets
    assert sum(c[2] for c in calls) == int(((t > 0) & (t <= 60 * MS)).sum())
    for packet_ns in (300_000, 2 * MS, 7 * MS):
        assert runs[packet_ns] == runs[10 * MS]
    total = int(((t > 0) & (t <= 60 * MS)).sum())
    want = [(60 * MS, 60 * MS, total)] if policy is Backlog.MERGE else [calls[-1]]
    assert runs[100 * MS][0] == want


class SlowKlt(KltSource):
    """KLT that records the thread it ran on and can be slowed down (thread timing)."""

    wait_s = 0.0
    threads: list[int] = []

    def observe(self, *args, **kwargs):
        import threading
        import time

        self.threads.append(threading.get_ident())
        time.sleep(self.wait_s)
        return super().observe(*args, **kwargs)


def _overlapped_run(frames: list[np.ndarray], join_ms: float, delay_s: float,
                    provisional: bool = False):
    src, klt = MovingEventSource(), SlowKlt()
    klt.wait_s, klt.threads = delay_s, []
    pipe = Pipeline(PipelineConfig(mode=Mode.E_KLT, event_window_ms=5.0), event_source=src,
                    klt=klt, frame_join_ms=join_ms, provisional=provisional)
    t = np.arange(1, 100 * MS, 100_000)
    frame_ns = [k * 33 * MS for k in range(len(frames))]
    updates = []
    updates, returned_at = pipe.on_image(0, frames[0]), []  # data time of the call (ms)
    for start in range(0, 100 * MS, MS):  # 1 ms packets, frames after the events up to them
        updates += pipe.on_events(_events(t[(t > start) & (t <= start + MS)]))
        if start + MS in frame_ns:
            k = frame_ns.index(start + MS)
            updates += pipe.on_image(frame_ns[k], frames[k])
        returned_at += [start // MS + 1] * (len(updates) - len(returned_at))
    updates += pipe.flush()
    return pipe, klt, updates, returned_at


def test_frames_overlap_event_windows_in_timestamp_order_and_deterministically(rng):
    """Frames run on a worker; the fused order and the tracks do not depend on its timing."""
    import threading

    frames = [_frame(rng) for _ in range(4)]
    pipe, klt, updates, returned_at = _overlapped_run(frames, 10.0, 0.0)
    _, _, slow_updates, _ = _overlapped_run(frames, 10.0, 0.02)
    _, _, sequential, sequential_at = _overlapped_run(frames, 0.0, 0.0)
    # the first frame (no window grid yet) on the calling thread, the later ones on the worker
    assert klt.threads[0] == threading.get_ident() and len(klt.threads) == 4
    assert threading.get_ident() not in klt.threads[1:]
    times = [u.tracks.t_ns for u in updates]
    assert times == sorted(times)  # fused in timestamp order
    assert pipe.stats.fusion["stale"] == 0 and pipe.stats.fusion["applied"] > 0
    klt_times = [u.observations.t_ns for u in updates
                 if u.observations is not None and u.observations.source is Source.KLT]
    assert klt_times == [33 * MS, 66 * MS, 99 * MS]
    assert len(slow_updates) == len(updates)
    for a, b in zip(updates, slow_updates):  # a slower worker: the same result
        assert a.tracks.t_ns == b.tracks.t_ns
        np.testing.assert_array_equal(a.tracks.ids, b.tracks.ids)
        np.testing.assert_array_equal(a.tracks.positions_px, b.tracks.positions_px)
    # the frame at 33 ms is fused when the data passes 43 ms, then the windows ending at 35
    # and 40 ms (observed meanwhile); sequentially: at once, and the same order of updates
    fused_at = {u.tracks.t_ns // MS: at for u, at in zip(updates, returned_at)}
    assert (fused_at[33], fused_at[35], fused_at[40], fused_at[45]) == (44, 44, 44, 46)
    fused_at = {u.tracks.t_ns // MS: at for u, at in zip(sequential, sequential_at)}
    assert (fused_at[33], fused_at[35], fused_at[40], fused_at[45]) == (33, 36, 41, 46)
    assert [u.tracks.t_ns for u in sequential] == times


def test_provisional_windows_go_out_at_once_and_the_filter_ends_the_same(rng):
    """Live frame join: windows observed while a frame is in flight come back at once (tracks
    fused without that frame), the frame's updates at the join marked late, no window twice;
    the filter then holds exactly what the plain frame join gives."""
    frames = [_frame(rng) for _ in range(4)]
    pipe, _, all_updates, all_at = _overlapped_run(frames, 10.0, 0.0, provisional=True)
    ref_pipe, _, ref_updates, _ = _overlapped_run(frames, 10.0, 0.02)
    # the provisional windows come back once more after their frame's join, fused with it
    # (`refit`, for the fixed-lag smoother; a node does not publish them): those are the
    # plain frame join's updates of the same windows
    refit = [(u, a) for u, a in zip(all_updates, all_at) if u.refit]
    ref_by_t = {u.tracks.t_ns: u for u in ref_updates}
    assert {u.tracks.t_ns // MS for u, _ in refit} == {u.tracks.t_ns // MS for u in all_updates
                                                       if u.provisional}
    for u, a in refit:
        assert a == 44 or a > 66  # returned at the join of the frame before them
        np.testing.assert_array_equal(u.tracks.ids, ref_by_t[u.tracks.t_ns].tracks.ids)
        np.testing.assert_allclose(u.tracks.positions_px,
                                   ref_by_t[u.tracks.t_ns].tracks.positions_px)
    updates = [u for u in all_updates if not u.refit]
    returned_at = [a for u, a in zip(all_updates, all_at) if not u.refit]
    at = {(u.tracks.t_ns // MS, u.late): a for u, a in zip(updates, returned_at)}
    assert (at[35, False], at[40, False], at[33, True], at[45, False]) == (36, 41, 44, 46)
    on_time = [u.tracks.t_ns for u in updates if not u.late]
    assert on_time == sorted(on_time)  # what a live node publishes never goes back
    windows = [u.tracks.t_ns for u in updates
               if u.observations is not None and u.observations.source is Source.EVENT]
    ref_windows = [u.tracks.t_ns for u in ref_updates
                   if u.observations is not None and u.observations.source is Source.EVENT]
    assert windows == ref_windows == [k * 5 * MS for k in range(1, 20)]  # each window once
    late = [u for u in updates if u.late]
    # frames 33 and 66 ms join after later windows went out (KLT observations, then seeds);
    # the one at 99 ms has no later window before the end: it is on time
    assert sorted({u.tracks.t_ns // MS for u in late}) == [33, 66]
    assert [u.tracks.t_ns // MS for u in late if u.observations is not None
            and u.observations.source is Source.KLT] == [33, 66]
    assert {u.tracks.t_ns // MS for u in updates if u.provisional} >= {35, 40, 70, 75}
    # every stamp of the plain run comes back once (the frames late), nothing else
    assert sorted(u.tracks.t_ns for u in updates) == sorted(u.tracks.t_ns for u in ref_updates)
    # after each join the tracks are the plain run's: the windows at 45 ms and at the end
    ref = {u.tracks.t_ns: u.tracks for u in ref_updates}  # the last update of each stamp
    got = {u.tracks.t_ns: u.tracks for u in updates if not u.late}
    for t_ms in (45, 50, 95, 99):
        np.testing.assert_array_equal(got[t_ms * MS].ids, ref[t_ms * MS].ids)
        np.testing.assert_allclose(got[t_ms * MS].positions_px, ref[t_ms * MS].positions_px)
    # the provisional tracks at 35 ms lack the frame at 33 ms: not its births, nor its KLT
    # observation of the older tracks
    prov = got[35 * MS]
    assert set(prov.ids) < set(ref[35 * MS].ids)
    common = np.isin(ref[35 * MS].ids, prov.ids)
    assert not np.allclose(prov.positions_px, ref[35 * MS].positions_px[common])


class GatedKlt(KltSource):
    """KLT whose observe waits until the test opens the gate (a frame still in flight)."""

    def __init__(self, config=None):
        import threading

        super().__init__(config)
        self.gate = getattr(self, "gate", None) or threading.Event()  # reset() re-inits

    def observe(self, *args, **kwargs):
        assert self.gate.wait(10.0)
        return super().observe(*args, **kwargs)


def test_join_when_ready_fuses_a_finished_frame_at_the_next_window(rng):
    """Live: a frame whose worker is done is joined before the next window, not only after
    frame_join_ms of data; while it runs, the windows go out provisionally."""
    import time

    src, klt = MovingEventSource(), GatedKlt()
    pipe = Pipeline(PipelineConfig(mode=Mode.E_KLT, event_window_ms=5.0), event_source=src,
                    klt=klt, frame_join_ms=20.0, provisional=True, join_when_ready=True)
    klt.gate.set()
    pipe.on_image(0, _frame(rng))  # no window grid yet: on the calling thread
    t = np.arange(1, 100 * MS, 100_000)
    pipe.on_events(_events(t[t <= 33 * MS]))
    klt.gate.clear()
    assert pipe.on_image(33 * MS, _frame(rng)) == []  # in flight, held at the gate
    first = pipe.on_events(_events(t[(t > 33 * MS) & (t <= 36 * MS)]))
    assert [(u.tracks.t_ns // MS, u.provisional, u.late) for u in first] == [(35, True, False)]
    klt.gate.set()
    deadline = time.monotonic() + 10.0
    while not pipe._in_flight.result.done() and time.monotonic() < deadline:
        time.sleep(0.001)
    second = pipe.on_events(_events(t[(t > 36 * MS) & (t <= 41 * MS)]))
    # joined at 41 ms of data (not 53): the frame's updates late, then window 40 fused with it
    assert [u.tracks.t_ns // MS for u in second if u.late] == [33, 33]
    assert [(u.tracks.t_ns // MS, u.provisional, u.refit) for u in second if not u.late] == \
        [(35, False, True), (40, False, False)]  # window 35 again, refit with the frame
    assert pipe._in_flight is None


def test_network_drop_counters_reach_the_pipeline_stats(rng):
    """What a network source counts itself (non-finite outputs, unknown ids) is part of the
    pipeline's stats, which the node publishes in /diagnostics."""
    pipe, src = _event_pipeline()
    src.stats = {"nan_dropped": 0, "unknown_ids": 0}
    assert pipe.stats.sources == {"event nan_dropped": 0, "event unknown_ids": 0}
    src.stats["nan_dropped"] = 3  # as the event source counts a NaN output
    assert pipe.stats.sources["event nan_dropped"] == 3


def test_a_track_with_nonfinite_network_output_is_ended(rng):
    """A NaN/Inf network output is counted by the source (which records the id); the pipeline
    then ends that track: LOST in the next snapshot, removed from the table and every source,
    while the other tracks go on."""
    pipe, src = _event_pipeline()
    src.nonfinite_ids = np.zeros(0, np.uint32)
    pipe.on_image(0, _frame(rng))
    alive = src.ids.copy()
    victim = int(alive[0])
    src.nonfinite_ids = np.array([victim], np.uint32)  # as EventSource records a NaN output
    updates = pipe.on_events(_events(np.arange(1, 25) * MS))
    reported = [u for u in updates if victim in u.tracks.ids[u.tracks.status == 2]]
    assert len(reported) == 1
    assert victim not in pipe.engine.tracks.ids and victim not in src.ids
    assert set(alive[1:]) <= set(pipe.engine.tracks.ids) and src.nonfinite_ids.size == 0


def test_offline_frame_join_follows_the_torch_threads():
    """`blinktrack track` puts frames on a worker only when torch runs one thread (the worker
    then has the second core); with more threads both networks share the cores in turn."""
    import torch

    from blinktrack_ros.tracking.pipeline import OFFLINE_FRAME_JOIN_MS, offline_frame_join_ms

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert offline_frame_join_ms() == OFFLINE_FRAME_JOIN_MS > 0
        torch.set_num_threads(2)
        assert offline_frame_join_ms() == 0.0
        assert offline_frame_join_ms(7.5) == 7.5  # an explicit value wins
    finally:
        torch.set_num_threads(before)


def _warm_run(warm: bool, runtime: str = "torch"):
    from blinktrack_ros.synth.config import preset
    from blinktrack_ros.synth.sequence import generate_sequence
    from blinktrack_ros.tracking.build import event_source_options

    seq = generate_sequence(preset("slow", duration_s=0.25), seed=3)
    h, w = seq.frames.shape[1:]
    pipe = build_pipeline(PipelineConfig(mode=Mode.EI, event_window_ms=5.0), untrained=True,
                          frame_join_ms=10.0, event_source=event_source_options(runtime, ""))
    seconds = pipe.warm_up(w, h) if warm else 0.0
    model = pipe.image.image_source.model
    traced = set(getattr(model, "_traced", None) or ())  # (level, level shape, ...) keys
    stats_after_warm_up = pipe.stats
    log = run_offline(pipe, interleave(seq.frames, seq.frame_times_ns, seq.events))
    return pipe, log.as_rows(), stats_after_warm_up, seconds, (traced, (w, h))


def test_warm_up_leaves_no_trace_in_the_tracks_and_counters():
    """A warmed-up pipeline gives the tracks, ids and counters of a cold one (the sources
    are shared with the throwaway pipeline and reset), and has its kernels and traces ready."""
    from blinktrack_ros.events import sbt_jit

    cold, cold_rows, _, _, (cold_traced, _) = _warm_run(False)
    warm, warm_rows, stats0, seconds, (traced, (w, h)) = _warm_run(True)
    assert seconds > 0
    assert stats0.tracks_born == 0 and stats0.event_windows == 0 and stats0.frames == 0
    assert stats0.fusion["arrays"] == 0 and not any(stats0.sources.values())
    assert cold_rows.shape == warm_rows.shape and cold_rows.shape[0] > 100
    np.testing.assert_array_equal(cold_rows, warm_rows)
    assert warm.stats == cold.stats
    if sbt_jit.KERNEL.available():
        assert sbt_jit.KERNEL._compiled is not None
    if hasattr(warm.image.image_source.model, "_traced"):  # the patch image network traces
        assert not cold_traced  # per image size, at its first tracked frame
        assert any(key[1][-2:] == (h, w) for key in traced)


def test_warm_up_refuses_a_pipeline_that_has_seen_data(rng):
    pipe, _ = _event_pipeline()
    pipe.on_image(0, _frame(rng))
    with pytest.raises(RuntimeError, match="before the pipeline's first input"):
        pipe.warm_up()


def test_warm_up_inputs_are_ordered_and_inside_the_sensor():
    from blinktrack_ros.tracking.pipeline import warm_up_inputs

    items = warm_up_inputs(64, 48, 0.05)
    times = [int(i.t[-1]) if isinstance(i, EventBatch) else i[0] for i in items]
    assert times == sorted(times)
    frames = [i for i in items if not isinstance(i, EventBatch)]
    assert [f[0] for f in frames] == [0, 33_333_333]
    assert all(f[1].shape == (48, 64) and f[1].dtype == np.float32 for f in frames)
    events = EventBatch.concatenate([i for i in items if isinstance(i, EventBatch)])
    assert len(events) == 50 * 100 and events.x.max() < 64 and events.y.max() < 48
    with pytest.raises(ValueError, match="16x16"):
        warm_up_inputs(8, 48, 0.05)
    long = [i for i in warm_up_inputs(64, 48, 2.0) if not isinstance(i, EventBatch)]
    assert len(long) == 61 and all(f[1].shape == (48, 64) for f in long)  # every shift fits
    np.testing.assert_array_equal(long[5][1][:, 1:], long[6][1][:, :-1])  # 1 px per frame
