"""The sparse transition prior (training/priors.py): top-m rows as serving scatters them, and the
leave-user-out values training reads at the targets."""

from __future__ import annotations

import itertools

import numpy as np
import scipy.sparse as sp

from training.cli import train as train_command
from training.priors import SparsePrior, counted_transitions
from training.split import TEST, TRAIN
from training.train import TrainConfig


def _counts(pairs: list[tuple[int, int]], n: int) -> sp.csr_matrix:
    rows, cols = zip(*pairs, strict=True)
    return sp.csr_matrix((np.ones(len(pairs)), (rows, cols)), shape=(n, n))


def _dense(prior: SparsePrior) -> np.ndarray:
    out = np.zeros((prior.n_targets, prior.n_targets), dtype=np.float32)
    np.add.at(out, (np.arange(prior.n_targets)[:, None], prior.idx), prior.val)
    return out


def test_rows_keep_their_top_m_entries_over_the_full_row_total() -> None:
    pairs = [(2, 3)] * 5 + [(2, 4)] * 3 + [(2, 5)] * 2 + [(3, 2)]
    prior = SparsePrior.from_counts(_counts(pairs, 6), np.array([0, 0, 0.4, 0.3, 0.2, 0.1]), m=2)
    dense = _dense(prior)
    np.testing.assert_allclose(dense[2], [0, 0, 0, 0.5, 0.3, 0])  # 0.2 of row 2 cut with entry 5
    np.testing.assert_allclose(dense[3], [0, 0, 1.0, 0, 0, 0])
    np.testing.assert_allclose(dense[4], [0, 0, 0.4, 0.3, 0, 0])  # empty row: popularity's top 2
    np.testing.assert_allclose(prior.at(np.array([2, 2, 4]), np.array([3, 5, 2])), [0.5, 0.0, 0.4])


def test_leave_user_out_values_equal_counting_the_other_users_only() -> None:
    n = 7
    mine = np.array([2, 3, 2, 3, 2, 4])  # transitions 2->3 (x2), 3->2 (x2), 2->4, all in training
    others = [(2, 5), (2, 3), (3, 4), (4, 2), (2, 6)]
    my_pairs = [(int(a), int(b)) for a, b in itertools.pairwise(mine)]
    popularity = np.full(n, 1.0 / n)
    prior = SparsePrior.from_counts(_counts(others + my_pairs, n), popularity, m=n)
    theirs = SparsePrior.from_counts(_counts(others, n), popularity, m=n)
    own = (np.zeros(len(my_pairs), np.int64), *(np.array(c, np.int64) for c in zip(*my_pairs, strict=True)))
    rows = np.repeat(np.arange(2, n), n - 2)
    targets = np.tile(np.arange(2, n), n - 2)
    users = np.zeros(len(rows), np.int64)
    loo = prior.leave_user_out_at(users, rows, targets, *own)
    np.testing.assert_allclose(loo, theirs.at(rows, targets), atol=1e-6)


def test_counted_transitions_skip_oov_and_other_periods() -> None:
    tokens = np.array([2, 1, 3, 2, 3, 4, 5])
    periods = np.array([TRAIN, TRAIN, TRAIN, TEST, TRAIN, TRAIN, TRAIN], dtype=np.int8)
    starts = np.array([0, 5, 7])  # users [2, 1, 3, 2, 3] and [4, 5]
    users, prev, succ = counted_transitions(tokens, periods, starts)
    assert list(zip(users.tolist(), prev.tolist(), succ.tolist(), strict=True)) == [(0, 2, 3), (0, 2, 3), (1, 4, 5)]


def test_a_row_left_empty_falls_back_to_popularity() -> None:
    popularity = np.array([0.0, 0.0, 0.5, 0.25, 0.25])
    prior = SparsePrior.from_counts(_counts([(2, 3)], 5), popularity, m=5)
    loo = prior.leave_user_out_at(
        np.array([0, 0]), np.array([2, 2]), np.array([2, 3]), np.array([0]), np.array([2]), np.array([3])
    )
    np.testing.assert_allclose(loo, [0.5, 0.25])


def test_cli_defaults_are_the_training_defaults() -> None:
    defaults = {p.name: p.default for p in train_command.params}
    assert defaults["epochs"] == TrainConfig.epochs
    assert defaults["lr"] == TrainConfig.lr
