"""Strong simple baselines, fitted on training-period events only, scored on exactly the
evaluated events the model sees.

* ``popularity``: the most frequent training categories, for everyone.
* ``repeat``: the user's own earlier categories by recency-weighted frequency: each past event
  counts ``type_weight * 2 ** (-age / half_life)``, its age taken at the scored event's time.
* ``markov``: first-order transitions from the category of the user's last event.
* ``item_knn`` and ``sknn`` (V-SKNN): the session-based nearest-neighbour baselines of
  ``training/session_knn.py``.
* ``blend``: ``repeat + a * long-term repeat + b * markov + c * popularity`` on normalised
  scores; the long-term repeat is the same score with a multi-day half-life, so the blend sees
  both what the user is doing now and what they keep coming back to.

Half-life, type weights and blend weights are tuned on the validation period (MRR@10). Every
method breaks ties and fills its list with popularity (a tiny weight), so each ranks a full top-k;
indices 0 (padding) and 1 (out of vocabulary) are never ranked.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Final

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from stream.contracts import EVENT_TYPES
from training.data.encoded import EncodedEvents
from training.session_knn import SessionKnn
from training.split import VALID

logger = logging.getLogger(__name__)

METHODS: Final[tuple[str, ...]] = ("popularity", "repeat", "markov", "blend", "item_knn", "sknn")
_FILL: Final = 1e-6  # popularity weight that only breaks ties and fills short lists
_CELLS_PER_CHUNK: Final = 4_000_000  # dense scores per chunk (~32 MB of float64)
_HOUR_MS: Final = 3_600_000.0
_TUNE_CELLS: Final = 200_000_000  # validation queries x V scored per tuning grid point, at most

Scores = NDArray[np.float64]
ScoreFn = Callable[[NDArray[np.int64]], Scores]


@dataclass(frozen=True)
class RepeatParams:
    half_life_h: float = 24.0
    type_weights: dict[str, float] = field(default_factory=lambda: dict.fromkeys(EVENT_TYPES, 1.0))


@dataclass(frozen=True)
class BlendParams:
    markov: float = 0.3
    popularity: float = 0.0
    long_repeat: float = 0.0
    long_half_life_h: float = 72.0


@dataclass
class FittedBaselines:
    """Baselines fitted on one dataset's training period; ``rank`` scores any queries."""

    data: EncodedEvents
    popularity: NDArray[np.float64]
    transitions: sp.csr_matrix
    prev_target: NDArray[np.int64]
    transition_counts: sp.csr_matrix  # raw (V, V) training-period pair counts behind ``transitions``
    knn: SessionKnn | None = None  # item-kNN and V-SKNN (training/session_knn.py)
    repeat: RepeatParams = field(default_factory=RepeatParams)
    blend: BlendParams = field(default_factory=BlendParams)

    def params(self) -> dict[str, object]:
        """Tuned parameters, for metrics.json."""
        return {"repeat": asdict(self.repeat), "blend": asdict(self.blend)}

    def score_fn(self, method: str) -> ScoreFn:
        """Dense ``(len(queries), n_classes)`` scores of ``method`` for a chunk of queries."""
        fill = _FILL * self.popularity
        if method == "popularity":
            return lambda q: np.broadcast_to(self.popularity, (len(q), self.popularity.size)).copy()
        if method == "repeat":
            return lambda q: self._repeat(q) + fill
        if method == "markov":
            return lambda q: self._markov(q) + fill
        if method == "blend":
            return lambda q: self._blend(q, self.blend) + fill
        if method in ("item_knn", "sknn"):
            knn = self.knn or SessionKnn.fit(self.data)
            self.knn = knn
            if method == "item_knn":
                return lambda q: knn.item_knn(self.data, self.prev_target, q) + fill
            return lambda q: knn.sknn(self.data, q) + fill
        raise ValueError(f"unknown baseline {method!r}; expected one of {METHODS}")

    def rank(self, queries: NDArray[np.int64], k: int = 20) -> dict[str, NDArray[np.int64]]:
        """Top-``k`` category indices per query, for every method."""
        return {m: top_k(self.score_fn(m), queries, k, self.data.n_classes) for m in METHODS}

    def intent_scores(self, queries: NDArray[np.int64]) -> NDArray[np.float64]:
        """Purchase-intent baseline: P(event is a purchase | type of the user's previous event),
        estimated on training-period transitions."""
        data = self.data
        n_types = len(EVENT_TYPES)
        purchase = EVENT_TYPES.index("purchase")
        fit = np.flatnonzero(data.fit_mask() & (data.history_len >= 1))
        prev_type = data.etype[fit - 1].astype(np.int64)
        buys = np.bincount(prev_type, weights=(data.etype[fit] == purchase), minlength=n_types)
        totals = np.bincount(prev_type, minlength=n_types)
        rate = (buys + 1.0) / (totals + 2.0)  # Laplace: unseen types get 0.5, not 0/0
        return np.asarray(rate[data.etype[queries - 1]], dtype=np.float64)

    def _repeat(self, queries: NDArray[np.int64], params: RepeatParams | None = None) -> Scores:
        params = params or self.repeat
        data, n = self.data, self.data.n_classes
        row, hist = history_pairs(data, queries)
        weights_by_type = np.array([params.type_weights.get(t, 1.0) for t in EVENT_TYPES])
        age_h = (data.ts[queries[row]] - data.ts[hist]) / _HOUR_MS
        weight = weights_by_type[data.etype[hist]] * np.exp2(-age_h / params.half_life_h)
        tokens = data.target[hist]
        keep = tokens >= 2
        flat = row[keep] * n + tokens[keep]
        summed = np.bincount(flat, weights=weight[keep], minlength=len(queries) * n)
        scores: Scores = summed.astype(np.float64, copy=False).reshape(len(queries), n)
        totals = scores.sum(axis=1, keepdims=True)
        scores /= np.where(totals > 0, totals, 1.0)  # in place: these arrays are the big cost
        return scores

    def _markov(self, queries: NDArray[np.int64]) -> Scores:
        rows = self.transitions[self.prev_target[queries]]
        return np.asarray(rows.toarray(), dtype=np.float64)

    def _blend(
        self,
        queries: NDArray[np.int64],
        params: BlendParams,
        parts: tuple[Scores, Scores, Scores] | None = None,
    ) -> Scores:
        if parts is None:
            long_term = replace(self.repeat, half_life_h=params.long_half_life_h)
            parts = (self._repeat(queries), self._repeat(queries, long_term), self._markov(queries))
        repeat, long_repeat, markov = parts
        return repeat + params.long_repeat * long_repeat + params.markov * markov + params.popularity * self.popularity


def history_pairs(data: EncodedEvents, queries: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """``(row, position)`` of every (query, earlier event of the same user) pair."""
    first = data.starts[data.user[queries]]
    lengths = queries - first
    row = np.repeat(np.arange(len(queries), dtype=np.int64), lengths)
    offsets = np.cumsum(lengths) - lengths
    hist = np.repeat(first - offsets, lengths) + np.arange(int(lengths.sum()), dtype=np.int64)
    return row, hist


def previous_targets(data: EncodedEvents) -> NDArray[np.int64]:
    """Per position, the last real target token (>= 2) earlier in the same user, else 0."""
    return previous_real_tokens(data.target, data.starts[data.user])


def previous_real_tokens(tokens: NDArray[np.int64], first: NDArray[np.int64] | int = 0) -> NDArray[np.int64]:
    """Per position, the last token >= 2 before it and at or after ``first`` (its sequence's
    start), else 0: the predecessor every counted transition uses (OOV events skipped).

    >>> previous_real_tokens(np.array([2, 1, 3, 3])).tolist()
    [0, 2, 2, 3]
    """
    positions = np.arange(len(tokens), dtype=np.int64)
    marked = np.where(tokens >= 2, positions, -1)
    last_at_or_before = np.maximum.accumulate(marked) if len(tokens) else marked
    prev = np.full(len(tokens), -1, dtype=np.int64)
    prev[1:] = last_at_or_before[:-1]
    same_sequence = (prev >= 0) & (prev >= first)
    return np.where(same_sequence, tokens[np.maximum(prev, 0)], 0)


def fit_baselines(data: EncodedEvents, *, tune: bool = True, tune_k: int = 10) -> FittedBaselines:
    """Fit on train-period events; tune on validation-period queries when there are any."""
    n = data.n_classes
    fit = data.fit_mask()
    counts = np.bincount(data.target[fit], minlength=n).astype(np.float64)
    counts[:2] = 0.0
    popularity = counts / max(counts.sum(), 1.0)
    prev = previous_targets(data)
    pairs = fit & (prev >= 2) & (data.target >= 2)
    counts = sp.csr_matrix((np.ones(int(pairs.sum())), (prev[pairs], data.target[pairs])), shape=(n, n))
    row_sums = np.asarray(counts.sum(axis=1)).ravel()
    transitions = sp.csr_matrix(sp.diags(1.0 / np.maximum(row_sums, 1.0)) @ counts)
    fitted = FittedBaselines(data, popularity, transitions, prev, counts)
    valid = data.queries(VALID)
    # Tuning scores every grid point densely (queries x V); for large vocabularies an evenly spaced
    # sample of the validation queries bounds that work (categories of the Taobao sample: all).
    budget = max(1, _TUNE_CELLS // max(n, 1))
    if len(valid) > budget:
        valid = valid[np.linspace(0, len(valid) - 1, budget).astype(np.int64)]
    if tune and len(valid):
        _tune(fitted, valid, tune_k)
    return fitted


def _tune(fitted: FittedBaselines, valid: NDArray[np.int64], k: int) -> None:
    """Coordinate search on validation MRR@k: half-life, then each type weight, then the blend."""

    def repeat_mrr(params: RepeatParams) -> float:
        return mean_reciprocal_rank(lambda q: fitted._repeat(q, params), valid, fitted.data, k)

    best, best_mrr = fitted.repeat, repeat_mrr(fitted.repeat)

    def consider(candidate: RepeatParams) -> None:
        nonlocal best, best_mrr
        mrr = repeat_mrr(candidate)
        if mrr > best_mrr:
            best, best_mrr = candidate, mrr

    for half_life in (0.25, 1.0, 3.0, 8.0, 72.0):
        consider(replace(best, half_life_h=half_life))
    for event_type in ("cart", "fav", "purchase"):
        for weight in (0.25, 0.5, 2.0):
            consider(replace(best, type_weights={**best.type_weights, event_type: weight}))
    fitted.repeat = best
    weights = itertools.product((0.0, 0.2, 0.35, 0.5, 0.8), (0.0, 0.05), (0.0, 0.15, 0.3, 0.6, 1.0))
    grid = [BlendParams(markov=m, popularity=p, long_repeat=r) for m, p, r in weights]
    long_term = replace(best, half_life_h=grid[0].long_half_life_h)
    sums = np.zeros(len(grid))
    for chunk in chunks(valid, fitted.data.n_classes):
        parts = (fitted._repeat(chunk), fitted._repeat(chunk, long_term), fitted._markov(chunk))
        for i, params in enumerate(grid):
            scores = fitted._blend(chunk, params, parts) + _FILL * fitted.popularity
            sums[i] += reciprocal_ranks(scores, fitted.data.target[chunk], k).sum()
    fitted.blend = grid[int(np.argmax(sums))]
    logger.info("tuned baselines on %d validation events: %s", len(valid), fitted.params())


def chunks(queries: NDArray[np.int64], n_classes: int) -> Iterator[NDArray[np.int64]]:
    """Query chunks small enough for dense ``chunk x n_classes`` scores."""
    size = max(1, _CELLS_PER_CHUNK // max(n_classes, 1))
    for begin in range(0, len(queries), size):
        yield queries[begin : begin + size]


def reciprocal_ranks(scores: Scores, targets: NDArray[np.int64], k: int) -> NDArray[np.float64]:
    """1/rank of each target within its row (0 beyond ``k`` or for padding/OOV targets).
    Overwrites the padding/OOV columns of ``scores`` (a scratch array) to avoid a copy."""
    scores[:, :2] = -np.inf
    own = scores[np.arange(len(targets)), targets]
    rank = 1 + (scores > own[:, None]).sum(axis=1)
    return np.where((targets >= 2) & (rank <= k), 1.0 / rank, 0.0)


def mean_reciprocal_rank(score: ScoreFn, queries: NDArray[np.int64], data: EncodedEvents, k: int) -> float:
    """MRR@k of a scoring function over ``queries`` (ties counted in the target's favour)."""
    total = sum(float(reciprocal_ranks(score(c), data.target[c], k).sum()) for c in chunks(queries, data.n_classes))
    return total / max(len(queries), 1)


def top_k(score: ScoreFn, queries: NDArray[np.int64], k: int, n_classes: int) -> NDArray[np.int64]:
    """Top-``k`` indices per query, best first; never 0 or 1 (at most ``n_classes - 2`` wide)."""
    width = max(0, min(k, n_classes - 2))
    out = np.empty((len(queries), width), dtype=np.int64)
    if width == 0:
        return out
    done = 0
    for chunk in chunks(queries, n_classes):
        scores = score(chunk)
        scores[:, :2] = -np.inf
        part = np.argpartition(-scores, width - 1, axis=1)[:, :width]
        order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
        out[done : done + len(chunk)] = np.take_along_axis(part, order, axis=1)
        done += len(chunk)
    return out
