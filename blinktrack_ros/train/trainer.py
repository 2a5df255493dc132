"""The training loop: Adam + one-cycle schedule, seeded, resumable, CSV logs, validation.

Data-parallel training on several processes (GPUs, or CPU processes with gloo) when started by
`torchrun` (its RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT environment): every process draws
its own snippets (its own random stream), the gradients are averaged over the processes before
each optimiser step (what DistributedDataParallel computes; the module wrapper itself does not
fit the unrolled rollout, which calls the network many times per step), so the weights stay
identical everywhere; only rank 0 writes logs, checkpoints and runs the validation.

One `TrainConfig` describes one run (event stage 1, event stage 2, or the image module). The run
directory holds `last.pt` (everything needed to resume exactly: weights, optimiser, scheduler,
step, data random state, torch random state), `train.csv` (one row per step) and `val.csv`
(validation figures from `blinktrack_ros.eval.metrics` on held-out seeds).
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
import os
from pathlib import Path
import time

import numpy as np
import torch
from torch import distributed as tdist
from tqdm import tqdm

from blinktrack_ros.models.event_config import EventNetConfig
from blinktrack_ros.models.event_net import EventNet, load_event_net, save_event_net
from blinktrack_ros.models.image_config import config_by_name
from blinktrack_ros.models.image_net import ImageNet, load_image_net, save_image_net
from blinktrack_ros.train.data import (
    Augment,
    CachedSequence,
    DataSpec,
    load_or_generate,
    sample_snippets,
)
from blinktrack_ros.train.event_rollout import WINDOW_NS, RolloutResult, event_rollout
from blinktrack_ros.train.image_rollout import image_rollout
from blinktrack_ros.train.mining import HardPool, snippet_difficulty
from blinktrack_ros.train.validate import rollout_metrics

VAL_SEEDS = tuple(range(500, 504))  # held out: never in a training DataSpec


@dataclass(frozen=True)
class TrainConfig:
    """One training run.

    Attributes:
        module: "event" or "image".
        stage: event module stage (1: displacement, 2: uncertainty head); 1 for image.
        config: network size name ("lite" or "paper").
        steps: optimiser steps.
        lr: peak learning rate of the one-cycle schedule.
        snippets: snippets per batch; tracks: tracks per snippet.
        unroll: ((fraction of steps, unroll length), ...) schedule, fractions ascending from 0.
        seed: seeds the data draws and the initialisation.
        val_every, ckpt_every: steps between validations / checkpoints (0: only at the end).
        fresh_every: steps between replacing one training sequence by a new one (0: never).
        val_snippets: validation snippets (fixed, no augmentation).
        val_unroll: validation steps per snippet.
        kalman_in_loop: event stage 1 centres the patches on the Kalman prediction (as at
            inference) instead of on the last observation (self-rollout); stage 2 always does.
        minutes: > 0: the learning-rate schedule runs over this wall time (one-cycle shape
            over the larger of step / steps and elapsed / minutes) and the run stops there;
            0: the one-cycle schedule over `steps`.
        photometric: photometric augmentation of the frames (`train.photometric`); off by
            default so that the commands of the earlier shipped weights draw the same data.
        amp: mixed precision "bf16" / "fp16" (CUDA), "none", or "auto" (bf16 on CUDA, none
            elsewhere).
        vis_weight: weight of the visibility loss in stage 1 of the compact event network
            (its displacement and visibility outputs share the trunk and train together).
        init_velocity: event training rollouts start the filter at the ground-truth velocity
            plus noise (`event_rollout`); validation keeps the zero start.
        frame_updates: event training rollouts set the filter's position to the noisy ground
            truth at each frame time (`event_rollout`); validation keeps events only.
        mine: share of each batch replayed from the pool of the hardest earlier snippets
            (`train.mining`; 0: off); mine_pool: its size; mine_replays: replays per snippet.
    """

    module: str = "event"
    stage: int = 1
    config: str = "lite"
    steps: int = 2000
    lr: float = 1e-3
    snippets: int = 4
    tracks: int = 16
    unroll: tuple[tuple[float, int], ...] = ((0.0, 4), (0.3, 8), (0.6, 16))
    seed: int = 0
    val_every: int = 250
    ckpt_every: int = 100
    fresh_every: int = 50
    val_snippets: int = 8
    val_unroll: int = 16
    kalman_in_loop: bool = False
    minutes: float = 0.0
    photometric: bool = False
    amp: str = "auto"
    vis_weight: float = 0.5
    init_velocity: bool = False
    frame_updates: bool = False
    mine: float = 0.0
    mine_pool: int = 64
    mine_replays: int = 3

    def unroll_at(self, step: int, done: float | None = None) -> int:
        """Unroll length at this step, or at this fraction of the run `done` (a --minutes run
        advances its schedule with the wall time: `Trainer.done_fraction`)."""
        done = step / max(self.steps, 1) if done is None else done
        length = self.unroll[0][1]
        for frac, n in self.unroll:
            if done >= frac:
                length = n
        return length


def new_net(cfg: TrainConfig) -> EventNet | ImageNet:
    """An untrained network of the run's module and size."""
    if cfg.module == "event":
        from blinktrack_ros.models.event_config import CONFIGS

        if cfg.config not in CONFIGS:
            raise ValueError(f"unknown event config {cfg.config!r}: {sorted(CONFIGS)}")
        return EventNet(CONFIGS[cfg.config]())
    return ImageNet(config_by_name(cfg.config))


def load_net(cfg: TrainConfig, path: str | Path) -> EventNet | ImageNet:
    """Network weights from an exported file (e.g. stage 1 for stage 2)."""
    return load_event_net(path) if cfg.module == "event" else load_image_net(path)


def load_partial(net: EventNet | ImageNet, path: str | Path) -> tuple[int, int]:
    """Copy the tensors of a checkpoint of another size or architecture whose names and shapes
    match (e.g. the shipped lite image encoder into lite2); returns (copied, total) tensors."""
    from blinktrack_ros.models.checkpoint import load_checkpoint
    from blinktrack_ros.models.image_config import ImageNetConfig

    kind, cls = ("event_net", EventNetConfig) if isinstance(net, EventNet) else (
        "image_net", ImageNetConfig)
    _, src, _ = load_checkpoint(path, kind, cls)
    own = net.state_dict()
    same = {k: v for k, v in src.items() if k in own and own[k].shape == v.shape}
    for k, v in src.items():  # a k x k convolution into a smaller odd kernel: its centre taps
        w = own.get(k)
        if k in same or w is None or w.dim() != 4 or v.dim() != 4 or w.shape[:2] != v.shape[:2]:
            continue
        (kh, kw), (sh, sw) = w.shape[2:], v.shape[2:]
        if kh % 2 and kw % 2 and sh % 2 and sw % 2 and kh <= sh and kw <= sw:
            top, left = (sh - kh) // 2, (sw - kw) // 2
            same[k] = v[:, :, top:top + kh, left:left + kw].clone()
    own.update(same)
    net.load_state_dict(own)
    return len(same), len(own)


def save_net(cfg: TrainConfig, net: EventNet | ImageNet, path: str | Path,
             extra: dict | None = None) -> None:
    """Export the weights as a checkpoint loadable by load_event_net / load_image_net."""
    (save_event_net if cfg.module == "event" else save_image_net)(path, net, extra)


def trainable(cfg: TrainConfig, net: EventNet | ImageNet) -> list[torch.nn.Parameter]:
    """Parameters optimised in this run (stage 2: the visibility head only)."""
    if cfg.module == "event" and cfg.stage == 2:
        for p in net.parameters():
            p.requires_grad_(False)
        for p in net.visibility.parameters():
            p.requires_grad_(True)
        return list(net.visibility.parameters())
    return list(net.parameters())


def set_mode(cfg: TrainConfig, net: EventNet | ImageNet) -> None:
    """train() mode, with frozen parts in eval() (BatchNorm statistics stay fixed)."""
    if cfg.module == "event" and cfg.stage == 2:
        net.eval()
        net.visibility.train()
    else:
        net.train()


def draw(cfg: TrainConfig, seqs: list[CachedSequence], rng: np.random.Generator, n_steps: int,
         n_snippets: int, aug: Augment, tracks: int) -> list:
    """Snippets for the run's module: 10 ms event windows, or consecutive frames."""
    if cfg.module == "event":
        return sample_snippets(seqs, rng, n_snippets, n_tracks=tracks, n_steps=n_steps,
                               step_ns=WINDOW_NS, aug=aug, with_events=True)
    period = int(seqs[0].frame_times_ns[1] - seqs[0].frame_times_ns[0])
    return sample_snippets(seqs, rng, n_snippets, n_tracks=tracks, n_steps=n_steps,
                           step_ns=period, aug=aug, with_events=False, n_frames=n_steps + 1)


def rollout(cfg: TrainConfig, net: EventNet | ImageNet, snippets: list) -> RolloutResult:
    """Event rollout (filter in the loop from stage 2 on) or image rollout (always)."""
    if cfg.module == "event":
        r = event_rollout(net, snippets, kalman_in_loop=cfg.stage == 2 or cfg.kalman_in_loop,
                          init_velocity=cfg.init_velocity, frame_updates=cfg.frame_updates)
        r.compact = net.config.arch == "compact"
        return r
    return image_rollout(net, snippets)


def loss_of(cfg: TrainConfig, r: RolloutResult) -> torch.Tensor:
    """The optimised loss: stage 1 displacement, stage 2 visibility, image both."""
    if cfg.module == "event":
        if cfg.stage == 2:
            return r.loss_vis
        return r.loss_disp + cfg.vis_weight * r.loss_vis if compact(r) else r.loss_disp
    return r.loss_disp + r.loss_vis


def compact(r: RolloutResult) -> bool:
    """Whether the rollout came from a compact event network (set by `rollout`)."""
    return bool(getattr(r, "compact", False))


def amp_dtype(cfg: TrainConfig, device: str) -> torch.dtype | None:
    """The autocast dtype of the run on this device (None: full precision)."""
    mode = cfg.amp
    if mode == "auto":
        mode = "bf16" if str(device).startswith("cuda") else "none"
    if mode not in ("bf16", "fp16", "none"):
        raise ValueError(f"amp must be auto, bf16, fp16 or none, got {cfg.amp!r}")
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mode)


def schedule_factor(progress: float, pct_start: float = 0.1) -> float:
    """One-cycle shape over progress in [0, 1]: linear warm-up from 1/25, cosine to 1/2500."""
    import math

    p = min(max(progress, 0.0), 1.0)
    if p < pct_start:
        return 0.04 + 0.96 * p / pct_start
    q = (p - pct_start) / (1.0 - pct_start)
    return 4e-4 + (1.0 - 4e-4) * 0.5 * (1.0 + math.cos(math.pi * q))


def validate(cfg: TrainConfig, net: EventNet | ImageNet, snippets: list, width: int,
             height: int) -> dict[str, float]:
    """Metrics of an inference-mode rollout (Kalman filter in the loop) on fixed snippets."""
    was = net.training
    net.eval()
    with torch.no_grad():
        if cfg.module == "event":
            r = event_rollout(net, snippets, kalman_in_loop=True)
        else:
            r = image_rollout(net, snippets)
    net.train(was)
    out = rollout_metrics(r, width, height)
    out.update(loss_disp=float(r.loss_disp), loss_vis=float(r.loss_vis))
    return out


def validation_snippets(cfg: TrainConfig, preset: str, cache_dir: str | Path | None,
                        progress: bool = False) -> tuple[list, int, int]:
    """The fixed validation snippets of a run (VAL_SEEDS, no augmentation, seed 12345)."""
    spec = DataSpec(preset, seeds=VAL_SEEDS)
    seqs = load_or_generate(spec, cache_dir, progress)
    rng = np.random.default_rng(12345)
    n_steps = cfg.val_unroll if cfg.module == "event" else 8
    snippets = draw(cfg, seqs, rng, n_steps, cfg.val_snippets, Augment.none(), 32)
    return snippets, *seqs[0].size


def validate_file(module: str, path: str | Path, cache_dir: str | Path | None,
                  preset: str = "train") -> dict[str, float]:
    """Validation figures of saved weights on the snippets every run validates on."""
    cfg = TrainConfig(module=module)
    net = load_net(cfg, path)
    snippets, w, h = validation_snippets(cfg, preset, cache_dir)
    return validate(cfg, net, snippets, w, h)


def _append_csv(path: Path, row: dict) -> None:
    new = not path.is_file()
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)


@dataclass(frozen=True)
class DistContext:
    """This process's place in a data-parallel run (rank 0 of 1: a single process)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def distributed_from_env(device: str) -> tuple[DistContext, str]:
    """(DistContext, device) of a process started by torchrun: joins the process group (nccl for
    CUDA, gloo for CPU) and picks cuda:LOCAL_RANK; a plain process gets (rank 0 of 1, device)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(), device
    if device.startswith("cuda"):
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(device)
    if not tdist.is_initialized():
        tdist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return DistContext(tdist.get_rank(), tdist.get_world_size()), device


def close_distributed() -> None:
    """Leave the process group (after a barrier) where one was joined: a process that exits
    with gloo's threads still running can abort ("terminate called without an active
    exception", seen once in CI after every step had finished)."""
    if tdist.is_available() and tdist.is_initialized():
        tdist.barrier()
        tdist.destroy_process_group()


class Trainer:
    """Holds the network, optimiser, schedule and data state of one run."""

    def __init__(self, cfg: TrainConfig, train_spec: DataSpec, run_dir: str | Path,
                 cache_dir: str | Path | None, init: str | Path | None = None,
                 device: str = "cpu", progress: bool = True, dist: DistContext | None = None,
                 init_partial: str | Path | None = None, keep_weights: bool = False):
        """keep_weights: at every checkpoint also export the network as
        run_dir/weights/step_NNNNNNN.pt (a checkpoint `load_event_net` / `load_image_net`
        reads), so any step can be validated and shipped later, not only last and best."""
        self.keep_weights = keep_weights
        self.dist = dist or DistContext()
        progress = progress and self.dist.main
        self.cfg, self.spec, self.device, self.progress = cfg, train_spec, device, progress
        if train_spec.preset == "benchmark":
            raise ValueError("never train on the benchmark preset")
        if set(train_spec.seeds) & set(VAL_SEEDS):
            raise ValueError(f"training seeds overlap the validation seeds {VAL_SEEDS}")
        self.run_dir, self.cache_dir = Path(run_dir), cache_dir
        self.run_dir.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(cfg.seed)
        self.net = load_net(cfg, init) if init else new_net(cfg)
        self.init_partial = None
        if init_partial:
            self.init_partial = load_partial(self.net, init_partial)
        self.net = self.net.to(device)
        self.baseline = bool(init or init_partial)  # validate the start weights first
        self.params = trainable(cfg, self.net)
        self.opt = torch.optim.Adam(self.params, lr=cfg.lr)
        self.step = 0
        self.elapsed_s = 0.0  # training wall time so far (resumed runs included)
        if cfg.minutes > 0:
            self.sched = torch.optim.lr_scheduler.LambdaLR(
                self.opt, lambda _: schedule_factor(self.done_fraction()))
        else:
            self.sched = torch.optim.lr_scheduler.OneCycleLR(
                self.opt, max_lr=cfg.lr, total_steps=max(cfg.steps, 1), pct_start=0.1)
        self.amp = amp_dtype(cfg, device)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp == torch.float16 else None
        self.best = float("-inf")
        self.rng = self._rank_rng()
        self.pool = HardPool(cfg.mine_pool, cfg.mine_replays) if cfg.mine > 0 else None
        self.seq_seeds = list(train_spec.seeds)
        # fresh sequences: seeds base + rank, base + rank + world, ... (no two ranks alike)
        self.next_fresh = 100_000 + 1000 * cfg.seed + self.dist.rank
        # several processes: rank 0 fills the sequence cache, the others then read it
        self._barrier(not self.dist.main)
        self.seqs = load_or_generate(train_spec, cache_dir, progress)
        self._barrier(self.dist.main)
        self._val = None
        if self.dist.world > 1:  # the same start everywhere (also with --init)
            for t in self.net.state_dict().values():
                tdist.broadcast(t, 0)

    def _barrier(self, here: bool) -> None:
        """Wait for the other processes (one call per process on each side)."""
        if here and self.dist.world > 1:
            tdist.barrier()

    def _rank_rng(self, *extra: int) -> np.random.Generator:
        """The data stream of this process (a single process: seeded by cfg.seed alone)."""
        if self.dist.world == 1 and not extra:
            return np.random.default_rng(self.cfg.seed)
        return np.random.default_rng([self.cfg.seed, self.dist.rank, *extra])

    def done_fraction(self) -> float:
        """Fraction of the run done: steps, or wall time for a --minutes run."""
        done = self.step / max(self.cfg.steps, 1)
        if self.cfg.minutes > 0:
            done = max(done, self.elapsed_s / (60.0 * self.cfg.minutes))
        return done

    def _val_data(self) -> tuple[list, int, int]:
        if self._val is None:
            spec = DataSpec(self.spec.preset, self.spec.width, self.spec.height,
                            self.spec.duration_s, VAL_SEEDS)
            seqs = load_or_generate(spec, self.cache_dir, self.progress)
            rng = np.random.default_rng(12345)
            n_steps = self.cfg.val_unroll if self.cfg.module == "event" else 8
            snippets = draw(self.cfg, seqs, rng, n_steps, self.cfg.val_snippets,
                            Augment.none(), 32)
            self._val = (snippets, *seqs[0].size)
        return self._val

    def state(self) -> dict:
        """Everything needed to resume exactly."""
        return {"cfg": asdict(self.cfg), "step": self.step, "net": self.net.state_dict(),
                "opt": self.opt.state_dict(), "sched": self.sched.state_dict(),
                "rng": self.rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                "seq_seeds": self.seq_seeds, "next_fresh": self.next_fresh,
                "elapsed_s": self.elapsed_s, "best": self.best,
                "scaler": self.scaler.state_dict() if self.scaler is not None else {}}

    def save(self) -> Path:
        """Write run_dir/last.pt atomically (and the step's weights with keep_weights)."""
        path = self.run_dir / "last.pt"
        torch.save(self.state(), path.with_suffix(".tmp"))
        path.with_suffix(".tmp").replace(path)
        if self.keep_weights:
            kept = self.run_dir / "weights" / f"step_{self.step:07d}.pt"
            kept.parent.mkdir(exist_ok=True)
            save_net(self.cfg, self.net, kept, {"train_config": repr(self.cfg),
                                                "steps_done": self.step})
        return path

    def resume(self, path: str | Path | None = None) -> None:
        """Restore the state saved by `save` (default run_dir/last.pt)."""
        path = path or self.run_dir / "last.pt"
        st = torch.load(path, map_location=self.device, weights_only=True)
        if st["cfg"] != asdict(self.cfg):
            raise ValueError("checkpoint was written by a different TrainConfig")
        self.net.load_state_dict(st["net"])
        self.opt.load_state_dict(st["opt"])
        self.sched.load_state_dict(st["sched"])
        self.rng.bit_generator.state = st["rng"]
        torch.set_rng_state(st["torch_rng"])
        self.step, self.next_fresh = st["step"], st["next_fresh"]
        self.elapsed_s = float(st.get("elapsed_s", 0.0))
        self.best = float(st.get("best", float("-inf")))
        if self.scaler is not None and st.get("scaler"):
            self.scaler.load_state_dict(st["scaler"])
        if self.dist.world > 1:
            # rank 0's file: every rank continues on a new stream of its own (data-parallel
            # resumes are not bit-exact; single-process ones are)
            self.rng = self._rank_rng(self.step)
            self.next_fresh += self.dist.rank
        if st["seq_seeds"] != self.seq_seeds:
            self.seq_seeds = list(st["seq_seeds"])
            spec = DataSpec(self.spec.preset, self.spec.width, self.spec.height,
                            self.spec.duration_s, tuple(self.seq_seeds))
            self.seqs = load_or_generate(spec, self.cache_dir, self.progress)

    def train_step(self) -> dict[str, float]:
        """One optimiser step on a freshly drawn batch; returns the logged figures."""
        cfg = self.cfg
        t0 = time.time()
        set_mode(cfg, self.net)
        n_steps = cfg.unroll_at(self.step, self.done_fraction())
        replayed = [] if self.pool is None else self.pool.take(
            int(round(cfg.mine * cfg.snippets)), n_steps + 1)
        snippets = draw(cfg, self.seqs, self.rng, n_steps, cfg.snippets - len(replayed),
                        Augment(), cfg.tracks) if len(replayed) < cfg.snippets else []
        if cfg.photometric:
            from dataclasses import replace

            from blinktrack_ros.train.photometric import augment_frames

            snippets = [replace(s, frames=augment_frames(s.frames, self.rng)) for s in snippets]
        n_fresh = len(snippets)
        snippets = snippets + [s for s, _ in replayed]
        device_type = torch.device(self.device).type
        with torch.autocast(device_type, dtype=self.amp or torch.float32,
                            enabled=self.amp is not None):
            r = rollout(cfg, self.net, snippets)
            loss = loss_of(cfg, r)
        self.opt.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.opt)
        else:
            loss.backward()
        if self.dist.world > 1:
            self._average_gradients()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        if self.scaler is not None:
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            self.opt.step()
        if self.dist.world > 1:  # BatchNorm running statistics: rank 0's, as DDP broadcasts
            for b in self.net.buffers():
                tdist.broadcast(b, 0)
        self.step += 1
        mined = {}
        if self.pool is not None:
            diff = snippet_difficulty(r.positions, r.gt_xy, r.gt_vis,
                                      [s.xy.shape[1] for s in snippets])
            for i, s in enumerate(snippets):
                self.pool.add(s, diff[i], 0 if i < n_fresh else replayed[i - n_fresh][1] + 1)
            mined = {"mined": len(replayed), "pool_difficulty_px": self.pool.mean_difficulty()}
        seconds = time.time() - t0
        self.elapsed_s += seconds  # before the schedule step: a --minutes schedule reads it
        self.sched.step()
        return {"step": self.step, "seconds": seconds, "elapsed_s": self.elapsed_s,
                "lr": self.sched.get_last_lr()[0], "unroll": n_steps,
                "loss": loss.item(), "loss_disp": r.loss_disp.item(),
                "loss_vis": r.loss_vis.item(), "valid_frac": r.valid_frac, **mined}

    def _average_gradients(self) -> None:
        """All-reduce the gradients to their mean over the processes (one flat buffer)."""
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        tdist.all_reduce(flat)
        flat /= self.dist.world
        offset = 0
        for p, g in zip(self.params, grads):
            p.grad = flat[offset:offset + g.numel()].view_as(g)
            offset += g.numel()

    def _refresh(self) -> None:
        """On-the-fly variety: replace one training sequence by a newly generated one."""
        i = int(self.rng.integers(len(self.seqs)))
        seed = self.next_fresh
        self.next_fresh += self.dist.world
        spec = DataSpec(self.spec.preset, self.spec.width, self.spec.height,
                        self.spec.duration_s, (seed,))
        self.seqs[i] = load_or_generate(spec, self.cache_dir, progress=False)[0]
        self.seq_seeds[i] = seed

    def run(self, deadline: float | None = None) -> dict[str, float]:
        """Train to cfg.steps (or until the time.time() deadline); returns the last validation."""
        cfg, val = self.cfg, {}
        if self.dist.main and self.step == 0 and self.baseline:
            val = self.validate_now()  # the starting weights: best.pt must beat them
        bar = tqdm(total=cfg.steps, initial=self.step, desc=f"train {cfg.module}",
                   disable=not self.progress)
        while self.step < cfg.steps:
            row = self.train_step()
            main = self.dist.main
            if main:
                _append_csv(self.run_dir / "train.csv", row)
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss']:.3f}", unroll=row["unroll"])
            if cfg.fresh_every and self.step % cfg.fresh_every == 0:
                self._refresh()
            if main and cfg.val_every and self.step % cfg.val_every == 0:
                val = self.validate_now()
            if main and cfg.ckpt_every and self.step % cfg.ckpt_every == 0:
                self.save()
            if self._stop(deadline) or (cfg.minutes > 0 and self.done_fraction() >= 1.0):
                break
        bar.close()
        if not self.dist.main:
            return {}
        self.save()
        return val if val.get("step") == self.step else self.validate_now()

    def _stop(self, deadline: float | None) -> bool:
        """The deadline passed (on rank 0's clock: every process stops at the same step)."""
        late = deadline is not None and time.time() > deadline
        if self.dist.world == 1:
            return late
        flag = torch.tensor([1.0 if late and self.dist.main else 0.0], device=self.device)
        tdist.broadcast(flag, 0)
        return bool(flag.item())

    def validate_now(self) -> dict[str, float]:
        """Validate, append the figures to val.csv and return them."""
        snippets, w, h = self._val_data()
        val = {"step": self.step, "elapsed_s": round(self.elapsed_s, 1),
               **validate(self.cfg, self.net, snippets, w, h)}
        _append_csv(self.run_dir / "val.csv", val)
        score = val.get("feature_age", float("nan"))
        if score == score and score > self.best:  # best validation so far: best.pt
            self.best = score
            save_net(self.cfg, self.net, self.run_dir / "best.pt",
                     {"train_config": repr(self.cfg), "steps_done": self.step,
                      "validation": val})
        return val
