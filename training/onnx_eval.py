"""Run an exported model the way a worker does: event by event, carrying ``(h, c)``.

Used for the export parity check and to score the currently served model on new test data (the
promotion gate), with the served model's own vocabularies and featurizer.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from stream.contracts import Event
from stream.features import StaticColumn
from stream.features.encode import sequence_window_features, step_features, target_column
from stream.registry import LoadedModel


def step_through_histories(
    model: LoadedModel, histories: Sequence[Sequence[Event]], batch_users: int = 512
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """For each history: ``(scores (T, k), categories (T, k), intent (T,))`` after every event."""
    spec = model.encoder.spec
    results: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for start in range(0, len(histories), batch_users):
        chunk = histories[start : start + batch_users]
        encoded = []
        for events in chunk:
            rows = model.encoder.static_rows(events)
            ts = np.fromiter((e.ts for e in events), dtype=np.int64, count=len(events))
            windows = sequence_window_features(rows[:, target_column(spec)], rows[:, StaticColumn.TYPE], ts, spec)
            encoded.append((step_features(rows, ts, None, spec), windows))
        lengths = np.array([len(e) for e in chunk])
        h, c = model.zero_state(len(chunk))
        k = model.manifest.top_k
        scores = [np.zeros((n, k), np.float32) for n in lengths]
        cats = [np.zeros((n, k), np.int64) for n in lengths]
        intent = [np.zeros(n, np.float32) for n in lengths]
        for t in range(int(lengths.max(initial=0))):
            live = np.flatnonzero(lengths > t)
            steps = np.stack([encoded[i][0][t] for i in live])[:, None, :]
            win = [np.stack([encoded[i][1][j][t] for i in live]) for j in range(3)]
            one = np.ones(len(live), dtype=np.int64)
            out = model.step(steps, one, h[:, live], c[:, live], np.arange(len(live)), *win)
            h[:, live], c[:, live] = out.h, out.c
            for row, i in enumerate(live):
                scores[i][t], cats[i][t], intent[i][t] = out.scores[row], out.categories[row], out.intent[row]
        results.extend(zip(scores, cats, intent, strict=True))
    return results
