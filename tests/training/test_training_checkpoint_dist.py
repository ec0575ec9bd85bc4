"""CheckpointManager across processes: a 2-rank FSDP2 job saves, then FSDP2, plain 2-rank and 1-process loads.

One torchrun launch does the distributed part (see dist_checkpoint_script.py); this process then
loads the same checkpoint with torch.distributed never initialised, i.e. resharding 2 -> 1.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.distributed.checkpoint.state_dict import get_state_dict

from lab_core.llm.model import build_model
from lab_core.procs import free_port
from lab_core.training.checkpoint import CheckpointManager

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("dist_checkpoint_script.py")


@pytest.fixture(scope="module")
def fsdp_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Checkpoints written by a 2-rank FSDP2 job (and the reference states it dumped)."""
    base = tmp_path_factory.mktemp("ckpt_dist")
    root, out = base / "ckpt", base / "out"
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        str(free_port()),
        str(SCRIPT),
        str(root),
        str(out),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-6000:]
    return root, out


def flat_state(model: torch.nn.Module, opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """The same naming as the script's reference dump."""
    msd, osd = get_state_dict(model, opt)
    flat = {f"model/{k}": v for k, v in msd.items()}
    for fqn, st in osd["state"].items():
        flat.update({f"optim/{fqn}/{k}": torch.as_tensor(v) for k, v in st.items()})
    flat["lr"] = torch.tensor([g["lr"] for g in osd["param_groups"]])
    return flat


def test_two_rank_fsdp_checkpoint_loads_in_one_plain_process(fsdp_run: tuple[Path, Path]) -> None:
    root, out = fsdp_run
    with CheckpointManager(root) as ckpt:
        assert [(i.step, i.world_size) for i in ckpt.list()] == [(2, 2), (3, 2)]
        for step in (3, 2):
            model = build_model("tiny", seed=21).train()
            opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1)
            state = ckpt.load(model, opt, step=step)
            assert (state.step, state.world_size, state.loader_state) == (step, 2, {"position": step * 8})
            want = torch.load(out / f"ref_step{step}.pt", weights_only=True)
            got = flat_state(model, opt)
            assert got.keys() == want.keys()
            for key, value in want.items():
                assert torch.equal(got[key], value), f"step {step}: {key}"
