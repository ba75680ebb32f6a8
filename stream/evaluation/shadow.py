"""Shadow versions, run inside the evaluator: for a stable sample of users, every shadow version
steps through their events as a worker would (same featurizer, same incremental ``(h, c)``) and
its predictions go to the online scorer only; nothing is published.

Why here and not in the workers: the evaluator already reads every event, keeps users' recent
history in process and owns the online metrics, so a shadow costs the serving path nothing (the
cost per event is measured in ``bench/online_eval.py``). A sampled user's shadow history starts
where the evaluator first sees them (the topic's earliest retained event on a fresh group).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

import numpy as np

from stream.contracts import CategoryScore, Event, Prediction
from stream.features import StaticColumn
from stream.features.encode import step_features, target_column, window_features
from stream.registry import LoadedModel, ModelRegistry, RegistryError

log = logging.getLogger(__name__)


def in_sample(user_id: str, share: float) -> bool:
    """A stable ``share`` of users (the same ones in every evaluator and restart).

    >>> in_sample("u1", 1.0), in_sample("u1", 0.0)
    (True, False)
    """
    digest = hashlib.blake2b(user_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < share


@dataclass
class _History:
    rows: deque[np.ndarray]
    ts: deque[int]
    h: np.ndarray
    c: np.ndarray
    length: int = 0


@dataclass
class _Shadow:
    model: LoadedModel
    users: OrderedDict[str, _History] = field(default_factory=OrderedDict)


class ShadowRunner:
    """Predictions of every shadow version for sampled users' events (never published)."""

    def __init__(self, registry: ModelRegistry, share: float, *, max_users: int = 50_000) -> None:
        self.registry = registry
        self.share = share
        self.max_users = max_users
        self.shadows: dict[str, _Shadow] = {}
        self.seconds = 0.0  # time spent stepping shadow models (for the cost per event)
        self.steps = 0

    def refresh(self) -> None:
        """Load newly marked shadow versions, drop unmarked ones; a broken one is skipped and logged."""
        try:
            wanted = set(self.registry.shadow_versions())
        except RegistryError as exc:
            log.warning("cannot read the shadow list: %s", exc)
            return
        for version in set(self.shadows) - wanted:
            del self.shadows[version]
            log.info("shadow %s stopped", version)
        for version in wanted - set(self.shadows):
            try:
                self.shadows[version] = _Shadow(LoadedModel.load(self.registry, version))
                log.info("shadow %s running on %.0f%% of users", version, 100 * self.share)
            except RegistryError as exc:
                log.warning("shadow %s cannot run: %s", version, exc)

    def observe(self, event: Event) -> list[Prediction]:
        if not self.shadows or not in_sample(event.user_id, self.share):
            return []
        started = time.perf_counter()
        out = [self._step(version, shadow, event) for version, shadow in self.shadows.items()]
        self.seconds += time.perf_counter() - started
        self.steps += len(out)
        return out

    def _step(self, version: str, shadow: _Shadow, event: Event) -> Prediction:
        model = shadow.model
        spec = model.encoder.spec
        history = shadow.users.get(event.user_id)
        if history is None:
            h, c = model.zero_state(1)
            history = shadow.users[event.user_id] = _History(deque(maxlen=spec.window), deque(maxlen=spec.window), h, c)
            if len(shadow.users) > self.max_users:
                shadow.users.popitem(last=False)
        else:
            shadow.users.move_to_end(event.user_id)
        row = model.encoder.static_row(event)
        prev_ts = history.ts[-1] if history.ts else None
        step = step_features(row[None, :], np.array([event.ts], dtype=np.int64), prev_ts, spec)
        history.rows.append(row)
        history.ts.append(event.ts)
        rows = np.stack(history.rows)
        ts = np.fromiter(history.ts, dtype=np.int64, count=len(history.ts))
        win = window_features(rows[:, target_column(spec)], rows[:, StaticColumn.TYPE], ts, spec)
        result = model.step(
            step[None, :, :], np.ones(1, dtype=np.int64), history.h, history.c, np.zeros(1, dtype=np.int64),
            *(w[None, :] for w in win),
        )  # fmt: skip
        history.h, history.c = result.h, result.c
        history.length += 1
        ids = model.category_ids(result.categories[0])
        demand = [
            CategoryScore(str(i), float(np.clip(s, 0.0, 1.0))) for i, s in zip(ids, result.scores[0], strict=True)
        ]
        intent = float(np.clip(result.intent[0], 0.0, 1.0))
        now = int(time.time() * 1000)
        return Prediction(event.user_id, event.event_id, event.ts, now, version, demand, intent, history.length)
