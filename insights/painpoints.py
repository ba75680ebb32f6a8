"""Review pain points: per category, the product aspects that set negative reviews apart from
positive ones, each with the phrase shoppers use about it, two example clauses, a plain
suggestion and, when reviews carry a time, whether complaints about it are rising.

Counting is per review (document frequency): a review that says 电池 five times counts once, so
one long rant cannot carry a word. Ranking is :func:`insights.stats.weighted_log_odds` with the
all-category corpus as the informative prior. A ranked word becomes a pain point only if it is a
product aspect (:class:`insights.aspects.AspectLexicon`: no brands, no service or verdict words,
not the product's own name), is significant (z >= :data:`MIN_Z`), is clearly more frequent in
negative reviews (share ratio >= :data:`MIN_SHARE_RATIO`), and two clauses can quote it.

>>> corpus = ReviewCorpus()
>>> for text in ["电池不耐用，很失望", "电池发热严重", "屏幕很清晰，电池也还行"]:
...     corpus.add("手机", text, negative=text != "屏幕很清晰，电池也还行")
>>> corpus.add("手机", "屏幕漂亮，物流快", negative=False)
>>> [p.aspect for p in corpus.pain_points("手机", top=1, min_negative=1, min_z=0)]
['电池']
"""

from __future__ import annotations

import logging
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from insights.aspects import AspectLexicon
from insights.stats import rate_change, weighted_log_odds
from insights.text import ProductSegmenter, TaggedWord

log = logging.getLogger(__name__)

MIN_Z = 1.96  # the stated significance: two-sided 95% for the log-odds z
MIN_SHARE_RATIO = 1.5  # in >= 1.5x the share of negative as of positive reviews
_CLAUSE_CANDIDATES = 12  # negative clauses kept per (category, aspect) to pick examples from
_CLAUSE_CHARS = (4, 40)
_TRAILING_PARTICLES = "了的啊呀吧呢哦啦"
# A phrase must judge: hold an adjective, adverb (不/太) or idiom, not just more nouns/verbs.
_JUDGING_TAGS = frozenset({"a", "ad", "an", "d", "i", "z"})
_MIN_PHRASE_REVIEWS = 3  # a phrase said by fewer negative reviews is an anecdote, not a pattern
DAY_MS = 86_400_000
_TITLE = re.compile(r"《[^》]*》")


@dataclass(frozen=True, slots=True)
class AspectTrend:
    """Negative reviews naming the aspect per time bucket, and whether their share rises."""

    bucket_ms: int
    buckets: list[int]  # bucket starts, epoch ms
    mentions: list[int]  # negative reviews naming the aspect, per bucket
    lift: float  # share of negative reviews naming it, recent third vs the rest
    lift_lower: float  # one-sided 95% lower bound of the lift
    rising: bool


@dataclass(frozen=True, slots=True)
class PainPoint:
    """One product aspect that distinguishes negative reviews of a category."""

    category: str
    aspect: str
    z: float
    negative_share: float  # fraction of negative reviews that mention it
    positive_share: float
    negative_reviews: int
    phrase: str | None  # what negative reviews most often say right after it, e.g. 不耐用
    examples: list[str]  # two clauses of negative reviews that name it
    suggestion: str
    trend: AspectTrend | None = None


@dataclass(slots=True)
class _CategoryCounts:
    docs: Counter[bool] = field(default_factory=Counter)  # negative? -> number of reviews
    words: dict[bool, Counter[str]] = field(default_factory=lambda: {True: Counter(), False: Counter()})
    phrases: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    clauses: defaultdict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    neg_by_bucket: Counter[int] = field(default_factory=Counter)
    mentions_by_bucket: defaultdict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))


def describe_aspects(clauses: list[list[TaggedWord]]) -> Iterator[tuple[str, str]]:
    """(aspect, phrase) pairs: the up-to-two words after an aspect in its clause.

    >>> seg = ProductSegmenter.default()
    >>> list(describe_aspects(seg.clauses("电池不耐用，散热很差")))
    [('电池', '不耐用'), ('散热', '很差')]
    """
    for clause in clauses:
        for i, word in enumerate(clause):
            if not word.is_aspect:
                continue
            tail: list[TaggedWord] = []
            for nxt in clause[i + 1 : i + 3]:
                if nxt.is_aspect:
                    break
                tail.append(nxt)
            phrase = "".join(w.word for w in tail).rstrip(_TRAILING_PARTICLES)
            judging = any(w.tag in _JUDGING_TAGS for w in tail)
            if len(phrase) >= 2 and judging and any(w.is_term for w in tail):
                yield word.word, phrase


class ReviewCorpus:
    """Accumulates labelled reviews per category and ranks their pain points."""

    def __init__(
        self,
        segmenter: ProductSegmenter | None = None,
        lexicon: AspectLexicon | None = None,
        bucket_ms: int = DAY_MS,
    ) -> None:
        self._seg = segmenter or ProductSegmenter.default()
        self.lexicon = lexicon or AspectLexicon.default()
        self.bucket_ms = bucket_ms
        self._by_category: defaultdict[str, _CategoryCounts] = defaultdict(_CategoryCounts)

    @property
    def categories(self) -> list[str]:
        return sorted(self._by_category)

    def review_count(self, category: str, negative: bool) -> int:
        return self._by_category[category].docs[negative]

    def add(self, category: str, text: str, negative: bool, ts_ms: int | None = None) -> None:
        """Count one review's aspects (once each) under its category, label and time."""
        # Book, film and product titles (《公平定律》) are names, not aspects of the product.
        clauses = self._seg.clauses(_TITLE.sub(" ", text.lstrip("\ufeff")))
        counts = self._by_category[category]
        counts.docs[negative] += 1
        aspects = {w.word for clause in clauses for w in clause if w.is_aspect}
        counts.words[negative].update(aspects)
        if negative:
            self._add_negative(counts, clauses, aspects, ts_ms)

    def _add_negative(
        self, counts: _CategoryCounts, clauses: list[list[TaggedWord]], aspects: set[str], ts_ms: int | None
    ) -> None:
        seen_phrase: set[str] = set()
        for aspect, phrase in describe_aspects(clauses):
            if aspect not in seen_phrase:
                counts.phrases[aspect][phrase] += 1
                seen_phrase.add(aspect)
        for clause in clauses:
            said = "".join(w.word for w in clause)
            if not _CLAUSE_CHARS[0] <= len(said) <= _CLAUSE_CHARS[1]:
                continue
            for aspect in {w.word for w in clause if w.is_aspect}:
                bucket = counts.clauses[aspect]
                if len(bucket) < _CLAUSE_CANDIDATES and said not in bucket:
                    bucket.append(said)
        if ts_ms is not None:
            b = ts_ms // self.bucket_ms * self.bucket_ms
            counts.neg_by_bucket[b] += 1
            for aspect in aspects:
                counts.mentions_by_bucket[aspect][b] += 1

    def add_counts(
        self,
        category: str,
        negative: bool,
        reviews: int,
        words: dict[str, float],
        examples: Iterable[str] = (),
    ) -> None:
        """Merge pre-aggregated counts (from the stream's Redis aggregates).

        Example reviews are re-segmented to attach phrases and example clauses to their aspects.
        """
        counts = self._by_category[category]
        counts.docs[negative] += reviews
        counts.words[negative].update({w: round(c) for w, c in words.items()})
        if negative:
            for text in examples:
                clauses = self._seg.clauses(text)
                self._add_negative(counts, clauses, set(), None)

    def _background(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for counts in self._by_category.values():
            total.update(counts.words[True])
            total.update(counts.words[False])
        return total

    def pain_points(
        self, category: str, top: int = 5, min_negative: int = 5, examples: int = 2, min_z: float = MIN_Z
    ) -> list[PainPoint]:
        """The ``top`` product aspects most typical of negative reviews of ``category``.

        Rising complaints (when reviews carry time) come first, then by z.
        ``min_negative``: an aspect must appear in at least this many negative reviews.
        """
        counts = self._by_category.get(category)
        if counts is None or not counts.docs[True] or not counts.docs[False]:
            return []
        ranked = weighted_log_odds(counts.words[True], counts.words[False], self._background())
        n_neg, n_pos = counts.docs[True], counts.docs[False]
        out: list[PainPoint] = []
        for row in ranked:
            if len(out) >= top or row.z < min_z or row.z <= 0:
                break
            neg_share, pos_share = row.count_a / n_neg, row.count_b / n_pos
            if row.count_a < min_negative or neg_share < MIN_SHARE_RATIO * pos_share:
                continue
            if not self.lexicon.is_product_aspect(category, row.word):
                continue
            phrase = _top_phrase(counts.phrases.get(row.word))
            picked = _pick_examples(counts.clauses.get(row.word, []), row.word, phrase, examples)
            if len(picked) < examples:
                continue  # a pain point nobody can be quoted on is not shown
            out.append(
                PainPoint(
                    category=category,
                    aspect=row.word,
                    z=row.z,
                    negative_share=neg_share,
                    positive_share=pos_share,
                    negative_reviews=int(row.count_a),
                    phrase=phrase,
                    examples=picked,
                    suggestion=suggest(row.word, phrase, neg_share, pos_share),
                    trend=_trend(counts, row.word, self.bucket_ms),
                )
            )
        out.sort(key=lambda p: (not (p.trend and p.trend.rising), -p.z))
        return out


def _trend(counts: _CategoryCounts, aspect: str, bucket_ms: int) -> AspectTrend | None:
    """Share of negative reviews naming ``aspect``: newest third of the buckets vs the rest."""
    buckets = sorted(counts.neg_by_bucket)
    if len(buckets) < 2:
        return None
    by_bucket = counts.mentions_by_bucket.get(aspect, Counter())
    mentions = [by_bucket[b] for b in buckets]
    cut = len(buckets) - max(1, len(buckets) // 3)
    reviews = [counts.neg_by_bucket[b] for b in buckets]
    ch = rate_change(sum(mentions[cut:]), sum(mentions[:cut]), sum(reviews[cut:]), sum(reviews[:cut]))
    return AspectTrend(bucket_ms, buckets, mentions, ch.lift, ch.lift_lower, ch.lift_lower > 1.0)


def _top_phrase(phrases: Counter[str] | None) -> str | None:
    if not phrases:
        return None
    phrase, count = phrases.most_common(1)[0]
    return phrase if count >= _MIN_PHRASE_REVIEWS else None


def _pick_examples(candidates: list[str], aspect: str, phrase: str | None, k: int) -> list[str]:
    """Prefer clauses that say the aspect with its phrase, then the more detailed (longer)."""

    def key(clause: str) -> tuple[bool, int]:
        return (phrase is not None and aspect + phrase in clause, len(clause))

    return sorted(candidates, key=key, reverse=True)[:k]


def suggest(aspect: str, phrase: str | None, negative_share: float, positive_share: float) -> str:
    """One plain sentence a product manager can act on.

    >>> suggest("电池", "不耐用", 0.2, 0.02)
    'Fix the 电池: shoppers say “不耐用”; it comes up in 20% of negative reviews vs 2% of positive ones.'
    """
    said = f": shoppers say “{phrase}”;" if phrase else ":"
    return (
        f"Fix the {aspect}{said} it comes up in {negative_share:.0%} of negative reviews "
        f"vs {positive_share:.0%} of positive ones."
    )
