"""`blinktrack train event|image|evaluate`: staged training and per-network evaluation."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import time

DEFAULT_CACHE = Path.home() / ".cache" / "blinktrack" / "train"


def register(sub: argparse._SubParsersAction) -> None:
    """Add the train command and its event / image / evaluate sub-commands."""
    p = sub.add_parser("train", help="train the event or image network on synthetic data")
    tsub = p.add_subparsers(dest="train_what", metavar="WHAT")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
    for module in ("event", "image"):
        q = tsub.add_parser(module, help=f"train the {module} network")
        _common(q, module)
        q.set_defaults(func=_train, module=module)
    e = tsub.add_parser("evaluate", help="trained vs untrained rollouts on held-out sequences")
    e.add_argument("--event", type=Path, help="event weights to evaluate")
    e.add_argument("--image", type=Path, help="image weights to evaluate")
    e.add_argument("--preset", default="benchmark")
    e.add_argument("--seeds", default="0-3", help="seed range a-b (inclusive)")
    e.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=_evaluate)
    v = tsub.add_parser("validate", help="figures of weights on the fixed validation snippets "
                        "(seeds 500-503, what training validates on and ships by)")
    v.add_argument("weights", type=Path, nargs="+", help="event or image checkpoints")
    v.add_argument("--preset", default="train")
    v.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=_validate)


def _common(q: argparse.ArgumentParser, module: str) -> None:
    q.add_argument("--run-dir", type=Path, required=True, help="checkpoints and CSV logs")
    q.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="sequence cache")
    q.add_argument("--config", default="lite",
                   choices=("lite", "lite2", "lite3", "base", "paper", "patch", "patch3"),
                   help="network size (lite2/lite3/base: the compact designs, event only; "
                        "patch: the image patch tracker)")
    q.add_argument("--stage", type=int, default=1, choices=(1, 2) if module == "event" else (1,))
    q.add_argument("--steps", type=int, default=2000)
    q.add_argument("--lr", type=float, default=1e-3)
    q.add_argument("--snippets", type=int, default=4, help="snippets per batch")
    q.add_argument("--tracks", type=int, default=16, help="tracks per snippet")
    q.add_argument("--unroll", default="0:4,0.3:8,0.6:16",
                   help="unroll schedule frac:length,... (image: frames per snippet - 1)")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--train-seeds", default="1000-1023", help="sequence seeds a-b")
    q.add_argument("--preset", default="train", help="synth preset (never benchmark)")
    q.add_argument("--duration", type=float, default=0.5, help="sequence length in seconds")
    q.add_argument("--val-every", type=int, default=250)
    q.add_argument("--ckpt-every", type=int, default=100)
    q.add_argument("--keep-weights", action="store_true",
                   help="also export the weights at every checkpoint as "
                        "RUN_DIR/weights/step_NNNNNNN.pt (choose a step on validation later)")
    q.add_argument("--fresh-every", type=int, default=50)
    q.add_argument("--init", type=Path, help="start from these weights (stage 2: stage 1's)")
    q.add_argument("--init-partial", type=Path,
                   help="copy the tensors of these weights whose names and shapes match "
                        "(another size, e.g. the shipped lite encoder into lite2)")
    q.add_argument("--resume", action="store_true", help="continue from run-dir/last.pt")
    q.add_argument("--export", type=Path, help="write the final weights here")
    if module == "event":
        q.add_argument("--kalman-in-loop", action="store_true",
                       help="stage 1: centre patches on the Kalman prediction (inference path)")
        q.add_argument("--init-velocity", action="store_true",
                       help="with the filter in the loop: start it at the ground-truth "
                            "velocity plus noise (a tracker that has frames), not at zero")
        q.add_argument("--frame-updates", action="store_true",
                       help="with the filter in the loop: at each frame time set its position "
                            "to the ground truth plus 0.7 px noise (the e-klt / ei regime)")
    q.add_argument("--max-minutes", type=float, help="stop early after this wall time")
    q.add_argument("--minutes", type=float, default=0.0,
                   help="train for this wall time: the learning-rate schedule spans it "
                        "(--steps then only bounds the run)")
    q.add_argument("--amp", default="auto", choices=("auto", "bf16", "fp16", "none"),
                   help="mixed precision (auto: bf16 on CUDA, none on CPU)")
    q.add_argument("--photometric", action="store_true",
                   help="photometric augmentation (gamma, vignetting, blur, noise, JPEG)")
    q.add_argument("--mine", type=float, default=0.0,
                   help="hard-example mining: this share of each batch replays the snippets "
                        "tracked worst so far (train.mining; 0: off)")
    q.add_argument("--mine-pool", type=int, default=64, help="snippets kept for --mine")
    q.add_argument("--mine-replays", type=int, default=3,
                   help="times a snippet may be replayed by --mine")
    q.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    q.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")


def seed_range(text: str) -> tuple[int, ...]:
    """'a-b' -> (a, ..., b); 'a,b,c' -> (a, b, c)."""
    from blinktrack_ros.cli import UsageError

    try:
        if "-" in text:
            a, b = (int(v) for v in text.split("-"))
            return tuple(range(a, b + 1))
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"bad seed list {text!r}: use a-b or a,b,c") from None


def _unroll(text: str) -> tuple[tuple[float, int], ...]:
    from blinktrack_ros.cli import UsageError

    try:
        out = tuple((float(f), int(n)) for f, n in (p.split(":") for p in text.split(",")))
    except ValueError:
        raise UsageError(f"bad --unroll {text!r}: use frac:length,... e.g. 0:4,0.5:8") from None
    if not out or out[0][0] != 0 or min(n for _, n in out) < 1:
        raise UsageError("--unroll must start at fraction 0 with lengths >= 1")
    return out


def _train(args: argparse.Namespace) -> int:
    import torch

    from blinktrack_ros.cli import UsageError
    from blinktrack_ros.train.data import DataSpec
    from blinktrack_ros.train.trainer import (
        TrainConfig,
        Trainer,
        close_distributed,
        distributed_from_env,
    )

    if args.preset == "benchmark":
        raise UsageError("the benchmark preset is the test split: train on --preset train")
    if not 0.0 <= args.mine < 1.0 or args.mine_pool < 1 or args.mine_replays < 1:
        raise UsageError("--mine must be in [0, 1) (some of each batch stays fresh), "
                         "--mine-pool and --mine-replays >= 1")
    if args.stage == 2 and args.init is None and not args.resume:
        raise UsageError("stage 2 starts from stage-1 weights: give --init FILE")
    if args.resume and not (args.run_dir / "last.pt").is_file():
        raise UsageError(f"--resume: {args.run_dir / 'last.pt'} not found (fix: drop --resume, "
                         "or give the --run-dir of the interrupted run)")
    if args.init is not None and not args.init.is_file():
        raise UsageError(f"--init {args.init}: no such file (fix: give weights written by "
                         "`blinktrack train ... --export`)")
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = TrainConfig(args.module, args.stage, args.config, args.steps, args.lr, args.snippets,
                      args.tracks, _unroll(args.unroll), args.seed, args.val_every,
                      args.ckpt_every, args.fresh_every,
                      kalman_in_loop=getattr(args, "kalman_in_loop", False),
                      minutes=args.minutes, photometric=args.photometric, amp=args.amp,
                      init_velocity=getattr(args, "init_velocity", False),
                      frame_updates=getattr(args, "frame_updates", False),
                      mine=args.mine, mine_pool=args.mine_pool, mine_replays=args.mine_replays)
    spec = DataSpec(args.preset, duration_s=args.duration, seeds=seed_range(args.train_seeds))
    t0 = time.time()
    dist, device = distributed_from_env(args.device)  # torchrun: one process per GPU
    if args.init_partial is not None and not args.init_partial.is_file():
        raise UsageError(f"--init-partial {args.init_partial}: no such file")
    tr = Trainer(cfg, spec, args.run_dir, args.cache_dir, args.init, device, dist=dist,
                 init_partial=args.init_partial, keep_weights=args.keep_weights)
    if tr.init_partial is not None:
        print(f"--init-partial: copied {tr.init_partial[0]} of {tr.init_partial[1]} tensors")
    if args.resume:
        tr.resume()
    if dist.main:  # the record of every run: command, seed, start
        import sys

        with (args.run_dir / "runs.jsonl").open("a") as f:
            f.write(json.dumps({"argv": sys.argv[1:], "seed": args.seed, "device": device,
                                "start_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                           time.gmtime()),
                                "resumed_at_step": tr.step}) + "\n")
    deadline = t0 + 60 * args.max_minutes if args.max_minutes else None
    val = tr.run(deadline)
    wall = time.time() - t0
    close_distributed()
    if not dist.main:  # rank 0 reports and exports
        return 0
    print(json.dumps({"step": tr.step, "wall_s": round(wall, 1), "processes": dist.world,
                      **val}))
    if args.export:
        from blinktrack_ros.train.trainer import save_net

        args.export.parent.mkdir(parents=True, exist_ok=True)
        save_net(cfg, tr.net.cpu(), args.export,
                 {"train_config": repr(cfg), "steps_done": tr.step, "wall_s": wall,
                  "validation": val})
        print(f"wrote {args.export}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from blinktrack_ros.cli import UsageError
    from blinktrack_ros.models.checkpoint import CheckpointError
    from blinktrack_ros.train.trainer import validate_file

    if args.preset == "benchmark":
        raise UsageError("the benchmark preset is the test split: validate on --preset train")
    out = {}
    for path in args.weights:
        if not path.is_file():
            raise UsageError(f"{path}: no such file")
        import torch

        try:
            payload = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is a usage error
            raise UsageError(f"{path}: not a readable checkpoint ({exc})") from None
        kind = payload.get("kind") if isinstance(payload, dict) else None
        module = {"event_net": "event", "image_net": "image"}.get(kind)
        if module is None:
            raise UsageError(f"{path}: not an event or image network checkpoint ({kind})")
        try:
            out[str(path)] = {"module": module,
                              **validate_file(module, path, args.cache_dir, args.preset)}
        except CheckpointError as exc:
            raise UsageError(str(exc)) from None
    if args.json:
        print(json.dumps(out))
    else:
        for name, row in out.items():
            print(name, " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                 for k, v in row.items()))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from blinktrack_ros.cli import UsageError
    from blinktrack_ros.train.evaluate import evaluate_weights

    for flag, path in (("--event", args.event), ("--image", args.image)):
        if path is not None and not path.is_file():
            raise UsageError(f"{flag} {path}: no such file (fix: give weights written by "
                             "`blinktrack train ... --export`, e.g. weights/event_lite3.pt)")

    figures = evaluate_weights(args.event, args.image, args.preset, seed_range(args.seeds),
                               args.cache_dir)
    if args.json:
        print(json.dumps(figures))
    else:
        for name, row in figures.items():
            print(name, " ".join(f"{k}={v:.3f}" for k, v in row.items()))
    return 0
