"""Session-based nearest-neighbour baselines (the strong simple methods of the session-rec
benchmarks: Ludewig & Jannach 2018), on sparse matrices so they scale with events, not V x V.

A *session* is a run of one user's events without a gap over ``SESSION_GAP_MS``. The training
sessions (training-period events only) form a sparse binary session x target matrix ``S``.

* ``item_knn``: cosine co-occurrence of targets within training sessions, each row cut to its
  ``TOP_NEIGHBOURS`` most similar targets; a query is scored by the row of the last target before
  it (the target itself excluded: repeat is its own baseline).
* ``sknn`` (V-SKNN): the current session (the events of the newest session before the query, the
  newest ``MAX_SESSION`` of them) weighted linearly by recency, its dot-product similarity to
  every training session, the ``K_SESSIONS`` most similar kept, and each target scored by the sum
  of their similarities over the sessions that hold it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from training.data.encoded import EncodedEvents

SESSION_GAP_MS: Final = 30 * 60 * 1000
TOP_NEIGHBOURS: Final = 100
K_SESSIONS: Final = 100
MAX_SESSION: Final = 20
_CELLS: Final = 4_000_000  # query x session similarities held densely at once

Ints = NDArray[np.int64]


def session_ids(data: EncodedEvents) -> Ints:
    """Session number of every position: a new one at each user's start and after a long gap."""
    n = len(data)
    new = np.ones(n, dtype=bool)
    if n > 1:
        new[1:] = (np.diff(data.ts) > SESSION_GAP_MS) | (data.history_len[1:] == 0)
    return np.cumsum(new) - 1


def top_per_row(matrix: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the ``k`` largest entries of each row (ties: lower column)."""
    matrix = sp.csr_matrix(matrix)
    rows = np.repeat(np.arange(matrix.shape[0], dtype=np.int64), np.diff(matrix.indptr))
    order = np.lexsort((matrix.indices, -matrix.data, rows))
    rank = np.arange(len(rows), dtype=np.int64) - matrix.indptr[rows[order]]
    keep = order[rank < k]
    return sp.csr_matrix((matrix.data[keep], (rows[keep], matrix.indices[keep])), shape=matrix.shape)


@dataclass
class SessionKnn:
    """Fitted item-kNN similarities and the training session matrix."""

    similar: sp.csr_matrix  # (V, V) cosine, top rows only
    sessions: sp.csr_matrix  # (training sessions, V) binary
    session_of: Ints  # session number per position
    session_start: Ints  # first position of each session number

    @classmethod
    def fit(cls, data: EncodedEvents) -> SessionKnn:
        session_of = session_ids(data)
        n_sessions = int(session_of[-1]) + 1 if len(data) else 0
        session_start = np.flatnonzero(np.r_[True, np.diff(session_of) != 0]) if len(data) else np.zeros(0, np.int64)
        fit = data.fit_mask() & (data.target >= 2)
        v = data.n_classes
        matrix = sp.csr_matrix(
            (np.ones(int(fit.sum())), (session_of[fit], data.target[fit])), shape=(max(n_sessions, 1), v)
        )
        matrix.sum_duplicates()
        matrix.data[:] = 1.0  # binary: a session holds a target or not
        kept = np.flatnonzero(np.diff(matrix.indptr) > 0)
        sessions = sp.csr_matrix(matrix[kept])
        counts = np.asarray(sessions.sum(axis=0)).ravel()
        co = sp.csr_matrix(sessions.T @ sessions)
        co.setdiag(0.0)
        co.eliminate_zeros()
        co = sp.coo_matrix(co)
        cosine = co.data / np.sqrt(counts[co.row] * counts[co.col])
        similar = top_per_row(sp.csr_matrix((cosine, (co.row, co.col)), shape=(v, v)), TOP_NEIGHBOURS)
        return cls(similar, sessions, session_of, session_start)

    def item_knn(self, data: EncodedEvents, prev_target: Ints, queries: Ints) -> NDArray[np.float64]:
        """Dense ``(len(queries), V)`` scores."""
        return np.asarray(self.similar[prev_target[queries]].toarray(), dtype=np.float64)

    def sknn(self, data: EncodedEvents, queries: Ints) -> NDArray[np.float64]:
        """Dense ``(len(queries), V)`` V-SKNN scores."""
        last = queries - 1  # the newest event before each query (queries have history >= 1)
        first = np.maximum(self.session_start[self.session_of[last]], queries - MAX_SESSION)
        lengths = queries - first
        row = np.repeat(np.arange(len(queries), dtype=np.int64), lengths)
        offsets = np.cumsum(lengths) - lengths
        position = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(offsets, lengths)
        hist = np.repeat(first, lengths) + position
        weight = (position + 1) / np.repeat(lengths, lengths)  # linear decay: newest weighs 1
        tokens = data.target[hist]
        keep = tokens >= 2
        current = sp.csr_matrix((weight[keep], (row[keep], tokens[keep])), shape=(len(queries), data.n_classes))
        return np.asarray((self._neighbours(current) @ self.sessions).toarray(), dtype=np.float64)

    def _neighbours(self, current: sp.csr_matrix) -> sp.csr_matrix:
        """Similarity to the ``K_SESSIONS`` most similar training sessions per row, sparse; computed
        densely a few rows at a time (at most ``_CELLS`` similarities at once)."""
        n_sessions = self.sessions.shape[0]
        k = min(K_SESSIONS, n_sessions)
        step = max(1, _CELLS // max(n_sessions, 1))
        rows, cols, vals = [], [], []
        for begin in range(0, current.shape[0], step):
            dense = np.asarray((current[begin : begin + step] @ self.sessions.T).toarray())
            top = np.argpartition(-dense, k - 1, axis=1)[:, :k]
            rows.append(np.repeat(np.arange(begin, begin + len(dense)), k))
            cols.append(top.ravel())
            vals.append(np.take_along_axis(dense, top, axis=1).ravel())
        if not rows:
            return sp.csr_matrix((current.shape[0], n_sessions))
        return sp.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(current.shape[0], n_sessions)
        )
