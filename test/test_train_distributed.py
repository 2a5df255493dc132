"""Data-parallel training in torchrun's environment (RANK, WORLD_SIZE, MASTER_ADDR/PORT; gloo on
CPU): two processes, each drawing its own snippets, must end with the parameters of one process
that minimises the mean of the two processes' losses (the averaging DDP does)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from blinktrack_ros.models.event_net import load_event_net
from blinktrack_ros.train.data import Augment, DataSpec
from blinktrack_ros.train.trainer import (
    DistContext,
    TrainConfig,
    Trainer,
    draw,
    loss_of,
    rollout,
    set_mode,
)

SPEC = DataSpec("clean", duration_s=0.2, seeds=(3,))  # the CLI's size, 240x180
CFG = TrainConfig("event", 1, "lite", 2, 1e-3, 1, 4, ((0.0, 2),), 0, 0, 0, 0)
ARGS = ["--preset", "clean", "--duration", "0.2", "--train-seeds", "3", "--steps", "2",
        "--lr", "1e-3", "--snippets", "1", "--tracks", "4", "--unroll", "0:2", "--seed", "0",
        "--val-every", "0", "--ckpt-every", "0", "--fresh-every", "0", "--threads", "1"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _reference(cache, tmp_path, ranks: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """One process replaying the ranks' arithmetic: each step, every rank's gradient on its own
    data (one backward each, as each process computes it), summed in one float32 add and halved
    (what gloo's all_reduce and the division in Trainer._average_gradients do), on one torch
    thread like the child processes (--threads 1).

    Why so exact: Adam's first steps move each parameter by about lr * sign(g), so a gradient
    component that is zero up to rounding (there are many) flips its step with a one-ulp change.
    A reference that sums the two losses before one backward, or runs its kernels on two threads
    (another reduction order), ends up to ~2 lr = 2e-3 away (measured 5e-4 with torch's default
    thread count); a tolerance cannot separate that from a real error of the averaging.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _replay(cache, tmp_path, ranks)
    finally:
        torch.set_num_threads(threads)


def _replay(cache, tmp_path, ranks: tuple[int, ...]) -> dict[str, torch.Tensor]:
    ref = Trainer(CFG, SPEC, tmp_path / "ref", cache, progress=False)
    rngs = [np.random.default_rng([CFG.seed, r]) for r in ranks]
    losses = []
    for step in range(CFG.steps):
        set_mode(CFG, ref.net)
        flat, parts = None, []
        for rng in rngs:
            ref.opt.zero_grad(set_to_none=True)
            loss = loss_of(CFG, rollout(CFG, ref.net, draw(CFG, ref.seqs, rng,
                                                           CFG.unroll_at(step), CFG.snippets,
                                                           Augment(), CFG.tracks)))
            loss.backward()
            parts.append(loss.item())
            g = torch.cat([p.grad.reshape(-1) if p.grad is not None
                           else torch.zeros(p.numel()) for p in ref.params])
            flat = g if flat is None else flat + g
        losses.append(parts)
        if len(rngs) > 1:
            flat /= len(rngs)
        offset = 0
        for p in ref.params:
            p.grad = flat[offset:offset + p.numel()].view_as(p).clone()
            offset += p.numel()
        torch.nn.utils.clip_grad_norm_(ref.params, 1.0)
        ref.opt.step()
        ref.sched.step()
    if len(ranks) > 1:
        assert all(a != b for a, b in losses), "the ranks drew the same data"
    return {k: v.detach() for k, v in ref.net.named_parameters()}


@pytest.mark.slow
def test_two_processes_average_their_gradients(tmp_path) -> None:
    cache = tmp_path / "cache"  # empty: rank 0 fills it while rank 1 waits
    port, out = _free_port(), tmp_path / "ddp.pt"
    procs = []
    for rank in (0, 1):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2",
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
        argv = ["train", "event", "--run-dir", str(tmp_path / "run"), "--cache-dir", str(cache),
                *ARGS, *(["--export", str(out)] if rank == 0 else [])]
        procs.append(subprocess.Popen([sys.executable, "-m", "blinktrack_ros.cli", *argv],
                                      env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outs = [p.communicate(timeout=300)[0] for p in procs]
    for p, o in zip(procs, outs):
        assert p.returncode == 0, o
    assert '"processes": 2' in outs[0] and out.is_file()
    got = {k: v.detach() for k, v in load_event_net(out).named_parameters()}
    both = _reference(cache, tmp_path, (0, 1))
    rank0_only = _reference(cache, tmp_path, (0,))
    worst = max(float((got[k] - both[k]).abs().max()) for k in both)
    print(f"largest parameter difference to the one-process reference: {worst:.2e}")
    # the same float32 operations in the same order: equal up to a float32 rounding or two of
    # the largest parameter (|w| < 8: ulp <= 1e-6), far below the 2e-3 a missed average costs
    assert worst < 2e-6, worst
    # control: training on rank 0's data alone ends elsewhere (the averaging is what matched)
    assert max(float((got[k] - rank0_only[k]).abs().max()) for k in both) > 1e-4


def test_single_process_keeps_its_stream(tmp_path) -> None:
    """Without torchrun the data stream is seeded by cfg.seed alone, as before data-parallel
    training existed: the commands in weights/README.md draw the same snippets."""
    cache = tmp_path / "cache"
    tr = Trainer(CFG, SPEC, tmp_path / "run", cache, progress=False)
    assert tr.dist == DistContext()
    assert tr.rng.integers(1 << 30, size=4).tolist() == \
        np.random.default_rng(CFG.seed).integers(1 << 30, size=4).tolist()
