"""SBT-Max patches in one compiled pass (numba): the fast path of `events.sbt.sbt_max_patches`.

Same definition and layout as the numpy code in `events.sbt` (its docstring): window events
are bucketed by the grid cell (`GRID_CELL_PX`) they fall in, each cell lists the patches that
touch it, and each event updates the latest-time maximum of every patch of its cell that it
falls in. The maximum does not depend on the order of the updates, so the result equals the
numpy code's bit for bit (tested on random windows, patches across the sensor border and
events outside it). numpy spends its time in `np.maximum.at` and in building (event, patch)
pair arrays; here it is one loop over the events.

numba is optional (`blinktrack_ros.jit`): without the compiled kernel `events.sbt` runs its
numpy code.
"""

from __future__ import annotations

import numpy as np

from blinktrack_ros.jit import Kernel


def _check(kernel) -> None:
    """Compile; one event at pixel (1, 1) at t1 in a 4x4 patch there must give the value 1."""
    out = np.zeros(2 * 4 * 4 * 2 + 1, np.float32)
    one16, one8 = np.ones(1, np.uint16), np.ones(1, np.uint8)
    kernel(one16, one16, np.full(1, 10, np.int64), one8, 10, 10, 1,
           np.zeros((1, 2), np.int32) - 1, 4, 8, 8, 8, out)
    if out.max() != 1.0:
        raise RuntimeError("a one-event window gave no value 1")


def _patches(x, y, t, p, t1_ns, window_ns, bins, corners, size, width, height, cell_px, out):
    """Write the SBT-Max patches of window events into `out` (compiled by numba).

    Args:
        x: (n,) uint16 columns of the window's events (t1 - window < t <= t1).
        y: (n,) uint16 rows.
        t: (n,) int64 times, ns.
        p: (n,) uint8 polarities.
        t1_ns: window end, ns.
        window_ns: window length, ns.
        bins: time bins (channels 2 * bins).
        corners: (N, 2) int32 sensor xy of each patch's [0, 0].
        size: patch side S.
        width: sensor width (events at x >= width or y >= height are ignored).
        height: sensor height.
        cell_px: side of the grid cells.
        out: zeroed flat float32 array of N * S * S * 2 * bins (+ anything) elements, NHWC
            order: [patch, row, column, channel]; the maxima are written in place.
    """
    n_patches = corners.shape[0]
    channels = 2 * bins
    ncx = (width + cell_px - 1) // cell_px
    ncy = (height + cell_px - 1) // cell_px
    n_cells = ncx * ncy
    cells = np.empty((n_patches, 4), np.int64)  # cx0, cy0, cx1, cy1 of each patch
    for k in range(n_patches):
        cells[k, 0] = min(max(corners[k, 0] // cell_px, 0), ncx - 1)
        cells[k, 1] = min(max(corners[k, 1] // cell_px, 0), ncy - 1)
        cells[k, 2] = min((corners[k, 0] + size - 1) // cell_px, ncx - 1)
        cells[k, 3] = min((corners[k, 1] + size - 1) // cell_px, ncy - 1)
    start = np.zeros(n_cells + 1, np.int64)  # the patches of each cell, CSR
    members = np.empty(0, np.int32)
    fill = start[:-1].copy()
    for fill_pass in range(2):  # count, then fill
        if fill_pass:
            for c in range(n_cells):
                start[c + 1] += start[c]
            members = np.empty(start[n_cells], np.int32)
            fill = start[:-1].copy()
        for k in range(n_patches):
            for cy in range(cells[k, 1], cells[k, 3] + 1):
                for cx in range(cells[k, 0], cells[k, 2] + 1):
                    c = cy * ncx + cx
                    if fill_pass:
                        members[fill[c]] = k
                        fill[c] += 1
                    else:
                        start[c + 1] += 1
    t0 = t1_ns - window_ns
    window_f = float(window_ns)
    for i in range(x.shape[0]):
        xi = np.int64(x[i])
        yi = np.int64(y[i])
        if xi >= width or yi >= height:
            continue
        c = (yi // cell_px) * ncx + xi // cell_px
        if start[c] == start[c + 1]:
            continue
        dt = t[i] - t0
        ch = 2 * ((dt * bins + window_ns - 1) // window_ns - 1) + (1 if p[i] != 0 else 0)
        val = np.float32(dt / window_f)
        for j in range(start[c], start[c + 1]):
            k = members[j]
            col = xi - corners[k, 0]
            row = yi - corners[k, 1]
            if 0 <= col < size and 0 <= row < size:
                idx = ((k * size + row) * size + col) * channels + ch
                if val > out[idx]:
                    out[idx] = val


KERNEL = Kernel(_patches, _check, "the SBT kernel")
available, error, kernel = KERNEL.available, KERNEL.error, KERNEL.compiled
