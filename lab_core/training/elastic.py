"""Elastic jobs: several ``torchrun`` agents ("nodes") that rendezvous through one store, lose a node, and
carry on with the ranks that are left.

Each agent runs ``torchrun --nnodes MIN:MAX`` against a c10d rendezvous whose TCP store lives in this
(launching) process, as it would on a stable head node or etcd: were an agent to host it, losing that
agent would lose the rendezvous too. When a node dies, the survivors' collectives fail, their agents
re-rendezvous with the nodes still there (at least MIN), restart their workers, and the workers resume
from the newest complete checkpoint on the new world size (DCP reshards; the loader's position is global).
"""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import torch.distributed as dist

from lab_core.procs import free_port, stop_process
from lab_core.training.config import TrainConfig
from lab_core.training.launch import RunInfo, prepare_run, torchrun_command, worker_args, worker_env


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (torchrun starts its workers in sessions of their own, so killing the
    agent's process group would leave them running)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@dataclass
class ElasticJob(RunInfo):
    """Agents of one elastic run, and the rendezvous store they share."""

    agents: list[subprocess.Popen] = field(default_factory=list)
    store: dist.TCPStore | None = None
    logs: list[Path] = field(default_factory=list)

    def kill_node(self, index: int) -> None:
        """SIGKILL agent ``index`` and its workers at once: a node lost mid-step."""
        agent = self.agents[index]
        for pid in [agent.pid, *_descendants(agent.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        agent.wait()

    def wait(self, timeout: float | None = None) -> list[int]:
        """Exit codes of every agent (killed ones included)."""
        return [agent.wait(timeout) for agent in self.agents]

    def stop(self) -> None:
        """Stop every agent and worker still running."""
        for agent in self.agents:
            for pid in _descendants(agent.pid):
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            stop_process(agent)


def start_elastic(
    config: TrainConfig,
    *,
    nodes: int = 2,
    min_nodes: int = 1,
    nproc_per_node: int = 1,
    workdir: Path | None = None,
    max_restarts: int = 3,
    run_name: str | None = None,
) -> ElasticJob:
    """Start ``nodes`` agents of ``nproc_per_node`` workers each, elastic between ``min_nodes`` and
    ``nodes``. The config is checked for every world size the job may shrink to."""
    if not 1 <= min_nodes <= nodes:
        raise ValueError(f"need 1 <= min_nodes <= nodes; got min_nodes={min_nodes}, nodes={nodes}")
    sizes = tuple(n * nproc_per_node for n in range(min_nodes, nodes + 1))
    workdir, run_dir, run_id, data_url = prepare_run(
        config, workdir=workdir, world_sizes=sizes, run_name=run_name or f"elastic-{config.strategy}"
    )
    port = free_port()
    store = dist.TCPStore(
        "127.0.0.1", port, is_master=True, multi_tenant=True, wait_for_workers=False, timeout=timedelta(seconds=60)
    )
    args = worker_args(run_dir, workdir, run_id, data_url)
    # last_call_timeout: how long a rendezvous that has MIN nodes waits for more; short, so a restart after
    # a lost node does not stall, but long enough for nodes started together to meet in the first round.
    cmd = torchrun_command(
        args,
        nproc=nproc_per_node,
        nnodes=f"{min_nodes}:{nodes}",
        rdzv_endpoint=f"127.0.0.1:{port}",
        rdzv_id=run_id,
        max_restarts=max_restarts,
        rdzv_conf="is_host=false,join_timeout=120,last_call_timeout=5",
    )
    agents, logs = [], []
    for i in range(nodes):
        log_path = run_dir / f"node{i}.log"
        with open(log_path, "ab") as log:
            agents.append(
                subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=worker_env(), start_new_session=True)
            )
        logs.append(log_path)
    return ElasticJob(run_id, workdir / "tracker.db", run_dir, config, agents, store, logs)
