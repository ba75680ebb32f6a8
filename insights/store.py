"""Redis aggregates of the insights job: layout, batched writes and the reads behind the
report and the dashboard. The layout is documented in docs/insights.md.

Every key is ``{prefix}:ins:{agg}:...``: the ``{agg}`` hash tag keeps them in one Redis Cluster
slot so that a whole batch, including the consumer offsets it covers, is one MULTI/EXEC. Storing
offsets with the aggregates makes replays after a crash harmless (records below the stored
offset are skipped), and one transaction per batch is one round trip.

Memory is bounded: aggregates are per time bucket and expire ``retention_buckets`` buckets after
their bucket ends; term and aspect sorted sets keep their ``max_terms`` largest members; review
examples are a capped list.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from insights.exceptions import InsightsError
from stream.config import Settings

REVIEWS_MEMBER = "__reviews__"  # member of each aspect sorted set that counts the reviews

log = logging.getLogger(__name__)

MAX_TERMS = 2000  # members kept per term/aspect sorted set and bucket (heavy hitters)
MAX_EXAMPLES = 50  # newest negative reviews kept per category for example quotes
_LABELS = {True: "neg", False: "pos"}


class StoreError(InsightsError):
    """Redis refused or failed an insights read or write."""


class InsightsKeys:
    """Key names (see docs/insights.md).

    >>> k = InsightsKeys("ds")
    >>> k.demand(474)
    'ds:ins:{agg}:demand:474'
    >>> k.review_words(474, "手机", True)
    'ds:ins:{agg}:rev:474:手机:neg'
    """

    def __init__(self, prefix: str) -> None:
        self.base = f"{prefix}:ins:{{agg}}"

    @property
    def buckets(self) -> str:
        return f"{self.base}:buckets"

    @property
    def offsets(self) -> str:
        return f"{self.base}:offsets"

    def demand(self, bucket: int) -> str:
        return f"{self.base}:demand:{bucket}"

    def intent(self, bucket: int) -> str:
        return f"{self.base}:intent:{bucket}"

    def counts(self, bucket: int) -> str:
        return f"{self.base}:counts:{bucket}"

    def searches(self, bucket: int) -> str:
        return f"{self.base}:search:{bucket}"

    def conversions(self, bucket: int) -> str:
        return f"{self.base}:conv:{bucket}"

    def review_words(self, bucket: int, category: str, negative: bool) -> str:
        return f"{self.base}:rev:{bucket}:{category}:{_LABELS[negative]}"

    def review_examples(self, category: str) -> str:
        return f"{self.base}:revex:{category}"


@dataclass(slots=True)
class BatchDelta:
    """Everything one consumer batch adds, summed in memory before the single write."""

    demand: defaultdict[tuple[int, str], float] = field(default_factory=lambda: defaultdict(float))
    intent: defaultdict[tuple[int, str], float] = field(default_factory=lambda: defaultdict(float))
    counts: Counter[tuple[int, str]] = field(default_factory=Counter)
    searches: Counter[tuple[int, str]] = field(default_factory=Counter)
    conversions: Counter[tuple[int, str]] = field(default_factory=Counter)
    review_words: Counter[tuple[int, str, bool, str]] = field(default_factory=Counter)
    review_examples: defaultdict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    offsets: dict[str, int] = field(default_factory=dict)  # "topic:partition" -> next offset

    def buckets(self) -> set[int]:
        keys: Iterable[tuple[Any, ...]] = [
            *self.demand,
            *self.counts,
            *self.searches,
            *self.conversions,
            *self.review_words,
        ]
        return {k[0] for k in keys}


@dataclass(frozen=True, slots=True)
class WindowData:
    """Aggregates read back for a range of buckets (oldest first)."""

    buckets: list[int]
    demand: dict[str, list[float]]  # category -> per-bucket expected demand
    intent: dict[str, list[float]]  # category -> per-bucket score-weighted purchase intent sum
    searches: Counter[str]
    conversions: Counter[str]
    review_counts: dict[tuple[str, bool], int]
    review_words: dict[tuple[str, bool], Counter[str]]
    review_examples: dict[str, list[str]]
    predictions: int


class InsightsStore:
    """Batched writes and window reads of the insights aggregates."""

    def __init__(self, settings: Settings, client: Any = None, max_terms: int = MAX_TERMS) -> None:
        self.bucket_s = settings.insights_bucket_s
        self.retention = settings.insights_retention_buckets
        self.keys = InsightsKeys(settings.redis_key_prefix)
        self.max_terms = max_terms
        if client is None:
            # Reuse the worker's tested client factory (TLS, password override, cluster).
            from stream.store.window_store import make_redis_client

            client = make_redis_client(settings)
        self._redis = client

    @property
    def ttl_s(self) -> int:
        """Time to live of a bucket's keys after their last write.

        Relative to the write, not to the bucket's event time: a replay of last month's events
        must not write keys that are already expired. Live, a bucket is written during its own
        time, so this keeps ``retention_buckets`` buckets.
        """
        return self.retention * self.bucket_s

    async def load_offsets(self) -> dict[str, int]:
        """Stored next offsets per ``topic:partition`` (records below them are already counted)."""
        try:
            raw = await self._redis.hgetall(self.keys.offsets)
        except Exception as exc:  # redis raises many types; callers need one
            raise StoreError(f"reading offsets: {exc}") from exc
        return {_s(k): int(v) for k, v in raw.items()}

    async def write(self, delta: BatchDelta) -> None:
        """Apply one batch atomically, offsets included, in a single round trip."""
        k = self.keys
        pipe = self._redis.pipeline(transaction=True)
        bucket_of_key: dict[str, int] = {}  # every key written -> its bucket
        trimmed: set[str] = set()
        for (b, cat), v in delta.demand.items():
            pipe.hincrbyfloat(k.demand(b), cat, v)
            bucket_of_key[k.demand(b)] = b
        for (b, cat), v in delta.intent.items():
            pipe.hincrbyfloat(k.intent(b), cat, v)
            bucket_of_key[k.intent(b)] = b
        for (b, name), n in delta.counts.items():
            pipe.hincrby(k.counts(b), name, n)
            bucket_of_key[k.counts(b)] = b
        for (b, term), n in delta.searches.items():
            pipe.zincrby(k.searches(b), n, term)
            bucket_of_key[k.searches(b)] = b
            trimmed.add(k.searches(b))
        for (b, term), n in delta.conversions.items():
            pipe.zincrby(k.conversions(b), n, term)
            bucket_of_key[k.conversions(b)] = b
            trimmed.add(k.conversions(b))
        for (b, cat, neg, word), n in delta.review_words.items():
            pipe.zincrby(k.review_words(b, cat, neg), n, word)
            bucket_of_key[k.review_words(b, cat, neg)] = b
            trimmed.add(k.review_words(b, cat, neg))
        for key in trimmed:  # keep the heaviest members only: bounded memory per bucket
            pipe.zremrangebyrank(key, 0, -(self.max_terms + 1))
        for key in bucket_of_key:
            pipe.expire(key, self.ttl_s)
        for cat, texts in delta.review_examples.items():
            pipe.lpush(k.review_examples(cat), *texts)
            pipe.ltrim(k.review_examples(cat), 0, MAX_EXAMPLES - 1)
            pipe.expire(k.review_examples(cat), self.ttl_s)
        buckets = delta.buckets()
        if buckets:
            pipe.zadd(k.buckets, {str(b): b for b in buckets})
            pipe.zremrangebyscore(k.buckets, "-inf", max(buckets) - self.retention)
            pipe.expire(k.buckets, self.ttl_s)
        if delta.offsets:
            pipe.hset(k.offsets, mapping=delta.offsets)
        try:
            await pipe.execute()
        except Exception as exc:
            raise StoreError(f"writing a batch: {exc}") from exc

    async def latest_bucket(self) -> int | None:
        newest = await self._redis.zrange(self.keys.buckets, -1, -1, withscores=True)
        return int(newest[0][1]) if newest else None

    async def read_window(self, last_bucket: int, count: int) -> WindowData:
        """Aggregates of buckets ``last_bucket - count + 1 .. last_bucket`` in one round trip."""
        k = self.keys
        buckets = list(range(last_bucket - count + 1, last_bucket + 1))
        pipe = self._redis.pipeline(transaction=False)
        for b in buckets:
            pipe.hgetall(k.demand(b))
            pipe.hgetall(k.intent(b))
            pipe.hgetall(k.counts(b))
            pipe.zrange(k.searches(b), 0, -1, withscores=True)
            pipe.zrange(k.conversions(b), 0, -1, withscores=True)
        try:
            replies = await pipe.execute()
            review_keys = [_s(key) async for key in self._redis.scan_iter(match=f"{k.base}:rev:*")]
            example_keys = [_s(key) async for key in self._redis.scan_iter(match=f"{k.base}:revex:*")]
            pipe = self._redis.pipeline(transaction=False)
            in_window = {str(b) for b in buckets}
            wanted = [key for key in review_keys if _suffix(k.base, key)[1] in in_window]
            for key in wanted:
                pipe.zrange(key, 0, -1, withscores=True)
            for key in example_keys:
                pipe.lrange(key, 0, -1)
            more = await pipe.execute()
        except Exception as exc:
            raise StoreError(f"reading aggregates: {exc}") from exc
        return _assemble(k.base, buckets, replies, wanted, example_keys, more)


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _suffix(base: str, key: str) -> list[str]:
    """The parts of a key after the common base (a prefix may itself contain colons)."""
    return key[len(base) + 1 :].split(":")


def _assemble(
    base: str,
    buckets: list[int],
    replies: list[Any],
    review_keys: list[str],
    example_keys: list[str],
    more: list[Any],
) -> WindowData:
    demand: dict[str, list[float]] = {}
    intent: dict[str, list[float]] = {}
    searches: Counter[str] = Counter()
    conversions: Counter[str] = Counter()
    predictions = 0
    for i in range(len(buckets)):
        d, it, counts, srch, conv = replies[5 * i : 5 * i + 5]
        for series, raw in ((demand, d), (intent, it)):
            for cat, v in raw.items():
                series.setdefault(_s(cat), [0.0] * len(buckets))[i] = float(v)
        predictions += int(counts.get(b"predictions", counts.get("predictions", 0)))
        searches.update({_s(t): float(v) for t, v in srch})
        conversions.update({_s(t): float(v) for t, v in conv})
    review_words: dict[tuple[str, bool], Counter[str]] = defaultdict(Counter)
    review_counts: Counter[tuple[str, bool]] = Counter()
    for key, rows in zip(review_keys, more[: len(review_keys)], strict=True):
        parts = _suffix(base, key)  # rev, bucket, category (may hold colons), neg|pos
        cat, negative = ":".join(parts[2:-1]), parts[-1] == "neg"
        for word, v in rows:
            if _s(word) == REVIEWS_MEMBER:
                review_counts[(cat, negative)] += int(v)
            else:
                review_words[(cat, negative)][_s(word)] += int(v)
    examples = {
        ":".join(_suffix(base, key)[1:]): [_s(t) for t in rows]
        for key, rows in zip(example_keys, more[len(review_keys) :], strict=True)
    }
    return WindowData(
        buckets,
        demand,
        intent,
        searches,
        conversions,
        dict(review_counts),
        dict(review_words),
        examples,
        predictions,
    )
