"""Model inputs of every user as flat arrays, featurized a minibatch at a time.

The stored part is what the shared featurizer starts from: one static row per event (type,
category, item, price bucket, rating, text tokens; int32), its time, and the per-position labels.
A minibatch's step features and ``(B, T, W)`` pointer windows are made when the batch is drawn,
by the same ``step_features`` / ``sequence_window_features`` the worker runs, so memory is these
arrays plus one batch, not ``T x W`` stored windows per user.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from numpy.typing import NDArray

from stream.features import FeatureSpec, StaticColumn
from stream.features.encode import sequence_window_features, step_features, target_column
from stream.features.text import text_token_ids
from training.data.clean_columns import CleanedEvents
from training.data.columns import NONE
from training.data.encode_columns import CodedVocabulary
from training.priors import SparsePrior
from training.sequences import INTENT_HORIZON, NO_TARGET, EncodedHistory
from training.split import TimeSplit

FEATURE_CACHE_BYTES = 1 << 30  # featurized users kept for later epochs, at most (the whole Taobao sample: ~0.3 GB)


def _empty_f32() -> NDArray[np.float32]:
    return np.zeros(0, dtype=np.float32)


@dataclass
class FlatHistories:
    """User ``u`` owns positions ``starts[u]:starts[u+1]``; position ``t`` predicts event ``t+1``."""

    spec: FeatureSpec
    starts: NDArray[np.int64]
    rows: NDArray[np.int32]  # (n, static_width): EventEncoder.static_rows of every event
    ts: NDArray[np.int64]
    target: NDArray[np.int32]  # next event's target index, NO_TARGET at a user's last event
    target_period: NDArray[np.int8]  # TRAIN/VALID/TEST of the next event, -1 at a user's last event
    intent: NDArray[np.int8]  # 1/0 purchase within INTENT_HORIZON events, -1 unknown
    prior_newest: NDArray[np.float32] = field(default_factory=_empty_f32)  # leave-user-out values, once attached
    prior_other: NDArray[np.float32] = field(default_factory=_empty_f32)
    cache_bytes: int = FEATURE_CACHE_BYTES
    _cache: dict[int, tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]] = field(
        default_factory=dict, repr=False
    )
    _cached: int = 0

    def __len__(self) -> int:
        return len(self.starts) - 1

    @property
    def lengths(self) -> NDArray[np.int64]:
        return np.diff(self.starts)

    @property
    def n_positions(self) -> int:
        return int(self.starts[-1])

    @property
    def nbytes(self) -> int:
        arrays = (self.starts, self.rows, self.ts, self.target, self.target_period, self.intent,
                  self.prior_newest, self.prior_other)  # fmt: skip
        return sum(a.nbytes for a in arrays)  # the feature cache not counted (see ``user_inputs``)

    @property
    def attached(self) -> bool:
        return len(self.prior_newest) == self.n_positions

    def select(self, users: NDArray[np.int64]) -> FlatHistories:
        """Those users only, in that order (a rank's shard)."""
        lengths = self.lengths[users]
        starts = np.zeros(len(users) + 1, dtype=np.int64)
        np.cumsum(lengths, out=starts[1:])
        pos = np.repeat(self.starts[users] - starts[:-1], lengths) + np.arange(int(starts[-1]))
        attached = self.attached
        newest, other = (self.prior_newest[pos], self.prior_other[pos]) if attached else (_empty_f32(), _empty_f32())
        return FlatHistories(
            self.spec, starts, self.rows[pos], self.ts[pos], self.target[pos], self.target_period[pos],
            self.intent[pos], newest, other,
        )  # fmt: skip

    def user_inputs(self, u: int) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Steps ``(T, step_width)`` and windows ``(T, W)`` x3 of user ``u``, by the shared featurizer.

        Users featurized while the cache is under ``cache_bytes`` are kept, so small datasets are
        featurized once (as fast as stored windows) and large ones stay at a bounded size.
        """
        cached = self._cache.get(u)
        if cached is not None:
            return cached
        s, e = int(self.starts[u]), int(self.starts[u + 1])
        rows, ts, spec = self.rows[s:e], self.ts[s:e], self.spec
        windows = sequence_window_features(rows[:, target_column(spec)], rows[:, StaticColumn.TYPE], ts, spec)
        result = step_features(rows, ts, None, spec), windows
        size = result[0].nbytes + sum(w.nbytes for w in windows)
        if self._cached + size <= self.cache_bytes:
            self._cache[u] = result
            self._cached += size
        return result

    @classmethod
    def stack(cls, histories: Sequence[EncodedHistory], spec: FeatureSpec) -> FlatHistories:
        """Per-user :class:`EncodedHistory` objects (small data, tests) as flat arrays."""
        lengths = np.fromiter((len(h) for h in histories), dtype=np.int64, count=len(histories))
        starts = np.zeros(len(histories) + 1, dtype=np.int64)
        np.cumsum(lengths, out=starts[1:])

        def cat(name: str, dtype: type) -> np.ndarray:
            parts = [np.asarray(getattr(h, name)) for h in histories]
            return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

        rows = np.concatenate([h.steps[:, : spec.static_width] for h in histories]).astype(np.int32) if histories \
            else np.zeros((0, spec.static_width), np.int32)  # fmt: skip
        flat = cls(spec, starts, rows, cat("ts", np.int64), cat("target", np.int32), cat("target_period", np.int8),
                   cat("intent", np.int8))  # fmt: skip
        if histories and all(len(h.prior_newest) == len(h) for h in histories):
            flat.prior_newest, flat.prior_other = cat("prior_newest", np.float32), cat("prior_other", np.float32)
        return flat


def as_flat(histories: FlatHistories | Sequence[EncodedHistory], spec: FeatureSpec | None = None) -> FlatHistories:
    if isinstance(histories, FlatHistories):
        return histories
    if spec is None:
        raise ValueError("a list of EncodedHistory needs the model's FeatureSpec")
    return FlatHistories.stack(histories, spec)


def static_rows(
    cleaned: CleanedEvents, spec: FeatureSpec, categories: CodedVocabulary, items: CodedVocabulary
) -> NDArray[np.int32]:
    """``EventEncoder.static_rows`` of every event, vectorised (tests/unit/test_columns.py)."""
    c = cleaned.columns
    rows = np.zeros((len(c), spec.static_width), dtype=np.int32)
    rows[:, StaticColumn.TYPE] = c.etype.astype(np.int32) + 1  # TYPE_INDEX: 0 is padding
    rows[:, StaticColumn.CATEGORY] = categories.indices(c.category)
    rows[:, StaticColumn.ITEM] = items.indices(c.item)
    priced = ~np.isnan(c.price)
    edges = np.asarray(spec.price_edges, dtype=np.float64)
    rows[priced, StaticColumn.PRICE] = np.searchsorted(edges, c.price[priced], side="right") + 1
    rows[:, StaticColumn.RATING] = c.rating
    if spec.text_tokens and c.texts:
        table = np.asarray([text_token_ids(t, spec.text_tokens, spec.text_buckets) for t in c.texts], dtype=np.int32)
        has = c.text != NONE
        rows[has, StaticColumn.TEXT :] = table[c.text[has]]
    return rows


def flat_histories(
    cleaned: CleanedEvents, spec: FeatureSpec, categories: CodedVocabulary, items: CodedVocabulary, split: TimeSplit
) -> FlatHistories:
    """Every user's model inputs and labels (``encode_history`` of each user, flat)."""
    rows = static_rows(cleaned, spec, categories, items)
    n, starts = len(cleaned), cleaned.starts
    last = np.zeros(n, dtype=bool)
    last[starts[1:][cleaned.lengths > 0] - 1] = True
    target = np.full(n, NO_TARGET, dtype=np.int32)
    target[:-1] = rows[1:, target_column(spec)]
    target[last] = NO_TARGET
    period = np.full(n, -1, dtype=np.int8)
    period[:-1] = split.periods(cleaned.columns.ts[1:])
    period[last] = -1
    return FlatHistories(spec, starts, rows, cleaned.columns.ts, target, period, flat_intent(rows, starts))


def flat_intent(rows: NDArray[np.int32], starts: NDArray[np.int64], horizon: int = INTENT_HORIZON) -> NDArray[np.int8]:
    """``sequences.intent_labels`` of every user at once."""
    from stream.features.encode import PURCHASE_TYPE

    n = len(rows)
    csum = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(rows[:, StaticColumn.TYPE] == PURCHASE_TYPE, out=csum[1:])
    idx = np.arange(n)
    user_end = np.repeat(starts[1:], np.diff(starts))
    bought = (csum[np.minimum(idx + 1 + horizon, user_end)] - csum[idx + 1]) > 0
    return np.where(bought, 1, np.where(idx + horizon < user_end, 0, -1)).astype(np.int8)


def previous_other_flat(cats: NDArray[np.int32], starts: NDArray[np.int64], window: int) -> NDArray[np.int64]:
    """``model.previous_other`` of every position's window without building the windows: the newest
    of the ``window - 1`` earlier events of the same user whose target differs and is real (>= 2)."""
    n = len(cats)
    pos_in_user = np.arange(n) - np.repeat(starts[:-1], np.diff(starts))
    other = np.zeros(n, dtype=np.int64)
    found = np.zeros(n, dtype=bool)
    for back in range(1, window):
        if n <= back:
            break
        cand = np.zeros(n, dtype=cats.dtype)
        cand[back:] = cats[:-back]
        ok = ~found & (pos_in_user >= back) & (cand != cats) & (cand > 1)
        other[ok] = cand[ok]
        found |= ok
    return other


def attach_leave_user_out(
    flat: FlatHistories, prior: SparsePrior, transitions: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> None:
    """Fill every position's leave-user-out prior values at its target (``priors.py``), vectorised.

    User ``u`` of ``flat`` is user ``u`` of ``transitions`` (``priors.counted_transitions``).
    """
    users = np.repeat(np.arange(len(flat), dtype=np.int64), flat.lengths)
    newest = flat.rows[:, target_column(flat.spec)].astype(np.int64)  # the window's newest entry
    other = previous_other_flat(flat.rows[:, target_column(flat.spec)], flat.starts, flat.spec.window)
    target = flat.target.astype(np.int64)
    flat.prior_newest, flat.prior_other = (
        prior.leave_user_out_at(users, rows, target, *transitions).astype(np.float32) for rows in (newest, other)
    )


@dataclass
class Batch:
    """Right-padded tensors of several users; padding positions have target period -1.

    ``order`` holds the users' indices in the :class:`FlatHistories` the batch was drawn from.
    """

    steps: torch.Tensor
    win_cat: torch.Tensor
    win_type: torch.Tensor
    win_age: torch.Tensor
    target: torch.Tensor
    target_period: torch.Tensor
    intent: torch.Tensor
    order: list[int]
    prior_at_target: tuple[torch.Tensor, torch.Tensor] | None  # leave-user-out values, when attached


def collate(flat: FlatHistories, users: list[int]) -> Batch:
    """One batch, featurized now."""
    lengths = flat.lengths[users]
    t_max, b, w = int(lengths.max()), len(users), flat.spec.window
    steps = np.zeros((b, t_max, flat.spec.step_width), dtype=np.int64)
    win_cat, win_type, win_age = (np.zeros((b, t_max, w), dtype=np.int64) for _ in range(3))
    labels = {name: np.full((b, t_max), fill, dtype=np.int64) for name, fill in _LABELS.items()}
    priors = {name: np.zeros((b, t_max), dtype=np.float32) for name in _PRIORS} if flat.attached else {}
    for i, u in enumerate(users):
        s, e = int(flat.starts[u]), int(flat.starts[u + 1])
        step, wins = flat.user_inputs(u)
        steps[i, : e - s] = step
        win_cat[i, : e - s], win_type[i, : e - s], win_age[i, : e - s] = wins
        for name, label in labels.items():
            label[i, : e - s] = getattr(flat, name)[s:e]
        for name, prior in priors.items():
            prior[i, : e - s] = getattr(flat, name)[s:e]
    tensors = {name: torch.from_numpy(a) for name, a in labels.items()}
    return Batch(
        steps=torch.from_numpy(steps), win_cat=torch.from_numpy(win_cat), win_type=torch.from_numpy(win_type),
        win_age=torch.from_numpy(win_age), target=tensors["target"], target_period=tensors["target_period"],
        intent=tensors["intent"], order=list(users),
        prior_at_target=(torch.from_numpy(priors["prior_newest"]), torch.from_numpy(priors["prior_other"]))
        if priors else None,
    )  # fmt: skip


_LABELS = {"target": NO_TARGET, "target_period": -1, "intent": -1}  # padding values of the label tensors
_PRIORS = ("prior_newest", "prior_other")


def batch_groups(flat: FlatHistories, max_tokens: int) -> list[list[int]]:
    """Users bucketed by length into groups of at most ``max_tokens`` padded positions."""
    lengths = flat.lengths
    order = np.argsort(lengths, kind="stable").tolist()
    groups: list[list[int]] = []
    current: list[int] = []
    for i in order:
        if current and (len(current) + 1) * int(lengths[i]) > max_tokens:
            groups.append(current)
            current = []
        current.append(i)
    if current:
        groups.append(current)
    return groups


def iterate_batches(flat: FlatHistories, max_tokens: int, rng: np.random.Generator | None = None) -> Iterator[Batch]:
    """Length-bucketed batches of at most ``max_tokens`` padded positions, shuffled if ``rng``."""
    groups = batch_groups(flat, max_tokens)
    if rng is not None:
        rng.shuffle(groups)  # type: ignore[arg-type]
    for group in groups:
        yield collate(flat, group)
