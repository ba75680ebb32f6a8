"""Vocabularies and the flat :class:`EncodedEvents` arrays straight from a cleaned columnar table,
vectorised: equal to ``Vocabulary.build(training_tokens(...))`` and ``encode_sequences`` on the
same events (tests/unit/test_columns.py), without a Python loop over events.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from stream.features import Vocabulary
from stream.features.vocab import OOV, PAD
from training.data.clean_columns import CleanedEvents
from training.data.columns import NONE
from training.data.encoded import EncodedEvents, Target
from training.split import TimeSplit


@dataclass(frozen=True)
class CodedVocabulary:
    """A vocabulary and the lookup table from the table's interned codes to its indices."""

    vocab: Vocabulary
    lut: NDArray[np.int32]  # code -> index (OOV where the code did not make it)

    def indices(self, codes: NDArray[np.int32]) -> NDArray[np.int32]:
        """Vocabulary index of every code; a missing field (``NONE``) is padding, as ``Vocabulary.index(None)``."""
        return np.where(codes == NONE, np.int32(PAD), self.lut[np.maximum(codes, 0)]).astype(np.int32)


def code_vocabulary(
    codes: NDArray[np.int32], tokens: list[str], train: NDArray[np.bool_], *, min_count: int = 1
) -> CodedVocabulary:
    """``Vocabulary.build`` of the train rows' tokens: most frequent first, ties by first appearance
    (in table order, which is the order ``training_tokens`` walks), at least ``min_count`` uses."""
    seen = codes[train]
    seen = seen[seen != NONE]
    counts = np.bincount(seen, minlength=len(tokens))
    present, first = np.unique(seen, return_index=True)
    n = counts[present]
    ranked = present[np.lexsort((first, -n))]
    ranked = ranked[counts[ranked] >= min_count]
    lut = np.full(max(len(tokens), 1), OOV, dtype=np.int32)
    lut[ranked] = np.arange(len(ranked), dtype=np.int32) + 2
    return CodedVocabulary(Vocabulary([tokens[i] for i in ranked.tolist()]), lut)


def target_codes(cleaned: CleanedEvents, target: Target) -> tuple[NDArray[np.int32], list[str]]:
    c = cleaned.columns
    return (c.category, c.category_ids) if target == "category" else (c.item, c.item_ids)


def train_rows(cleaned: CleanedEvents, split: TimeSplit) -> NDArray[np.bool_]:
    """Rows a vocabulary may be built from: training-period events."""
    return np.asarray(cleaned.columns.ts < split.train_end_ms)


def encode_columns(cleaned: CleanedEvents, targets: CodedVocabulary, split: TimeSplit, target: Target) -> EncodedEvents:
    """The flat arrays of evaluation and the baselines (``encode_sequences`` of the same events)."""
    codes, _ = target_codes(cleaned, target)
    c = cleaned.columns
    return EncodedEvents(
        starts=cleaned.starts,
        user=np.repeat(np.arange(cleaned.users, dtype=np.int64), cleaned.lengths),
        ts=c.ts,
        target=targets.indices(codes).astype(np.int64),
        etype=c.etype,
        period=split.periods(c.ts),
        n_classes=len(targets.vocab),
    )
