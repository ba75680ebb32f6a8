"""The leave-user-out transition prior the network trains with (training/priors.py)."""

from __future__ import annotations

import itertools

import numpy as np
import scipy.sparse as sp
import torch

from training.cli import train as train_command
from training.priors import LeaveUserOutPrior, own_transitions
from training.split import TEST, TRAIN
from training.train import TrainConfig

Flat = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _flat(own: tuple[np.ndarray, np.ndarray, np.ndarray]) -> Flat:
    """One batch row's own transitions in the flat form ``Batch.own`` holds."""
    pos, succ, n = (torch.from_numpy(a) for a in own)
    return torch.zeros_like(pos), pos, succ, n


def _counts(pairs: list[tuple[int, int]], n: int) -> sp.csr_matrix:
    rows, cols = zip(*pairs, strict=True)
    return sp.csr_matrix((np.ones(len(pairs)), (rows, cols)), shape=(n, n))


def test_rows_without_the_users_own_transitions_equal_counting_the_others_only() -> None:
    n = 6
    mine = np.array([2, 3, 2, 3, 2, 4])  # transitions 2->3 (x2), 3->2 (x2), 2->4, all in training
    periods = np.full(len(mine), TRAIN)
    others = [(2, 5), (2, 3), (3, 4), (4, 2)]
    my_pairs = [(int(a), int(b)) for a, b in itertools.pairwise(mine)]
    prior = LeaveUserOutPrior.from_counts(_counts(others + my_pairs, n), np.full(n, 1.0 / n))
    own = own_transitions(mine, periods)
    rows = prior.rows(torch.from_numpy(mine)[None], _flat(own))[0]
    expected = _counts(others, n).toarray()
    expected = expected / expected.sum(axis=1, keepdims=True).clip(min=1)
    for t, category in enumerate(mine):
        np.testing.assert_allclose(rows[t].numpy(), expected[category], atol=1e-6)


def test_transitions_outside_the_training_period_are_not_subtracted() -> None:
    cats = np.array([2, 3, 2, 3])
    own = own_transitions(cats, np.array([TRAIN, TEST, TEST, -1]))
    assert [(int(t), int(c), int(n)) for t, c, n in zip(*own, strict=True)] == [(0, 3, 1), (2, 3, 1)]


def test_a_row_left_empty_falls_back_to_popularity() -> None:
    popularity = np.array([0.0, 0.0, 0.5, 0.25, 0.25])
    prior = LeaveUserOutPrior.from_counts(_counts([(2, 3)], 5), popularity)
    own = own_transitions(np.array([2, 3]), np.array([TRAIN, -1]))
    rows = prior.rows(torch.tensor([[2, 3]]), _flat(own))
    np.testing.assert_allclose(rows[0, 0].numpy(), popularity)


def test_cli_defaults_are_the_training_defaults() -> None:
    defaults = {p.name: p.default for p in train_command.params}
    assert defaults["epochs"] == TrainConfig.epochs
    assert defaults["lr"] == TrainConfig.lr
