"""Synthetic sequences with exact ground truth, and an ESIM-style event simulator.

In memory (no ROS, no bags), for the trainer and tests:

    from blinktrack_ros.synth.config import preset
    from blinktrack_ros.synth.sequence import generate_sequence
    seq = generate_sequence(preset("train"), seed=0)
    seq.frames          # (T, H, W) float32 in [0, 1], seq.frame_times_ns (T,) int64
    seq.events          # EventBatch, time-sorted, in (0, duration]
    seq.gt.xy           # (S, N, 2) exact pixel xy at seq.gt.times_ns (every 1 ms + frames)
    seq.gt.vis          # (S, N) int8: 1 visible, 0 occluded, -1 outside the image
    seq.K               # (3, 3) pinhole intrinsics

Modules: `config` (SequenceConfig, MotionConfig, SensorConfig, CameraShakeConfig, PRESETS,
SUITES), `textures` (photographs by split, procedural textures), `motion` (similarity
trajectories, camera rotation homographies), `scene` (layers, rendering), `groundtruth`, `esim`
(simulator), `sequence` (incl. the DAVIS-like sensor), `video` (sequences from high-frame-rate
video), `bagout` (mcap bag + `<seq>.gt.txt`), `commands` (`blinktrack synth`, `blinktrack bench
synth`). See docs/synthetic.md.
"""
