"""Generate training/validation sequences into a cache directory in parallel processes.

python tools/pregen.py CACHE_DIR PRESET DURATION_S SEEDS(a-b) [JOBS]
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
import sys
import time


def _one(args: tuple[str, str, float, int]) -> int:
    import torch

    torch.set_num_threads(1)
    from blinktrack_ros.train.data import DataSpec, load_or_generate

    cache, preset, duration, seed = args
    load_or_generate(DataSpec(preset, duration_s=duration, seeds=(seed,)), cache, False)
    return seed


def main() -> int:
    cache, preset, duration = sys.argv[1], sys.argv[2], float(sys.argv[3])
    a, b = (int(v) for v in sys.argv[4].split("-"))
    jobs = int(sys.argv[5]) if len(sys.argv) > 5 else 4
    t0 = time.time()
    with ProcessPoolExecutor(jobs) as pool:
        done = list(pool.map(_one, [(cache, preset, duration, s) for s in range(a, b + 1)]))
    print(f"pregen {preset} {len(done)} sequences in {time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
