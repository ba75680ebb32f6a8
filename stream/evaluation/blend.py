"""The ``blend`` baseline computed live: the best offline baseline, so "model vs baseline, live"
compares the model with the strongest heuristic, not only with ``repeat``.

Offline (``training/baselines.py``) the blend scores every category as::

    repeat + a * long_repeat + b * markov[last category] + c * popularity + 1e-6 * popularity

with ``repeat`` and ``long_repeat`` the user's recency-weighted category counts (the tuned half-life
and a multi-day one), each normalised to sum 1, and ``markov`` the training period's first-order
transition probabilities from the user's last in-vocabulary category. The trainer saves the fitted
parts to ``<registry>/baselines/<version>.npz`` (``training/live_baseline.py``); this module loads
them with numpy alone (no scipy in the stream) and ranks one user at a time. Because both repeat
parts are normalised, decaying all of a user's scores by the same factor leaves the ranking
unchanged, so scores referred to the user's last event rank exactly as the offline ones referred to
the next event's time.
"""

from __future__ import annotations

import heapq
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

_FILL = 1e-6  # the trainer's popularity weight that breaks ties and fills short lists
_RESERVED = 2  # indices 0 (padding) and 1 (out of vocabulary) are never ranked


def baseline_path(registry_root: Path, version: str) -> Path:
    """Where the trainer saves a version's fitted blend baseline."""
    return registry_root / "baselines" / f"{version}.npz"


@dataclass
class BlendBaseline:
    """The fitted blend of one training run, ranking from a user's running state."""

    markov: float
    popularity_weight: float
    long_repeat: float
    long_half_life_h: float
    tokens: list[str]  # index -> category (indices 0 and 1 are placeholders)
    popularity: np.ndarray  # float64 per index
    indptr: np.ndarray  # the transition matrix, CSR
    indices: np.ndarray
    data: np.ndarray
    index: dict[str, int] = field(init=False)
    _by_popularity: list[int] = field(init=False)
    _rows: dict[int, dict[int, float]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.index = {t: i for i, t in enumerate(self.tokens) if i >= _RESERVED}
        order = np.argsort(-self.popularity, kind="stable")
        self._by_popularity = [int(i) for i in order if i >= _RESERVED]

    @classmethod
    def load(cls, path: Path) -> BlendBaseline:
        with np.load(path, allow_pickle=False) as saved:
            params = json.loads(str(saved["params"]))
            blend = params["blend"]
            return cls(
                markov=float(blend["markov"]), popularity_weight=float(blend["popularity"]),
                long_repeat=float(blend["long_repeat"]), long_half_life_h=float(blend["long_half_life_h"]),
                tokens=[str(t) for t in saved["tokens"]], popularity=saved["popularity"].astype(np.float64),
                indptr=saved["indptr"], indices=saved["indices"], data=saved["data"].astype(np.float64),
            )  # fmt: skip

    def _row(self, index: int) -> dict[int, float]:
        """Transition probabilities from ``index`` (cached: a row is read on every event)."""
        row = self._rows.get(index)
        if row is None:
            begin, end = int(self.indptr[index]), int(self.indptr[index + 1])
            row = self._rows[index] = dict(
                zip(self.indices[begin:end].tolist(), self.data[begin:end].tolist(), strict=True)
            )
        return row

    def rank(self, repeat: dict[str, float], long_repeat: dict[str, float], last: str | None, k: int) -> list[str]:
        """The top ``k`` categories for a user with these decayed counts and last category."""
        scores: dict[int, float] = {}
        index, pop = self.index, self.popularity
        for weights, scale in ((repeat, 1.0), (long_repeat, self.long_repeat)):
            total = sum(weights.values())
            if scale == 0.0 or total <= 0.0:
                continue
            factor = scale / total
            for category, w in weights.items():
                i = index.get(category)
                if i is not None:  # a category outside this run's vocabulary is never ranked
                    scores[i] = scores.get(i, 0.0) + w * factor
        previous = index.get(last) if last is not None else None
        if previous is not None and self.markov:
            for i, p in self._row(previous).items():
                scores[i] = scores.get(i, 0.0) + self.markov * p
        # Every other category scores (c + 1e-6) * popularity: the k most popular of them suffice.
        extra = 0
        for i in self._by_popularity:
            if extra >= k:
                break
            if i not in scores:
                scores[i] = 0.0
                extra += 1
        fill = self.popularity_weight + _FILL
        best = heapq.nlargest(k, scores, key=lambda i: scores[i] + fill * pop[i])
        return [self.tokens[i] for i in best]
