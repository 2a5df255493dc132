"""Load an EC or EDS evaluation sub-sequence in the layout users download.

A sub-sequence folder (e.g. `shapes_translation_8_88/`, `peanuts_light_160_386/`) holds:
- frames: `images_corrected/*.png` (rectified; `images/` as a fallback), sorted by name;
- frame times: `images.txt` (EC: `t [path]` per line, seconds), or `images_timestamps.txt` /
  `image_timestamps.txt` / `timestamps.txt` (EDS: integer microseconds);
- events: `events_corrected.txt` / `events.txt` (rows `t x y p`, t in seconds) or
  `events_corrected.h5` / `events.h5` (datasets x, y, t, p; EDS: t in microseconds; needs h5py);
- ground truth: `gt_tracks/<seq>.gt.txt` inside the folder or beside it (names matched loosely,
  see `tracks_io`), rows `id t x y [vis]` with t in seconds on the frames' clock.

Time units default to "auto": decimal text or float datasets are seconds, integer ones
microseconds. All times are returned in integer nanoseconds except GT rows (seconds, as files).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from blinktrack_ros.eval.tracks_io import loose_name, read_tracks, sequence_name
from blinktrack_ros.events.batch import EventBatch

FRAME_DIRS = ("images_corrected", "images")
TIMESTAMP_FILES = ("images.txt", "images_timestamps.txt", "image_timestamps.txt",
                   "timestamps.txt")
EVENT_FILES = ("events_corrected.txt", "events.txt", "events_corrected.h5", "events.h5")
_UNIT_NS = {"s": 1e9, "ms": 1e6, "us": 1e3, "ns": 1.0}
_CHUNK_LINES = 1_000_000


@dataclass(frozen=True)
class EcEdsSequence:
    """One evaluation sub-sequence.

    Attributes:
        name: folder name (e.g. `shapes_translation_8_88`).
        frames: (F,) list of (H, W) uint8 grayscale frames.
        frame_times_ns: (F,) int64 frame times.
        events: time-sorted EventBatch (t in ns), pixels outside the frame dropped.
        gt: (K, 4|5) GT rows `id t x y [vis]` (t in s), or None when absent.
        n_events_dropped: events outside the frame.
    """

    name: str
    frames: list[np.ndarray]
    frame_times_ns: np.ndarray
    events: EventBatch
    gt: np.ndarray | None
    n_events_dropped: int = 0


def _to_ns(values: np.ndarray, unit: str) -> np.ndarray:
    if unit not in _UNIT_NS:
        raise ValueError(f"time unit must be one of {sorted(_UNIT_NS)} or 'auto', got {unit!r}")
    arr = np.asarray(values)
    if unit != "s" and (np.issubdtype(arr.dtype, np.integer) or np.all(arr == np.round(arr))):
        # integer micro/milli/nanoseconds: exact integer arithmetic (epoch times exceed 2**53 ns)
        return arr.astype(np.int64) * int(_UNIT_NS[unit])
    return np.rint(arr.astype(np.float64) * _UNIT_NS[unit]).astype(np.int64)


def first_file(folder: Path, names: tuple[str, ...], what: str) -> Path:
    for name in names:
        if (folder / name).exists():
            return folder / name
    raise FileNotFoundError(f"{folder}: no {what} (looked for {', '.join(names)})")


def load_frames(folder: Path, time_unit: str = "auto") -> tuple[list[np.ndarray], np.ndarray]:
    """Frames and their times (ns) of a sub-sequence folder (see the module docstring)."""
    import cv2

    frame_dir = first_file(folder, FRAME_DIRS, "frame folder")
    ts_path = first_file(folder, TIMESTAMP_FILES, "frame timestamps file")
    lines = [ln.split() for ln in ts_path.read_text().splitlines() if ln.strip()
             and not ln.lstrip().startswith("#")]
    if not lines:
        raise ValueError(f"{ts_path}: no timestamps")
    unit = time_unit
    if unit == "auto":
        unit = "s" if any("." in ln[0] or "e" in ln[0].lower() for ln in lines) else "us"
    times_ns = _to_ns([float(ln[0]) for ln in lines], unit)
    if all(len(ln) >= 2 for ln in lines):  # `t path`: frames named in the file
        paths = [frame_dir / Path(ln[1]).name for ln in lines]
    else:
        paths = sorted(frame_dir.glob("*.png"))
        if len(paths) != len(times_ns):
            raise ValueError(f"{frame_dir} has {len(paths)} frames but {ts_path.name} lists "
                             f"{len(times_ns)} times")
    frames = []
    for path in paths:
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise FileNotFoundError(f"cannot read frame {path}")
        frames.append(image)
    return frames, times_ns


def _read_text_events(path: Path) -> np.ndarray:
    """(N, 4) float64 rows `t x y p`, read in chunks with progress for large files."""
    from itertools import islice

    from tqdm import tqdm

    chunks = []
    with path.open() as f, tqdm(desc=f"reading {path.name}", unit=" events",
                                disable=path.stat().st_size < 50_000_000) as bar:
        while True:
            lines = list(islice(f, _CHUNK_LINES))
            if not lines:
                break
            chunk = np.loadtxt(lines, dtype=np.float64, ndmin=2, comments="#")
            if chunk.size and chunk.shape[1] < 4:
                raise ValueError(f"{path}: expected rows `t x y p`, got {chunk.shape[1]} columns")
            chunks.append(chunk[:, :4])
            bar.update(len(lines))
    return np.concatenate(chunks) if chunks else np.zeros((0, 4))


def _read_h5_events(path: Path) -> tuple[np.ndarray, ...]:
    try:
        import h5py
    except ImportError:
        raise ImportError(f"reading {path.name} needs h5py: pip install h5py "
                          "(or convert the events to text rows `t x y p`)") from None
    with h5py.File(path, "r") as f:
        missing = [k for k in ("x", "y", "t", "p") if k not in f]
        if missing:
            raise ValueError(f"{path}: missing datasets {missing} (expected x, y, t, p)")
        return tuple(np.asarray(f[k]) for k in ("t", "x", "y", "p"))


def load_events(path: Path, width: int, height: int, time_unit: str = "auto"
                ) -> tuple[EventBatch, int]:
    """Events of a text or h5 file as a time-sorted EventBatch; returns (batch, n_dropped)."""
    if path.suffix == ".h5":
        t, x, y, p = _read_h5_events(path)
        unit = time_unit if time_unit != "auto" else (
            "us" if np.issubdtype(t.dtype, np.integer) else "s")
    else:
        rows = _read_text_events(path)
        t, x, y, p = rows.T
        unit = "s" if time_unit == "auto" else time_unit
    t_ns = _to_ns(t, unit)
    xi, yi = np.rint(x).astype(np.int64), np.rint(y).astype(np.int64)
    inside = (xi >= 0) & (xi < width) & (yi >= 0) & (yi < height)
    if not np.all(np.diff(t_ns[inside]) >= 0):
        order = np.argsort(t_ns[inside], kind="stable")
    else:
        order = slice(None)
    batch = EventBatch(xi[inside][order].astype(np.uint16), yi[inside][order].astype(np.uint16),
                       t_ns[inside][order], (np.asarray(p)[inside][order] > 0).astype(np.uint8),
                       int(width), int(height))
    return batch, int(np.count_nonzero(~inside))


def find_gt(folder: Path, name: str | None = None) -> Path | None:
    """The GT file of a sub-sequence: `gt_tracks/` inside or beside the folder, loose names."""
    key = loose_name(name or folder.name)
    for gt_dir in (folder / "gt_tracks", folder.parent / "gt_tracks", folder):
        if not gt_dir.is_dir():
            continue
        for path in sorted(gt_dir.glob("*.gt.txt")):
            if loose_name(sequence_name(path)) == key:
                return path
    return None


def load_sequence(folder: str | Path, gt_path: str | Path | None = None,
                  time_unit: str = "auto", event_time_unit: str = "auto",
                  require_events: bool = True) -> EcEdsSequence:
    """Load frames, events and ground truth of one EC/EDS sub-sequence folder.

    require_events=False: a folder without an events file loads with no events (for the
    frame-only modes `i` and `klt`).

    Raises:
        FileNotFoundError: the folder lacks frames, timestamps or (when required) events
            (message says which).
        ValueError: inconsistent counts or malformed rows.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"sequence folder not found: {folder}")
    frames, frame_times_ns = load_frames(folder, time_unit)
    height, width = frames[0].shape[:2]
    if require_events or any((folder / f).is_file() for f in EVENT_FILES):
        events, dropped = load_events(first_file(folder, EVENT_FILES, "events file"), width,
                                      height, event_time_unit)
    else:
        events, dropped = EventBatch.empty(width, height), 0
    gt_file = Path(gt_path) if gt_path is not None else find_gt(folder)
    gt = read_tracks(gt_file) if gt_file is not None else None
    return EcEdsSequence(folder.name, frames, frame_times_ns, events, gt, dropped)


def has_events(folder: Path) -> bool:
    """True if the sub-sequence folder has an events file."""
    return any((Path(folder) / f).is_file() for f in EVENT_FILES)


def is_sequence_folder(folder: Path) -> bool:
    """True if the folder looks like a sub-sequence (frames and timestamps present)."""
    return (any((folder / d).is_dir() for d in FRAME_DIRS)
            and any((folder / f).is_file() for f in TIMESTAMP_FILES))
