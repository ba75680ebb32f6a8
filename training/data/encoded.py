"""Cleaned sequences as flat numpy arrays in vocabulary index space, for fast evaluation.

Users are contiguous and time-ordered: user ``u`` owns positions ``starts[u]:starts[u + 1]``.
A *query* is one evaluated event: its target is scored from the events before it of the same
user (every earlier period included, as the stream would see them).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
from numpy.typing import NDArray

from stream.contracts import EVENT_TYPES, Event
from training.data.cleaning import UserSequence
from training.split import TRAIN, TimeSplit

Target = Literal["category", "item"]


class TokenIndex(Protocol):
    """What evaluation needs of a vocabulary (``stream.features.vocab.Vocabulary``)."""

    def index(self, token: str | None) -> int: ...

    def token(self, index: int) -> str: ...

    def __len__(self) -> int: ...


def target_token(event: Event, target: Target) -> str | None:
    """The token an event contributes to the target space (``None``: it has none)."""
    return event.category_id if target == "category" else event.item_id


def training_tokens(sequences: Iterable[UserSequence], split: TimeSplit, target: Target) -> Iterable[str]:
    """Target tokens of train-period events only: what a vocabulary may be built from."""
    for seq in sequences:
        for event in seq.events:
            if event.ts >= split.train_end_ms:
                break  # events are time-ordered within a user
            token = target_token(event, target)
            if token is not None:
                yield token


@dataclass(frozen=True)
class EncodedEvents:
    """Flat, user-contiguous event arrays; ``target`` is 0 where an event has no target token."""

    starts: NDArray[np.int64]
    user: NDArray[np.int64]
    ts: NDArray[np.int64]
    target: NDArray[np.int64]
    etype: NDArray[np.int8]
    period: NDArray[np.int8]
    n_classes: int

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    @property
    def history_len(self) -> NDArray[np.int64]:
        """Number of earlier events of the same user, per position."""
        return np.arange(len(self), dtype=np.int64) - self.starts[self.user]

    def queries(self, period: int, *, min_history: int = 1) -> NDArray[np.int64]:
        """Positions of the evaluated events of ``period``: they have a target token and at least
        ``min_history`` earlier events (a prediction exists only after a user's first event)."""
        mask = (self.period == period) & (self.target != 0) & (self.history_len >= min_history)
        return np.flatnonzero(mask).astype(np.int64)

    def fit_mask(self) -> NDArray[np.bool_]:
        """Events a method may be fitted on: train period only."""
        return np.asarray(self.period == TRAIN)


def encode_sequences(
    sequences: list[UserSequence], vocab: TokenIndex, split: TimeSplit, target: Target = "category"
) -> EncodedEvents:
    """Flatten ``sequences`` into index space; unseen tokens map to the vocabulary's OOV (1)."""
    lengths = np.fromiter((len(s.events) for s in sequences), dtype=np.int64, count=len(sequences))
    starts = np.zeros(len(sequences) + 1, dtype=np.int64)
    np.cumsum(lengths, out=starts[1:])
    n = int(starts[-1])
    type_code = {name: i for i, name in enumerate(EVENT_TYPES)}
    ts = np.empty(n, dtype=np.int64)
    tgt = np.empty(n, dtype=np.int64)
    etype = np.empty(n, dtype=np.int8)
    pos = 0
    for seq in sequences:
        for event in seq.events:
            ts[pos] = event.ts
            tgt[pos] = vocab.index(target_token(event, target))
            etype[pos] = type_code[event.type]
            pos += 1
    return EncodedEvents(
        starts=starts,
        user=np.repeat(np.arange(len(sequences), dtype=np.int64), lengths),
        ts=ts,
        target=tgt,
        etype=etype,
        period=split.periods(ts),
        n_classes=len(vocab),
    )
