"""Evaluation: feature-age metrics (EC/EDS protocol), benchmark runner, plots.

Modules:
    tracks_io   read/write `id t x y [vis]` files, match prediction and GT files by sequence
    metrics     feature age (reference protocol by default; `corrected`, `truncate_pred`), delta
    evaluate    evaluate files/folders (`blinktrack eval`)
    ec_eds      load EC/EDS sub-sequence folders (frames, events, GT)
    benchmark   runner functions behind `blinktrack benchmark` (tracker callable per mode)
    report      markdown/CSV tables; plots: age vs threshold, per-sequence bars
    render      tracks over frames as GIF (MP4 with imageio-ffmpeg)
"""
