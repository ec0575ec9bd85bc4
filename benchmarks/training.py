"""Lab 08 figures: gradient parity of the parallel strategies, their throughput on two CPU processes,
async against sync checkpoints, exact resume after a crash, and (on a GPU) model FLOPs utilisation.

``syslab bench training [--quick]`` runs ``run(quick)``. Every training job is a real ``torchrun``
launch through ``lab_core.training.launch.run`` on the demo dataset (BPE vocabulary 512), one thread
per rank (``OMP_NUM_THREADS=1``), with CUDA hidden from the CPU jobs so the figures mean the same on a
machine that has a GPU.

1. **Gradient parity** (``python -m lab_core.training.parity`` on 2 ranks): one global batch through
   DDP, FSDP2, tensor parallelism and the pipeline, against one process on the whole batch (the
   script's reference); the largest per-tensor relative difference of the gradients. fp32 target
   ``value <= 1e-5`` (only summation order differs); bf16 is reported without a target (autocast
   rounds differently once the work is split). Quick mode: fp32 only.
2. **Throughput** of DDP, FSDP2, TP and PP on 2 processes against strategy "single" on 1 process
   with the same per-rank micro-batch: the trainer's logged tokens/s (tokens of the whole step over
   its wall time), median over the steps after a few warm-up steps. DDP and FSDP compare equal work
   per process (the global batch doubles); TP and PP split the one global batch of the baseline.
   No target: on 2 cores the ideal ratio is 2, and the gap is communication and idle time.
   Quick mode: the tiny model, DDP only.
3. **Async vs sync checkpoint** (``CheckpointManager``, one process, the "100m" preset with AdamW
   state after one step): time the training thread is blocked per save, median of 3 each after one
   untimed save of each kind (the async stager allocates its buffers once); target ratio < 0.2.
   Plus the committed checkpoint's bytes against the fp32 weights (about 3: weights, Adam m and v)
   and against ``calculators.checkpoint_bytes``. Quick mode: the "small" preset.
4. **Resume exactness**: a 2-rank DDP fp32 job that checkpoints every k steps and dies after step
   k + 2 (``fail_at_step``; torchrun restarts it once and it resumes from step k) against the same
   job uninterrupted: the largest |loss difference| over the steps after the checkpoint (the resumed
   run re-logs them into the tracker, overwriting); target ``value <= 0`` (bit-exact).
5. **GPU MFU** (only with CUDA): a one-process bf16 job of the "100m" preset; model FLOP/s (the
   trainer's 6N + attention count per token times tokens/s) against the GPU's bf16 dense datasheet
   peak, so the ratio is the MFU.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from lab_core.bench import Figure, machine_note
from lab_core.llm.config import get_config
from lab_core.llm.model import build_model
from lab_core.procs import free_port
from lab_core.training.calculators import checkpoint_bytes
from lab_core.training.checkpoint import CheckpointManager
from lab_core.training.config import TrainConfig
from lab_core.training.launch import run as launch_run
from lab_core.training.launch import worker_env
from lab_core.training.parallel import datasheet_peak
from lab_core.training.tracker import Tracker

STRATEGY_LABELS = {"ddp": "DDP", "fsdp": "FSDP2", "tp": "TP", "pp": "PP"}


def _say(msg: str) -> None:
    print(f"  {msg}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _cpu_jobs() -> Iterator[None]:
    """Launch workers on the CPU, one thread each: the worker takes ``cuda:LOCAL_RANK`` whenever CUDA is
    visible, which a 2-rank job on a 1-GPU machine does not have."""
    saved = {k: os.environ.get(k) for k in ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS")}
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# ----------------------------------------------------------------------------- 1. gradient parity


def _parity(quick: bool) -> list[Figure]:
    strategies = list(STRATEGY_LABELS)
    precisions = ["fp32"] if quick else ["fp32", "bf16"]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        str(free_port()),
        "-m",
        "lab_core.training.parity",
        "--strategies",
        ",".join(strategies),
        "--precisions",
        ",".join(precisions),
    ]
    with _cpu_jobs():
        proc = subprocess.run(cmd, capture_output=True, text=True, env=worker_env(), timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"gradient parity run failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"gradient parity run printed no JSON line:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    result = json.loads(lines[-1])
    machine_note("training_parity", result)
    what = "tiny model, global batch 8 x 32 tokens, 2 micro-batches, 2 ranks"
    out = []
    for precision in precisions:
        for strategy in strategies:
            out.append(
                Figure(
                    f"gradient parity {STRATEGY_LABELS[strategy]} {precision}: max relative gradient difference ({what})",
                    result[strategy][precision],
                    "relative",
                    baseline="one process on the whole batch (parity reference)",
                    target="value <= 1e-5" if precision == "fp32" else None,
                )
            )
    return out


# ----------------------------------------------------------------------------- 2. throughput


def _tokens_per_s(config: TrainConfig, workdir: Path, nproc: int, warmup: int) -> float:
    """Median tokens/s over the steps after ``warmup`` of one launched job."""
    with _cpu_jobs():
        job = launch_run(
            config,
            workdir=workdir,
            nproc=nproc,
            progress=False,
            timeout=600,
            run_name=f"bench-{config.strategy}-x{nproc}",
        )
    frame = Tracker(job.tracker_path).wide(job.run_id)
    rates = frame.loc[frame["step"] > warmup, "tokens_per_s"].dropna()
    if rates.empty:
        raise RuntimeError(f"run {job.run_id} logged no tokens_per_s after step {warmup}")
    return float(rates.median())


def _throughput(quick: bool, workdir: Path) -> list[Figure]:
    if quick:
        model, seq_len, micro, steps, warmup, strategies = "tiny", 64, 8, 6, 2, ["ddp"]
    else:
        model, seq_len, micro, steps, warmup, strategies = "small", 128, 8, 12, 3, list(STRATEGY_LABELS)

    def config(strategy: str) -> TrainConfig:
        return TrainConfig(
            model=model,
            strategy=strategy,
            steps=steps,
            seq_len=seq_len,
            micro_batch=micro,
            warmup_steps=2,
            checkpoint_every=0,
        )

    base = _tokens_per_s(config("single"), workdir, 1, warmup)
    _say(f"throughput: single x1 {base:.0f} tok/s")
    rates = {}
    for strategy in strategies:
        rates[strategy] = _tokens_per_s(config(strategy), workdir, 2, warmup)
        _say(f"throughput: {strategy} x2 {rates[strategy]:.0f} tok/s")
    machine_note(
        "training_throughput",
        {
            "model": model,
            "seq_len": seq_len,
            "micro_batch": micro,
            "steps": steps,
            "warmup_steps_skipped": warmup,
            "tokens_per_s": {"single": round(base, 1), **{k: round(v, 1) for k, v in rates.items()}},
        },
    )
    baseline = f"strategy single, 1 process, {micro} x {seq_len} tokens per step"
    out = []
    for strategy, rate in rates.items():
        if strategy in ("ddp", "fsdp"):
            how = f"same work per process: {micro} seqs each, global batch {2 * micro}"
        else:
            how = f"same global batch of {micro} seqs split over the 2 processes"
        out.append(
            Figure(
                f"training tokens/s, {STRATEGY_LABELS[strategy]} on 2 CPU processes vs 1 process "
                f"({model} model, seq {seq_len}; {how})",
                rate,
                "tok/s",
                baseline=baseline,
                baseline_value=base,
            )
        )
    return out


# ----------------------------------------------------------------------------- 3. async vs sync checkpoint


def _checkpoint(quick: bool, workdir: Path) -> list[Figure]:
    preset = "small" if quick else "100m"
    cfg = get_config(preset)
    model = build_model(cfg, seed=0).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randint(0, cfg.vocab_size, (1, 17), generator=torch.Generator().manual_seed(0))
    model(x[:, :-1], x[:, 1:]).backward()
    optimizer.step()  # creates Adam's m and v, so the checkpoint carries the full optimizer state
    optimizer.zero_grad(set_to_none=True)
    blocked: dict[bool, list[float]] = {False: [], True: []}
    step = 0
    with CheckpointManager(workdir / f"ckpt-{preset}", keep_last=1) as manager:
        for rnd in range(4):  # round 0 is the untimed warm-up of each kind
            for asynchronous in (False, True) if rnd % 2 == 0 else (True, False):
                step += 1
                t0 = time.perf_counter()
                manager.save(step, model, optimizer, asynchronous=asynchronous)
                held = time.perf_counter() - t0
                manager.wait()
                if rnd:
                    blocked[asynchronous].append(held)
        info = manager.list()[-1]
    sync_s, async_s = statistics.median(blocked[False]), statistics.median(blocked[True])
    n = cfg.num_params()
    machine_note(
        "training_checkpoint",
        {
            "model": preset,
            "params": n,
            "sync_blocked_s": [round(t, 4) for t in blocked[False]],
            "async_blocked_s": [round(t, 4) for t in blocked[True]],
            "checkpoint_bytes": info.bytes,
        },
    )
    what = f"{preset} preset, {n / 1e6:.1f}M params, fp32 weights + AdamW m, v; median of 3"
    return [
        Figure(
            f"checkpoint: training thread blocked per save, async ({what})",
            async_s * 1e3,
            "ms",
            baseline="synchronous save (write, fsync, hash, commit)",
            baseline_value=sync_s * 1e3,
            target="< 0.2",
        ),
        Figure(
            f"checkpoint bytes on disk vs the fp32 weights ({preset} preset, AdamW)",
            info.bytes,
            "bytes",
            baseline="fp32 weights (4 bytes x params)",
            baseline_value=4 * n,
        ),
        Figure(
            f"checkpoint bytes on disk vs calculators.checkpoint_bytes ({preset} preset, AdamW)",
            info.bytes,
            "bytes",
            baseline="checkpoint_bytes (params x 4 bytes x 3)",
            baseline_value=checkpoint_bytes(cfg),
        ),
    ]


# ----------------------------------------------------------------------------- 4. resume exactness


def _resume(quick: bool, workdir: Path) -> list[Figure]:
    if quick:
        config = TrainConfig(
            model="tiny", strategy="ddp", steps=6, seq_len=64, micro_batch=8, warmup_steps=2, checkpoint_every=2
        )
    else:
        config = TrainConfig(
            model="small", strategy="ddp", steps=10, seq_len=128, micro_batch=8, warmup_steps=2, checkpoint_every=4
        )
    k = config.checkpoint_every
    with _cpu_jobs():
        crashed = launch_run(
            config,
            workdir=workdir,
            nproc=2,
            progress=False,
            timeout=600,
            fail_at_step=k + 2,
            max_restarts=1,
            run_name="bench-resume-crashed",
        )
        straight = launch_run(
            config, workdir=workdir, nproc=2, progress=False, timeout=600, run_name="bench-resume-uninterrupted"
        )
    # torchrun logs the injected death before restarting; without it the comparison proves nothing.
    failures = crashed.log_path.read_text(errors="replace").count("failed (exitcode: 1)")
    if failures < 1:
        raise RuntimeError(
            f"run {crashed.run_id} shows no worker failure: the fault was not injected\n{crashed.log_tail()}"
        )
    a = Tracker(crashed.tracker_path).wide(crashed.run_id).set_index("step")["loss"]
    b = Tracker(straight.tracker_path).wide(straight.run_id).set_index("step")["loss"]
    after = list(range(k + 1, config.steps + 1))
    missing = [s for s in after if s not in a.index or s not in b.index]
    if missing:
        raise RuntimeError(f"steps {missing} have no logged loss in runs {crashed.run_id} / {straight.run_id}")
    diff = max(abs(float(a[s]) - float(b[s])) for s in after)
    machine_note(
        "training_resume",
        {
            "model": config.model,
            "steps": config.steps,
            "checkpoint_every": k,
            "fail_at_step": k + 2,
            "worker_failures_logged": failures,
            "loss_resumed": [float(a[s]) for s in after],
            "loss_uninterrupted": [float(b[s]) for s in after],
        },
    )
    return [
        Figure(
            f"resume exactness: max |loss difference| over steps {k + 1}-{config.steps} after a crash at step "
            f"{k + 2} and resume from step {k} ({config.model} model, DDP x2, fp32)",
            diff,
            "loss",
            baseline="the same job uninterrupted",
            target="value <= 0",
        )
    ]


# ----------------------------------------------------------------------------- 5. GPU MFU


def _gpu_mfu(workdir: Path) -> list[Figure]:
    device = torch.device("cuda")
    name = torch.cuda.get_device_name(device)
    peak = datasheet_peak(name)
    if peak is None:
        machine_note("gpu_mfu", f"{name}: no bf16 datasheet peak in lab_core.llm.gpus; MFU left out")
        return []
    config = TrainConfig(
        model="100m",
        strategy="single",
        precision="bf16",
        steps=30,
        seq_len=1024,
        micro_batch=8,
        warmup_steps=5,
        checkpoint_every=0,
    )
    job = launch_run(config, workdir=workdir, nproc=1, progress=False, timeout=600, run_name="bench-gpu-mfu")
    frame = Tracker(job.tracker_path).wide(job.run_id)
    mfu = float(frame.loc[frame["step"] > 5, "mfu"].median())
    machine_note("gpu_mfu", {"device": name, "mfu": round(mfu, 4)})
    return [
        Figure(
            f"GPU model FLOP/s, 100m preset, bf16, 8 x 1024 tokens per step, 1 process ({name})",
            mfu * peak / 1e12,
            "TFLOP/s",
            baseline=f"{name} bf16 dense peak (datasheet)",
            baseline_value=peak / 1e12,
        )
    ]


# ----------------------------------------------------------------------------- run


def run(quick: bool) -> list[Figure]:
    """The figures; quick mode shrinks the models and steps and leaves out bf16 parity and TP/FSDP/PP throughput."""
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="syslab-bench-training-") as tmp:
        workdir = Path(tmp)
        for label, part in (
            ("gradient parity", lambda: _parity(quick)),
            ("throughput", lambda: _throughput(quick, workdir)),
            ("checkpoint", lambda: _checkpoint(quick, workdir)),
            ("resume", lambda: _resume(quick, workdir)),
        ):
            t0 = time.perf_counter()
            figures += part()
            _say(f"{label}: {time.perf_counter() - t0:.1f} s")
        if torch.cuda.is_available():
            figures += _gpu_mfu(workdir)
        else:
            machine_note("gpu_mfu", "no CUDA device on this machine; run on the device machine")
    return figures
