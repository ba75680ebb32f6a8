"""Review pain points: per category, the aspects that set negative reviews apart from positive
ones, each with the phrase shoppers use about it, example reviews and a short suggestion.

Counting is per review (document frequency): a review that says 电池 five times counts once, so
one long rant cannot carry a word. Ranking is :func:`insights.stats.weighted_log_odds` with the
all-category corpus as the informative prior, which pushes down words that are merely frequent
everywhere (手机 in phone reviews) and words seen too rarely to trust.

>>> corpus = ReviewCorpus()
>>> for text in ["电池不耐用，很失望", "电池发热严重", "屏幕很清晰，电池也还行"]:
...     corpus.add("手机", text, negative=text != "屏幕很清晰，电池也还行")
>>> corpus.add("手机", "屏幕漂亮，物流快", negative=False)
>>> [p.aspect for p in corpus.pain_points("手机", top=1, min_negative=1)]
['电池']
"""

from __future__ import annotations

import csv
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from insights.exceptions import DataFileError
from insights.stats import weighted_log_odds
from insights.text import ProductSegmenter, TaggedWord

log = logging.getLogger(__name__)

_EXAMPLE_CANDIDATES = 12  # negative reviews kept per (category, aspect) to pick examples from
_EXAMPLE_MAX_CHARS = 80
_TRAILING_PARTICLES = "了的啊呀吧呢哦啦"
# A phrase must judge: hold an adjective, adverb (不/太) or idiom, not just more nouns/verbs.
_JUDGING_TAGS = frozenset({"a", "ad", "an", "d", "i", "z"})
_MIN_PHRASE_REVIEWS = 3  # a phrase said by fewer negative reviews is an anecdote, not a pattern


@dataclass(frozen=True, slots=True)
class PainPoint:
    """One aspect that distinguishes negative reviews of a category."""

    category: str
    aspect: str
    z: float
    negative_share: float  # fraction of negative reviews that mention it
    positive_share: float
    phrase: str | None  # what negative reviews most often say right after it, e.g. 不耐用
    examples: list[str]
    suggestion: str


@dataclass(slots=True)
class _CategoryCounts:
    docs: Counter[bool] = field(default_factory=Counter)  # negative? -> number of reviews
    words: dict[bool, Counter[str]] = field(default_factory=lambda: {True: Counter(), False: Counter()})
    phrases: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    examples: defaultdict[str, list[str]] = field(default_factory=lambda: defaultdict(list))


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

    def __init__(self, segmenter: ProductSegmenter | None = None) -> None:
        self._seg = segmenter or ProductSegmenter.default()
        self._by_category: defaultdict[str, _CategoryCounts] = defaultdict(_CategoryCounts)

    @property
    def categories(self) -> list[str]:
        return sorted(self._by_category)

    def review_count(self, category: str, negative: bool) -> int:
        return self._by_category[category].docs[negative]

    def add(self, category: str, text: str, negative: bool) -> None:
        """Count one review's aspects (once each) under its category and label."""
        clauses = self._seg.clauses(text)
        counts = self._by_category[category]
        counts.docs[negative] += 1
        aspects = {w.word for clause in clauses for w in clause if w.is_aspect}
        counts.words[negative].update(aspects)
        if not negative:
            return
        seen_phrase: set[str] = set()
        for aspect, phrase in describe_aspects(clauses):
            if aspect not in seen_phrase:
                counts.phrases[aspect][phrase] += 1
                seen_phrase.add(aspect)
        snippet = text.strip().lstrip("\ufeff")
        if len(snippet) <= _EXAMPLE_MAX_CHARS:
            for aspect in aspects:
                bucket = counts.examples[aspect]
                if len(bucket) < _EXAMPLE_CANDIDATES:
                    bucket.append(snippet)

    def add_counts(
        self,
        category: str,
        negative: bool,
        reviews: int,
        words: dict[str, float],
        examples: Iterable[str] = (),
    ) -> None:
        """Merge pre-aggregated counts (from the stream's Redis aggregates).

        Example reviews are re-segmented to attach phrases and examples to their aspects.
        """
        counts = self._by_category[category]
        counts.docs[negative] += reviews
        counts.words[negative].update({w: round(c) for w, c in words.items()})
        if negative:
            for text in examples:
                clauses = self._seg.clauses(text)
                for aspect, phrase in describe_aspects(clauses):
                    counts.phrases[aspect][phrase] += 1
                for aspect in {w.word for c in clauses for w in c if w.is_aspect}:
                    if len(counts.examples[aspect]) < _EXAMPLE_CANDIDATES:
                        counts.examples[aspect].append(text.strip()[:_EXAMPLE_MAX_CHARS])

    def _background(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for counts in self._by_category.values():
            total.update(counts.words[True])
            total.update(counts.words[False])
        return total

    def pain_points(self, category: str, top: int = 5, min_negative: int = 5, examples: int = 2) -> list[PainPoint]:
        """The ``top`` aspects most typical of negative reviews of ``category``.

        ``min_negative``: an aspect must appear in at least this many negative reviews.
        """
        counts = self._by_category.get(category)
        if counts is None or not counts.docs[True] or not counts.docs[False]:
            return []
        ranked = weighted_log_odds(counts.words[True], counts.words[False], self._background())
        n_neg, n_pos = counts.docs[True], counts.docs[False]
        out: list[PainPoint] = []
        for row in ranked:
            if len(out) >= top or row.z <= 0:
                break
            if row.count_a < min_negative:
                continue
            phrase = _top_phrase(counts.phrases.get(row.word))
            neg_share, pos_share = row.count_a / n_neg, row.count_b / n_pos
            picked = _pick_examples(counts.examples.get(row.word, []), row.word, phrase, examples)
            out.append(
                PainPoint(
                    category=category,
                    aspect=row.word,
                    z=row.z,
                    negative_share=neg_share,
                    positive_share=pos_share,
                    phrase=phrase,
                    examples=picked,
                    suggestion=suggest(category, row.word, phrase, neg_share, pos_share),
                )
            )
        return out


def _top_phrase(phrases: Counter[str] | None) -> str | None:
    if not phrases:
        return None
    phrase, count = phrases.most_common(1)[0]
    return phrase if count >= _MIN_PHRASE_REVIEWS else None


def _pick_examples(candidates: list[str], aspect: str, phrase: str | None, k: int) -> list[str]:
    """Prefer reviews that say the aspect with its phrase, then the more detailed (longer)."""

    def key(review: str) -> tuple[bool, int]:
        return (phrase is not None and aspect + phrase in review, len(review))

    return sorted(candidates, key=key, reverse=True)[:k]


def suggest(category: str, aspect: str, phrase: str | None, negative_share: float, positive_share: float) -> str:
    """A one-line product-improvement suggestion.

    >>> suggest("手机", "电池", "不耐用", 0.2, 0.02)
    '手机: improve 电池 (shoppers say “不耐用”) — in 20% of negative vs 2% of positive reviews.'
    """
    said = f" (shoppers say “{phrase}”)" if phrase else ""
    return (
        f"{category}: improve {aspect}{said} — in {negative_share:.0%} of negative "
        f"vs {positive_share:.0%} of positive reviews."
    )


def load_review_csv(path: Path, categories: Iterable[str] | None = None) -> Iterator[tuple[str, bool, str]]:
    """(category, negative, review) rows of a ``cat,label,review`` CSV (label 0 = negative)."""
    wanted = set(categories) if categories else None
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise DataFileError(f"cannot read review CSV {path}: {exc}") from exc
    with handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"cat", "label", "review"} <= set(reader.fieldnames):
            raise DataFileError(f"{path} needs the columns cat,label,review")
        for row in reader:
            cat, label, review = row["cat"], row["label"], row["review"]
            if (wanted is None or cat in wanted) and review and label in {"0", "1"}:
                yield cat, label == "0", review


def corpus_from_csv(
    path: Path, categories: Iterable[str] | None = None, segmenter: ProductSegmenter | None = None
) -> ReviewCorpus:
    """Read and count a review CSV (all categories by default: they form the prior)."""
    corpus = ReviewCorpus(segmenter)
    n = 0
    for cat, negative, review in load_review_csv(path, categories):
        corpus.add(cat, review, negative)
        n += 1
    log.info("reviews counted", extra={"reviews": n, "categories": len(corpus.categories)})
    return corpus
