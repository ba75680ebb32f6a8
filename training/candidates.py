"""Top-k over the candidates the experts can give, without a vocabulary-wide vector.

Every expert of :class:`~training.model.DemandLSTM` without a learned generator puts mass on a
few known entries only: the pointer window (W), the two prior rows (m each) and the popularity
row (m). The dense serving graph scatters them into a ``(N, V)`` zero vector and takes its
top-k, so its cost grows with the vocabulary (bench/vocab_bench.py). Here the ``C = W + 3m``
(index, value) pairs are summed per distinct index instead: sort by index, number the runs of
equal indices (a cumulative sum of run starts), scatter-add the values into a C-wide vector by
run number, and take the top-k of that. The cost depends on ``C`` only. The mass summed for an
index is the dense vector's entry for it, up to float32 summation order (parity <= 1e-4).
"""

from __future__ import annotations

import torch
from torch import Tensor

CANDIDATE_MIN_TARGETS = 10_000
"""From this many targets the serving graph scores candidates instead of a dense vector; below,
the dense scatter + top-k is cheaper (docs/model.md, bench/vocab_bench.py)."""


def sparse_top_k(index: Tensor, values: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Top-``k`` of ``sum(values where index == i)`` over each row's distinct ``i``.

    ``index``/``values`` are ``(N, C)`` with ``values >= 0``; returns scores and indices ``(N, k)``.
    A row with fewer than ``k`` distinct indices pads with score 0 and index 0 (padding), like a
    dense top-k over zeros. ``k <= C``.
    """
    sorted_idx, order = torch.sort(index, dim=-1)
    first = torch.ones_like(sorted_idx[:, :1], dtype=torch.bool)
    is_start = torch.cat([first, sorted_idx[:, 1:] != sorted_idx[:, :-1]], dim=-1)
    run = torch.cumsum(is_start.to(torch.int64), dim=-1) - 1  # each position's run (distinct index) number
    # Runs sum into a C-wide vector (not V-wide): the dense graph's scatter on a small scale.
    totals = torch.zeros_like(values).scatter_add(-1, run, values.gather(-1, order))
    ids = torch.zeros_like(sorted_idx).scatter_add(-1, run, sorted_idx * is_start)
    top, at = torch.topk(totals, k, dim=-1)
    return top, ids.gather(-1, at)
