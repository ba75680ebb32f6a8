"""Whole user histories -> padded tensors, seen exactly the way the stream sees them.

Position ``t`` of a user is the moment right after event ``t`` arrived: the model has read events
``0..t`` (from the start of the history, as serving does) and predicts event ``t+1``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from stream.contracts import Event
from stream.features import EventEncoder, StaticColumn
from stream.features.encode import PURCHASE_TYPE, sequence_window_features, step_features, target_column
from training.model import previous_other
from training.priors import SparsePrior
from training.split import TimeSplit

NO_TARGET = -1
INTENT_HORIZON = 10  # "purchase intent" = a purchase among the next this-many events


def _no_prior() -> np.ndarray:
    return np.zeros(0, dtype=np.float32)


@dataclass
class EncodedHistory:
    """One user's history as model inputs and per-position labels (all length ``T``)."""

    user_id: str
    steps: np.ndarray  # (T, step_width)
    win_cat: np.ndarray  # (T, W)
    win_type: np.ndarray  # (T, W)
    win_age: np.ndarray  # (T, W)
    target: np.ndarray  # (T,) category index of event t+1, NO_TARGET at the end
    target_period: np.ndarray  # (T,) TRAIN/VALID/TEST of event t+1, -1 at the end
    intent: np.ndarray  # (T,) 1/0 purchase within the horizon, -1 when unknown (history ends first)
    # (T,) the leave-user-out prior values at the target out of each position's newest / previous
    # other target (priors.py); empty until ``attach_leave_user_out`` fills them
    prior_newest: np.ndarray = field(default_factory=_no_prior)
    prior_other: np.ndarray = field(default_factory=_no_prior)

    def __len__(self) -> int:
        return len(self.target)


def intent_labels(types: np.ndarray, horizon: int = INTENT_HORIZON) -> np.ndarray:
    """1 if a purchase follows within ``horizon`` events, 0 if none does, -1 if the history ends first.

    >>> intent_labels(np.array([1, 1, 5, 1, 1]), horizon=2).tolist()
    [1, 1, 0, -1, -1]
    """
    n = len(types)
    is_buy = (np.asarray(types) == PURCHASE_TYPE).astype(np.int64)
    csum = np.concatenate([[0], np.cumsum(is_buy)])
    idx = np.arange(n)
    end = np.minimum(idx + 1 + horizon, n)
    bought = (csum[end] - csum[idx + 1]) > 0
    known = idx + horizon < n
    return np.where(bought, 1, np.where(known, 0, -1)).astype(np.int64)


def encode_history(user_id: str, events: Sequence[Event], encoder: EventEncoder, split: TimeSplit) -> EncodedHistory:
    rows = encoder.static_rows(events)
    ts = np.fromiter((e.ts for e in events), dtype=np.int64, count=len(events))
    steps = step_features(rows, ts, None, encoder.spec)
    cats, types = rows[:, target_column(encoder.spec)], rows[:, StaticColumn.TYPE]
    win_cat, win_type, win_age = sequence_window_features(cats, types, ts, encoder.spec)
    target = np.full(len(events), NO_TARGET, dtype=np.int64)
    target[:-1] = cats[1:]
    target_period = np.full(len(events), -1, dtype=np.int64)
    target_period[:-1] = split.periods(ts[1:])
    return EncodedHistory(user_id, steps, win_cat, win_type, win_age, target, target_period, intent_labels(types))


def attach_leave_user_out(
    histories: Sequence[EncodedHistory], prior: SparsePrior, transitions: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> None:
    """Fill every history's leave-user-out prior values at its targets, in one vectorised pass.

    ``histories[u]`` is user ``u`` of ``transitions`` = (user, predecessor, successor) of every
    counted training transition (``priors.counted_transitions``).
    """
    lengths = np.fromiter((len(h) for h in histories), dtype=np.int64, count=len(histories))
    users = np.repeat(np.arange(len(histories), dtype=np.int64), lengths)
    newest = np.concatenate([h.win_cat[:, 0] for h in histories]).astype(np.int64)
    other = np.concatenate(
        [previous_other(torch.from_numpy(np.asarray(h.win_cat, dtype=np.int64))).numpy() for h in histories]
    )
    target = np.concatenate([h.target for h in histories])
    values = [prior.leave_user_out_at(users, rows, target, *transitions) for rows in (newest, other)]
    bounds = np.cumsum(lengths)[:-1]
    for h, pn, po in zip(histories, *(np.split(v, bounds) for v in values), strict=True):
        h.prior_newest, h.prior_other = pn, po


@dataclass
class Batch:
    """Right-padded tensors of several histories; padding positions have target period -1.

    ``order`` holds the histories' indices in the list the batch was drawn from.
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


def collate(histories: Sequence[EncodedHistory], order: list[int] | None = None) -> Batch:
    t_max = max(len(h) for h in histories)

    def pad(name: str, fill: float, dtype: type = np.int64) -> torch.Tensor:
        first = getattr(histories[0], name)
        out = np.full((len(histories), t_max, *first.shape[1:]), fill, dtype=dtype)
        for i, h in enumerate(histories):
            arr = getattr(h, name)
            out[i, : len(arr)] = arr
        return torch.from_numpy(out)

    attached = all(len(h.prior_newest) == len(h) for h in histories)
    return Batch(
        pad("steps", 0), pad("win_cat", 0), pad("win_type", 0), pad("win_age", 0),
        pad("target", NO_TARGET), pad("target_period", -1), pad("intent", -1),
        order if order is not None else list(range(len(histories))),
        (pad("prior_newest", 0.0, np.float32), pad("prior_other", 0.0, np.float32)) if attached else None,
    )  # fmt: skip


def iterate_batches(
    histories: Sequence[EncodedHistory], max_tokens: int, rng: np.random.Generator | None = None
) -> Iterator[Batch]:
    """Length-bucketed batches of at most ``max_tokens`` padded positions, shuffled if ``rng``."""
    order = sorted(range(len(histories)), key=lambda i: len(histories[i]))
    groups: list[list[int]] = []
    current: list[int] = []
    for i in order:
        if current and (len(current) + 1) * len(histories[i]) > max_tokens:
            groups.append(current)
            current = []
        current.append(i)
    if current:
        groups.append(current)
    if rng is not None:
        rng.shuffle(groups)  # type: ignore[arg-type]
    for group in groups:
        yield collate([histories[i] for i in group], group)
