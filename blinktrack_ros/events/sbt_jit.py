"""SBT-Max patches in one compiled pass (numba): the fast path of `events.sbt.sbt_max_patches`.

Same definition and layout as the numpy code in `events.sbt` (its docstring): window events
are bucketed by the grid cell (`GRID_CELL_PX`) they fall in, each cell lists the patches that
touch it, and each event updates the latest-time maximum of every patch of its cell that it
falls in. The maximum does not depend on the order of the updates, so the result equals the
numpy code's bit for bit (tested on random windows, patches across the sensor border and
events outside it). numpy spends its time in `np.maximum.at` and in building (event, patch)
pair arrays; here it is one loop over the events.

numba is optional: `available()` says whether it imports and compiles the kernel (first use;
from numba's disk cache later); without it `events.sbt` runs its numpy code.
"""

from __future__ import annotations

import numpy as np

_kernel = None
_error: str | None = None


def available() -> bool:
    """True when numba imports and the kernel compiles (done at the first call)."""
    return _load() is not None


def error() -> str | None:
    """Why the kernel is not available (None when it is or was not tried)."""
    return _error


def kernel():
    """The compiled `_patches`; raises ImportError without it."""
    k = _load()
    if k is None:
        raise ImportError(f"the compiled SBT kernel is not available: {_error}")
    return k


def _load():
    global _kernel, _error
    if _kernel is None and _error is None:
        try:
            import numba
        except ImportError as exc:
            _error = str(exc)
            return None
        k = numba.njit(cache=True, nogil=True)(_patches)
        out = np.zeros(2 * 4 * 4 * 2 + 1, np.float32)
        try:  # compile now; one event at pixel (1, 1), t1, in a 4x4 patch centred there
            one16, one64, one8 = np.ones(1, np.uint16), np.full(1, 10, np.int64), np.ones(1,
                                                                                       np.uint8)
            k(one16, one16, one64, one8, 10, 10, 1, np.zeros((1, 2), np.int32) - 1, 4, 8, 8,
              8, out)
            if out.max() != 1.0:
                raise RuntimeError("a one-event window gave no value 1")
        except Exception as exc:  # noqa: BLE001 - an old or broken numba: numpy code instead
            _error = f"numba {numba.__version__} did not compile the SBT kernel: {exc}"
            return None
        _kernel = k
    return _kernel


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
    start = np.zeros(n_cells + 1, np.int64)  # patches of each cell, CSR
    for k in range(n_patches):
        cx0 = min(max(corners[k, 0] // cell_px, 0), ncx - 1)
        cy0 = min(max(corners[k, 1] // cell_px, 0), ncy - 1)
        cx1 = min((corners[k, 0] + size - 1) // cell_px, ncx - 1)
        cy1 = min((corners[k, 1] + size - 1) // cell_px, ncy - 1)
        for cy in range(cy0, cy1 + 1):
            for cx in range(cx0, cx1 + 1):
                start[cy * ncx + cx + 1] += 1
    for c in range(n_cells):
        start[c + 1] += start[c]
    fill = start[:-1].copy()
    members = np.empty(start[n_cells], np.int32)
    for k in range(n_patches):
        cx0 = min(max(corners[k, 0] // cell_px, 0), ncx - 1)
        cy0 = min(max(corners[k, 1] // cell_px, 0), ncy - 1)
        cx1 = min((corners[k, 0] + size - 1) // cell_px, ncx - 1)
        cy1 = min((corners[k, 1] + size - 1) // cell_px, ncy - 1)
        for cy in range(cy0, cy1 + 1):
            for cx in range(cx0, cx1 + 1):
                c = cy * ncx + cx
                members[fill[c]] = k
                fill[c] += 1
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
