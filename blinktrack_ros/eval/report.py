"""Tables of benchmark metrics: markdown (terminal and files), CSV, JSON-safe dicts."""

from __future__ import annotations

import csv
import math
from pathlib import Path

SUMMARY_KEYS = ("feature_age", "expected_feature_age", "inlier_ratio", "age_5", "te_5")
DELTA_KEYS = ("delta_vis", "delta_occ", "delta_all")
COLUMN_TITLES = {
    "feature_age": "FA", "expected_feature_age": "EFA", "inlier_ratio": "inliers",
    "age_5": "FA@5px", "te_5": "TE@5px [px]", "delta_vis": "δ_vis", "delta_occ": "δ_occ",
    "delta_all": "δ_all",
}
MEAN_ROW = "mean"


def table_keys(metrics: dict[str, dict]) -> list[str]:
    """The summary keys present in any of the metrics dicts, in the benchmark's order."""
    present = {k for m in metrics.values() for k in m}
    return [k for k in SUMMARY_KEYS + DELTA_KEYS if k in present]


def _fmt(value: object, digits: int) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.{digits}f}"
    return "" if value is None else str(value)


def markdown_table(rows: dict[str, dict], keys: list[str] | None = None, digits: int = 4,
                   first_column: str = "sequence") -> str:
    """A markdown table: one row per entry of `rows` (name -> metrics dict), one column per key."""
    keys = keys if keys is not None else table_keys(rows)
    header = [first_column] + [COLUMN_TITLES.get(k, k) for k in keys]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for name, metrics in rows.items():
        cells = [name] + [_fmt(metrics.get(k), digits) for k in keys]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sequence_table(result: dict, digits: int = 4) -> str:
    """Markdown table of one evaluation `{"sequences": {...}, "mean": {...}}`, mean row last."""
    rows = dict(result["sequences"])
    rows[MEAN_ROW] = result["mean"]
    return markdown_table(rows, table_keys(result["sequences"]), digits)


def json_safe(value: object) -> object:
    """Replace NaN/inf floats by None (strict JSON) recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_report(results: dict[str, dict], out_dir: str | Path, stem: str = "results"
                 ) -> tuple[Path, Path]:
    """Write the per-mode, per-sequence metrics as markdown and CSV.

    Args:
        results: mode -> `{"sequences": {name: metrics}, "mean": metrics}`.
        out_dir: output folder (created).
        stem: file name without extension.

    Returns:
        (markdown path, CSV path). The CSV has one row per (mode, sequence) including a `mean`
        row per mode, columns `mode, sequence` and the summary keys.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    keys = table_keys({f"{m}/{s}": v for m, r in results.items()
                       for s, v in r["sequences"].items()})
    md = ["# Feature tracking benchmark", ""]
    for mode, result in results.items():
        rows = dict(result["sequences"])
        rows[MEAN_ROW] = result["mean"]
        md += [f"## {mode}", "", markdown_table(rows, keys), ""]
    md += ["## mean over sequences, per mode", "",
           markdown_table({m: r["mean"] for m, r in results.items()}, keys, first_column="mode"),
           ""]
    md_path, csv_path = out_dir / f"{stem}.md", out_dir / f"{stem}.csv"
    md_path.write_text("\n".join(md))
    with csv_path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["mode", "sequence", *keys])
        for mode, result in results.items():
            rows = dict(result["sequences"])
            rows[MEAN_ROW] = result["mean"]
            for name, metrics in rows.items():
                writer.writerow([mode, name, *(_fmt(metrics.get(k), 6) for k in keys)])
    return md_path, csv_path
