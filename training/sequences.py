"""One whole user history -> model inputs, seen exactly the way the stream sees them (the
reference for small data and the export's torch check; training reads ``histories.FlatHistories``).

Position ``t`` of a user is the moment right after event ``t`` arrived: the model has read events
``0..t`` (from the start of the history, as serving does) and predicts event ``t+1``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from stream.contracts import Event
from stream.features import EventEncoder, StaticColumn
from stream.features.encode import PURCHASE_TYPE, sequence_window_features, step_features, target_column
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
    ts: np.ndarray  # (T,) event times (epoch ms)
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
    return EncodedHistory(user_id, steps, ts, win_cat, win_type, win_age, target, target_period, intent_labels(types))
