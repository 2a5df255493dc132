"""Track files of the EC/EDS feature-age benchmark: rows `id t x y [vis]`, matched by sequence.

One row per (track, time): id (integer-valued), t in seconds, x y in pixels (pixel centres at
integer coordinates), and optionally a 5th column `vis` (1 = visible, 0 = occluded) in ground
truth. Whitespace- or comma-separated; blank lines, `#` comments and a non-numeric header line
are skipped.

Times: a file whose header has a line `# time origin N ns` holds t as seconds after that origin
(integer ns since the Unix epoch); the bag stamps are origin + t. `blinktrack synth` bags start at
a fixed epoch (2026-01-01T00:00:00Z) and their ground truth says so, which keeps t small enough
for float64 to hold it to the nanosecond (absolute seconds near 1.8e9 keep ~0.2 us). Without the
line, t over 1e9 s (2001-09-09) reads as absolute Unix time and smaller t as already in the time
of the file it is compared with. `blinktrack eval` aligns predictions on the ground truth's
origin this way, `blinktrack track` its seeds.

Names: ground truth is `<seq>.gt.txt`, predictions `<seq>.txt`. The EC/EDS files in the wild
differ in two ways that `match_sequences` tolerates: predictions carry the frame range of the
sub-sequence (`shapes_6dof_485_565.txt` vs `shapes_6dof.gt.txt`) and EDS ground truth carries a
numeric prefix (`01_peanuts_light.gt.txt` vs `peanuts_light_160_386.txt`); ground truth with
visibility may be named `<seq>_occ.gt.txt`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
import re
import warnings

import numpy as np

GT_SUFFIX = ".gt.txt"
_RANGE_SUFFIX = re.compile(r"_\d+_\d+$")
_NUMBER_PREFIX = re.compile(r"^\d+_")
_OCC_SUFFIX = "_occ"


class TrackFileError(ValueError):
    """A track file that cannot be read as rows `id t x y [vis]`."""


_IMAGE_SIZE = re.compile(r"#\s*image size (\d+)x(\d+)")
_TIME_ORIGIN = re.compile(r"#\s*time origin (\d+) ns")
ABSOLUTE_T_S = 1e9  # t beyond this (2001-09-09) in a file without an origin is Unix time


def _header_match(path: str | Path, pattern: re.Pattern) -> re.Match | None:
    """The first match of pattern among the leading `#` lines of the file."""
    with open(path) as f:
        for line in f:
            if not line.startswith("#"):
                return None
            found = pattern.match(line)
            if found:
                return found
    return None


def header_image_size(path: str | Path) -> tuple[int, int] | None:
    """(width, height) from a `# image size WxH` header line (what `blinktrack synth` writes
    into its ground truth), None when the file has none."""
    found = _header_match(path, _IMAGE_SIZE)
    return (int(found.group(1)), int(found.group(2))) if found else None


def time_origin_line(time_origin_ns: int) -> str:
    """The header line (without `# `) that records a file's time origin."""
    return f"time origin {int(time_origin_ns)} ns (t in s after it; bag stamps = origin + t)"


def header_time_origin_ns(path: str | Path) -> int:
    """The time origin (int ns) from a `# time origin N ns` header line; 0 when none."""
    found = _header_match(path, _TIME_ORIGIN)
    return int(found.group(1)) if found else 0


def time_shift_s(path: str | Path, t_s: np.ndarray, target_origin_ns: int) -> float:
    """Seconds to add to the file's t (values t_s) to count them from target_origin_ns.

    By the file's `# time origin` line when it has one; without one, t over 1e9 s count as
    absolute Unix times (origin 0), smaller t as already counting from the target.
    """
    origin = header_time_origin_ns(path)
    if not origin:
        t_s = np.asarray(t_s, dtype=np.float64)
        if not (t_s.size and float(np.median(t_s)) > ABSOLUTE_T_S):
            return 0.0
    return (origin - int(target_origin_ns)) * 1e-9


def read_tracks(path: str | Path) -> np.ndarray:
    """Read a track file.

    Returns:
        (N, 4) or (N, 5) float64 rows `id t x y [vis]`, in file order.

    Raises:
        FileNotFoundError: the file does not exist.
        TrackFileError: rows with a wrong column count, non-numeric or non-finite values.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"track file not found: {path}")
    try:  # fast path: plain numeric rows
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # empty file: reported below
            data = np.loadtxt(path, dtype=np.float64, comments="#", ndmin=2)
    except ValueError:
        data = _read_tracks_tolerant(path)
    else:
        if data.size == 0:
            raise TrackFileError(f"{path}: no track rows")
        if data.shape[1] not in (4, 5):
            raise TrackFileError(
                f"{path}: expected 4 or 5 columns `id t x y [vis]`, got {data.shape[1]}")
    if not np.all(np.isfinite(data)):
        bad = int(np.argwhere(~np.isfinite(data).all(axis=1))[0, 0])
        raise TrackFileError(f"{path}: non-finite value in data row {bad + 1}")
    return data


def _read_tracks_tolerant(path: Path) -> np.ndarray:
    """Line by line: commas, a header line; errors name the line."""
    rows: list[list[float]] = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        text = line.split("#", 1)[0].replace(",", " ").strip()
        if not text:
            continue
        try:
            values = [float(v) for v in text.split()]
        except ValueError:
            if not rows:  # a header line before the data
                continue
            raise TrackFileError(f"{path}:{lineno}: not numeric: {line.strip()!r}") from None
        if rows and len(values) != len(rows[0]):
            raise TrackFileError(
                f"{path}:{lineno}: {len(values)} columns, earlier rows have {len(rows[0])}")
        if len(values) not in (4, 5):
            raise TrackFileError(
                f"{path}:{lineno}: expected 4 or 5 columns `id t x y [vis]`, got {len(values)}")
        rows.append(values)
    if not rows:
        raise TrackFileError(f"{path}: no track rows")
    return np.asarray(rows, dtype=np.float64)


def write_tracks(path: str | Path, tracks: np.ndarray, truncate_xy: bool = False,
                 time_origin_ns: int = 0) -> None:
    """Write rows `id t x y [vis]` (t with 9 decimals, x y with 4, or truncated to integers).

    `truncate_xy=True` writes x, y like the reference trackers' output (`%i`, towards zero).
    A non-zero `time_origin_ns` (t counts from it) goes into a `# time origin` header line.
    """
    tracks = np.asarray(tracks, dtype=np.float64)
    if tracks.ndim != 2 or tracks.shape[1] not in (4, 5):
        raise ValueError(f"tracks must be (N, 4) or (N, 5), got {tracks.shape}")
    fmt = ["%i", "%.9f"] + (["%i", "%i"] if truncate_xy else ["%.4f", "%.4f"])
    if tracks.shape[1] == 5:
        fmt.append("%i")
    out = tracks.copy()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if truncate_xy:
        out[:, 2:4] = np.trunc(out[:, 2:4])
    header = time_origin_line(time_origin_ns) if time_origin_ns else ""
    np.savetxt(str(path), out, fmt=fmt, header=header)


def sequence_name(path: str | Path) -> str:
    """The sequence name of a track file: its name without `.gt.txt` / `.txt`."""
    name = Path(path).name
    for suffix in (GT_SUFFIX, ".txt"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem


def loose_name(name: str) -> str:
    """Name without a leading `NN_` prefix, a trailing `_<start>_<end>` frame range and the
    `_occ` suffix of ground truth with visibility (`<seq>_occ.gt.txt`)."""
    name = name[: -len(_OCC_SUFFIX)] if name.endswith(_OCC_SUFFIX) else name
    return _NUMBER_PREFIX.sub("", _RANGE_SUFFIX.sub("", name))


@dataclass(frozen=True)
class SequencePair:
    """A prediction file and the ground-truth file of the same sequence."""

    name: str
    pred_path: Path
    gt_path: Path


def _list_tracks(folder: Path, gt: bool) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(".txt"))
    if gt:
        with_suffix = [p for p in files if p.name.endswith(GT_SUFFIX)]
        return with_suffix or files
    return [p for p in files if not p.name.endswith(GT_SUFFIX)] or files


def match_sequences(pred: str | Path, gt: str | Path) -> list[SequencePair]:
    """Pair prediction and ground-truth files by sequence name.

    `pred` and `gt` are each a file or a folder. Names match exactly first, then loosely (frame
    range suffix and numeric prefix ignored). Every prediction must find its ground truth;
    ground truth without predictions is ignored (the predictions define the sequences, as in the
    reference benchmark).

    Raises:
        FileNotFoundError: a path does not exist or a folder holds no `.txt` files.
        ValueError: unmatched or ambiguous names (the message lists them).
    """
    pred, gt = Path(pred), Path(gt)
    for p, what in ((pred, "--pred"), (gt, "--gt")):
        if not p.exists():
            raise FileNotFoundError(f"{what} path not found: {p}")
    pred_files = _list_tracks(pred, gt=False) if pred.is_dir() else [pred]
    gt_files = _list_tracks(gt, gt=True) if gt.is_dir() else [gt]
    if not pred_files:
        raise FileNotFoundError(f"no prediction .txt files in {pred}")
    if not gt_files:
        raise FileNotFoundError(f"no ground-truth .txt files in {gt}")
    if not pred.is_dir() and not gt.is_dir():
        return [SequencePair(sequence_name(pred), pred, gt)]
    by_exact = {sequence_name(g): g for g in gt_files}
    by_loose: dict[str, list[Path]] = {}
    for g in gt_files:
        by_loose.setdefault(loose_name(sequence_name(g)), []).append(g)
    pairs, unmatched = [], []
    for p in pred_files:
        name = sequence_name(p)
        match = by_exact.get(name)
        if match is None:
            candidates = by_loose.get(loose_name(name), [])
            if len(candidates) > 1:
                raise ValueError(f"prediction {p.name} matches several ground-truth files: "
                                 + ", ".join(c.name for c in candidates))
            match = candidates[0] if candidates else None
        if match is None:
            unmatched.append(p.name)
        else:
            pairs.append(SequencePair(name, p, match))
    if unmatched:
        raise ValueError(
            "no ground truth for prediction file(s): " + ", ".join(unmatched)
            + "; ground-truth names available: " + ", ".join(g.name for g in gt_files))
    return pairs
