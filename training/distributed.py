"""Data-parallel training across processes with PyTorch's own DistributedDataParallel (gloo
backend, CPU), launched by ``torchrun``: one process per rank, each training on its shard of the
users; gradients are averaged by DDP after every step, so all ranks hold the same weights.

    torchrun --nproc_per_node 2 --no-python demandstream train --data ... --format taobao

Multi-node: the same command on every node with ``--nnodes N --node_rank i
--rdzv_backend c10d --rdzv_endpoint HOST:PORT`` (see docs/model.md). Every rank reads the data
file and computes the same vocabularies, baselines and priors (deterministic), trains on users
``rank, rank + world, ...``, and scores validation on all users (the same number on every rank,
so early stopping agrees); rank 0 alone evaluates, exports and gates.
"""

from __future__ import annotations

import logging

import torch
import torch.distributed as dist
from torch import nn

log = logging.getLogger(__name__)


def init_from_launcher() -> None:
    """Join the process group when started by ``torchrun`` (its environment names the peers)."""
    if dist.is_available() and dist.is_torchelastic_launched() and not dist.is_initialized():
        dist.init_process_group("gloo")
        log.info("rank %d of %d joined the gloo process group", dist.get_rank(), dist.get_world_size())


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def wrap(model: nn.Module) -> nn.Module:
    """DDP around ``model`` in a distributed run, else ``model`` itself. The priors are buffers
    every rank computed identically, so they are not re-broadcast at every step."""
    if rank_and_world()[1] == 1:
        return model
    return nn.parallel.DistributedDataParallel(model, broadcast_buffers=False)


def min_across_ranks(n: int) -> int:
    """The smallest ``n`` of all ranks: every rank must take the same number of steps."""
    if rank_and_world()[1] == 1:
        return n
    value = torch.tensor([n], dtype=torch.int64)
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return int(value.item())


def finish() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
