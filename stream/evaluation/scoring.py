"""Online scoring: each prediction is judged when the user's next event arrives.

The events and predictions topics are read by one consumer, so a prediction may arrive before
or after the event that judges it (the worker publishes it a little after the event; a replay
writes all events first). Per user this keeps the last few events and the predictions still
waiting for their next event, and scores a pair as soon as both halves are known:

* demand: the rank of the next event's category in the published top-k (0 = miss), beside the
  rank the ``repeat`` baseline gives it (recency-weighted counts of the user's own categories,
  the offline baseline of ``training/baselines.py`` with the trained version's tuned half-life
  and type weights), computed here from the same events, so "model vs baseline" compares the
  same events with the same history;
* intent: the published purchase probability against whether the user bought within the next
  ``horizon`` events.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter, OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from stream.contracts import Event, Prediction
from stream.evaluation.blend import BlendBaseline

INTENT_HORIZON = 10
# Per-user buffers. Live, a prediction trails its event by one micro-batch and a handful of entries
# are used; a consumer reading a backlog can see one topic far ahead of the other (a replay writes
# every event before the worker has predicted much), and these bound what it can still pair up.
_RECENT_EVENTS = 256  # events kept per user: a late prediction still finds its next events
_PENDING = 2048  # unjudged predictions (or events waiting for theirs) kept per user
_FILL = 1e-6  # the trainer's popularity weight that breaks ties and fills short lists


@dataclass(frozen=True)
class RepeatBaseline:
    """``repeat``: each earlier event adds ``type_weight * 2 ** (-age / half_life)`` to its category."""

    half_life_h: float = 24.0
    type_weights: Mapping[str, float] = field(default_factory=dict)
    # The serving model's target vocabulary: like the trainer's baseline, categories outside it
    # are never ranked (None: rank every category seen).
    vocabulary: frozenset[str] | None = None
    # The training period's most popular categories and their shares, best first: with them the
    # ranking is the trainer's exactly (normalised own scores + 1e-6 * share, so a popular category
    # outranks an own one that decayed below that); empty: the stream's counts fill after own ones.
    popular: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def from_params(
        cls, params: Mapping[str, object], vocabulary: frozenset[str] | None = None,
        popular: Mapping[str, float] | None = None,
    ) -> RepeatBaseline:  # fmt: skip
        """From the ``repeat`` entry a training run records (``baselines.params()``)."""
        weights = params.get("type_weights", {})
        half_life = float(params.get("half_life_h", 24.0))  # type: ignore[arg-type]
        return cls(half_life, dict(weights) if isinstance(weights, Mapping) else {}, vocabulary, dict(popular or {}))

    def ranks(self, category: str | None) -> bool:
        return category is not None and (self.vocabulary is None or category in self.vocabulary)

    def weight(self, event_type: str) -> float:
        return float(self.type_weights.get(event_type, 1.0))


@dataclass(frozen=True)
class Judged:
    """One scored prediction: ranks are 1-based, 0 = not in the top k."""

    version: str
    target_ts: int
    model_rank: int
    baseline_rank: int


@dataclass(frozen=True)
class IntentOutcome:
    version: str
    probability: float
    bought: bool


@dataclass
class _User:
    events: deque[tuple[str, int, str | None, str]] = field(default_factory=lambda: deque(maxlen=_RECENT_EVENTS))
    # decayed repeat scores, all referred to ``ref_ts`` (rescaling them all keeps their order)
    repeat: dict[str, float] = field(default_factory=dict)
    long_repeat: dict[str, float] = field(default_factory=dict)  # the blend's multi-day half-life
    last: str | None = None  # the last in-vocabulary category (the blend's Markov step)
    ref_ts: int = 0
    baseline_topk: OrderedDict[str, list[str]] = field(default_factory=OrderedDict)  # event id -> ranking
    # event id -> its predictions (one per version: serving, shadows) still waiting for the next event
    predictions: OrderedDict[str, list[Prediction]] = field(default_factory=OrderedDict)
    # event id -> (ts, category) of the event after it, for predictions that arrive later
    targets: OrderedDict[str, tuple[int, str | None]] = field(default_factory=OrderedDict)
    intents: list[tuple[str, float, int]] = field(default_factory=list)  # version, probability, events left


def _rank(ranking: list[str], target: str | None, k: int) -> int:
    if target is None:
        return 0
    for i, category in enumerate(ranking[:k], start=1):
        if category == target:
            return i
    return 0


def _decay_add(scores: dict[str, float], age_ms: int, half_life_h: float, category: str, weight: float) -> None:
    """Decay every score by ``age_ms`` (all stay referred to the latest event) and add one event."""
    if scores and age_ms:
        decay = math.pow(2.0, -age_ms / (half_life_h * 3_600_000.0))
        if decay < 1e-200:  # long idle: restart the scale instead of underflowing to zero
            decay = 0.0
        for key in scores:
            scores[key] *= decay
    scores[category] = scores.get(category, 0.0) + weight


def _bounded_put(store: OrderedDict[str, object], key: str, value: object) -> None:  # type: ignore[type-arg]
    store[key] = value
    while len(store) > _PENDING:
        store.popitem(last=False)


class OnlineScorer:
    """Pairs predictions with the next event of their user; returns what each call judged."""

    def __init__(
        self, baseline: RepeatBaseline, *, k: int = 10, max_users: int = 200_000, blend: BlendBaseline | None = None
    ) -> None:
        self.baseline = baseline
        # With the training run's fitted blend the live baseline is the blend (the best offline
        # baseline), built on the same repeat scores; without it, the repeat baseline.
        self.blend = blend
        self.k = k
        self.max_users = max_users
        self.users: OrderedDict[str, _User] = OrderedDict()
        self.popularity: Counter[str] = Counter()
        self._popular: list[str] = []
        self._popular_at = 0
        self._events_seen = 0

    def _user(self, user_id: str) -> _User:
        user = self.users.get(user_id)
        if user is None:
            user = self.users[user_id] = _User()
            if len(self.users) > self.max_users:
                self.users.popitem(last=False)  # the least recently active user
        else:
            self.users.move_to_end(user_id)
        return user

    def add_event(self, event: Event) -> tuple[list[Judged], list[IntentOutcome]]:
        user = self._user(event.user_id)
        judged: list[Judged] = []
        if user.events:
            previous_id = user.events[-1][0]
            for prediction in user.predictions.pop(previous_id, []):
                judged.append(self._judge(user, prediction, event.ts, event.category_id))
            _bounded_put(user.targets, previous_id, (event.ts, event.category_id))  # type: ignore[arg-type]
        intents = self._resolve_intents(user, event.type == "purchase")
        user.events.append((event.event_id, event.ts, event.category_id, event.type))
        if self.baseline.ranks(event.category_id):
            self.popularity[str(event.category_id)] += 1
            self._events_seen += 1
            self._add_repeat(user, event)
        _bounded_put(user.baseline_topk, event.event_id, self._baseline_ranking(user))  # type: ignore[arg-type]
        for early in user.predictions.get(event.event_id, []):  # predictions read before their event
            intents += self._start_intent(user, early)
        return judged, intents

    def add_prediction(self, prediction: Prediction) -> tuple[list[Judged], list[IntentOutcome]]:
        user = self._user(prediction.user_id)
        judged: list[Judged] = []
        target = user.targets.get(prediction.event_id)
        if target is not None:
            judged.append(self._judge(user, prediction, *target))
        elif prediction.event_id in user.predictions:
            user.predictions[prediction.event_id].append(prediction)
        else:
            _bounded_put(user.predictions, prediction.event_id, [prediction])  # type: ignore[arg-type]
        if not any(e[0] == prediction.event_id for e in user.events):
            return judged, []  # read before its event: judged from there (add_event)
        return judged, self._start_intent(user, prediction)

    def _judge(self, user: _User, prediction: Prediction, target_ts: int, target: str | None) -> Judged:
        ranking = [c.category_id for c in prediction.demand]
        baseline = user.baseline_topk.get(prediction.event_id, [])
        return Judged(
            prediction.model_version, target_ts, _rank(ranking, target, self.k), _rank(baseline, target, self.k)
        )

    def _start_intent(self, user: _User, prediction: Prediction) -> list[IntentOutcome]:
        """Label the prediction from the events already seen after its event, or wait for more."""
        seen = list(user.events)
        after = next((i for i, e in enumerate(seen) if e[0] == prediction.event_id), None)
        if after is None:
            return []  # its event left the recent window: too late to judge
        following = seen[after + 1 : after + 1 + INTENT_HORIZON]
        if any(e[3] == "purchase" for e in following):
            return [IntentOutcome(prediction.model_version, prediction.purchase_intent, True)]
        if len(following) == INTENT_HORIZON:
            return [IntentOutcome(prediction.model_version, prediction.purchase_intent, False)]
        user.intents.append((prediction.model_version, prediction.purchase_intent, INTENT_HORIZON - len(following)))
        return []

    @staticmethod
    def _resolve_intents(user: _User, purchase: bool) -> list[IntentOutcome]:
        done, waiting = [], []
        for version, p, left in user.intents:
            if purchase or left == 1:
                done.append(IntentOutcome(version, p, purchase))
            else:
                waiting.append((version, p, left - 1))
        user.intents = waiting[-_PENDING:]
        return done

    def _add_repeat(self, user: _User, event: Event) -> None:
        category, weight = str(event.category_id), self.baseline.weight(event.type)
        _decay_add(user.repeat, event.ts - user.ref_ts, self.baseline.half_life_h, category, weight)
        if self.blend is not None:
            _decay_add(user.long_repeat, event.ts - user.ref_ts, self.blend.long_half_life_h, category, weight)
            user.last = category
        user.ref_ts = event.ts

    def _baseline_ranking(self, user: _User) -> list[str]:
        """The user's categories by decayed score (ties: more popular first), then popular ones."""
        if self.blend is not None:
            return self.blend.rank(user.repeat, user.long_repeat, user.last, self.k)
        if self.baseline.popular:
            share, total = self.baseline.popular, sum(user.repeat.values()) or 1.0
            candidates = set(user.repeat).union(list(share)[: self.k])
            return heapq.nlargest(
                self.k, candidates, key=lambda c: user.repeat.get(c, 0.0) / total + _FILL * share.get(c, 0.0)
            )
        else:
            pop = self.popularity
            own = heapq.nlargest(self.k, user.repeat, key=lambda c: (user.repeat[c], pop[c]))
        own = [c for c in own if user.repeat[c] > 0.0]
        if len(own) < self.k:
            taken = set(own)
            own.extend(c for c in self._most_popular() if c not in taken)
        return own[: self.k]

    def _most_popular(self) -> list[str]:
        """The most frequent categories so far, refreshed every 1% more events (it barely moves)."""
        seen = self._events_seen
        if seen > self._popular_at + max(100, self._popular_at // 100) or (seen and not self._popular):
            self._popular = [c for c, _ in self.popularity.most_common(2 * self.k)]
            self._popular_at = seen
        return self._popular
