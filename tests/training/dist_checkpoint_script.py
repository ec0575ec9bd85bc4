"""Run under torchrun (2 ranks, gloo) by test_training_checkpoint_dist.py: save from FSDP2, load back three ways.

usage: dist_checkpoint_script.py ROOT OUT. Rank 0 writes OUT/ref_step{2,3}.pt (the full, unsharded
model and optimizer state at each save) for the parent test, which loads the checkpoint in a
plain single process and compares. Any failed check raises, so torchrun exits non-zero.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.optim.lr_scheduler import LambdaLR

from lab_core.llm.model import build_model
from lab_core.training.checkpoint import CheckpointManager


def schedule(step: int) -> float:
    return min(1.0, (step + 1) / 2) * 0.5 * (1 + math.cos(math.pi * min(step, 10) / 10))


def make(seed: int, mesh: object | None) -> tuple[torch.nn.Module, torch.optim.Optimizer, LambdaLR]:
    model = build_model("tiny", seed=seed).train()
    if mesh is not None:
        for block in model.layers:
            fully_shard(block, mesh=mesh)
        fully_shard(model, mesh=mesh)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1)
    return model, opt, LambdaLR(opt, schedule)


def train_step(model: torch.nn.Module, opt: torch.optim.Optimizer, sched: LambdaLR, step: int) -> None:
    gen = torch.Generator().manual_seed(1000 * step + dist.get_rank())
    x = torch.randint(0, 259, (2, 13), generator=gen)
    loss = model(x[:, :-1], x[:, 1:])
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()


def full_state(model: torch.nn.Module, opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """Unsharded model and optimizer tensors by name, cloned (collective under FSDP)."""
    msd, osd = get_state_dict(model, opt, options=StateDictOptions(full_state_dict=True))
    # Unsharded entries (Adam's step counter) come back as the live tensors that step() updates.
    flat = {f"model/{k}": v.detach().clone() for k, v in msd.items()}
    for fqn, st in osd["state"].items():
        flat.update({f"optim/{fqn}/{k}": torch.as_tensor(v).clone() for k, v in st.items()})
    flat["lr"] = torch.tensor([g["lr"] for g in osd["param_groups"]])
    return flat


def assert_same(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], what: str) -> None:
    assert got.keys() == want.keys(), (what, sorted(got.keys() ^ want.keys())[:5])
    for k in want:
        assert torch.equal(got[k].cpu(), want[k].cpu()), f"{what}: {k} differs"


def main(root: Path, out: Path) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    mesh = init_device_mesh("cpu", (world,))
    torch.manual_seed(rank)

    model, opt, sched = make(0, mesh)
    ckpt = CheckpointManager(root, keep_last=2)
    refs, rng_at_save = {}, {}
    for step in range(1, 5):
        train_step(model, opt, sched, step)
        if step in (2, 3):
            refs[step] = full_state(model, opt)
            rng_at_save[step] = torch.get_rng_state()
            ckpt.save(
                step, model, opt, scheduler=sched, loader_state={"position": step * 4 * world}, asynchronous=step == 3
            )
        # Step 4 runs while step 3's files are written: the checkpoint must still hold step 3.
    ckpt.wait()
    if rank == 0:
        for step, ref in refs.items():
            torch.save(ref, out / f"ref_step{step}.pt")
        infos = ckpt.list()
        assert [(i.step, i.world_size) for i in infos] == [(2, 2), (3, 2)], infos
        assert sorted(p.name for p in (infos[-1].path / "rng").iterdir()) == ["rank0.pt", "rank1.pt"]

    # Resume on the same layout: FSDP2 again, fresh weights; RNG streams come back per rank.
    model, opt, sched = make(7, mesh)
    torch.manual_seed(12345)
    state = ckpt.load(model, opt, scheduler=sched)
    assert (state.step, state.loader_state, state.world_size) == (3, {"position": 24}, 2), state
    assert torch.equal(torch.get_rng_state(), rng_at_save[3]), "rank RNG not restored"
    assert sched.last_epoch == 3
    assert_same(full_state(model, opt), refs[3], "fsdp2 -> fsdp2")

    # Every rank loads the sharded checkpoint into a whole, unwrapped model.
    for step in (3, 2):
        plain, plain_opt, plain_sched = make(11, None)
        ckpt.load(plain, plain_opt, scheduler=plain_sched, step=step, restore_rng=False)
        got = full_state(plain, plain_opt)
        assert_same(got, refs[step], f"fsdp2 -> plain on rank {rank}, step {step}")
        assert plain_sched.last_epoch == step

    # Only rank 0 commits; when that fails, every rank's wait() must raise rather than carry on.
    if rank == 0:

        def fail(*args: object) -> None:
            raise OSError("disk full")

        ckpt._commit = fail
    ckpt.save(5, model, opt, asynchronous=True)
    try:
        ckpt.wait()
    except (OSError, RuntimeError) as exc:
        assert "disk full" in str(exc) and (rank == 0 or "rank 0" in str(exc)), exc
    else:
        raise AssertionError("a failed commit went unnoticed")
    assert [i.step for i in ckpt.list()] == [2, 3]
    ckpt.close()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
