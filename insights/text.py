"""Jieba segmentation tuned for product insights: a product-word user dictionary, a stop-word
list, and a filter that keeps words a product team can act on.

The tokenizer is a private :class:`jieba.Tokenizer`, not jieba's global one, so the product
dictionary never changes how the stream featurizer segments text. It is built on first use
(loading jieba's dictionary takes about a second), never at import time.

>>> seg = ProductSegmenter.default()
>>> seg.terms("华为手机的电池续航怎么样？！")
['华为', '手机', '电池续航']
>>> "的" in seg.stop_words
True
>>> [t.word for t in seg.tagged("屏幕有坏点") if t.is_aspect]
['屏幕', '坏点']
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from typing import ClassVar

import jieba
import jieba.posseg

from insights.exceptions import ResourceError

log = logging.getLogger(__name__)

_RESOURCE_PACKAGE = "insights.resources"
USER_DICT = "user_dict.txt"
STOP_WORDS = "stop_words.txt"

# A term worth showing has at least one CJK ideograph or latin letter (drops "。。", "2", "～").
_MEANINGFUL = re.compile(r"[\u4e00-\u9fffA-Za-z]")
# Jieba part-of-speech tags of aspects: common nouns and latin words (CPU, XP). Proper nouns
# (nr/ns/nt/nz) are brands, people and places, never a product part; jieba's own verbal nouns
# (vn: 检测, 影响, 运费) are mostly actions, so only the user dictionary's verbal nouns and product
# verbs (散热, 死机, 发热, 漏水), which are themselves the complaint, count as aspects.
_ASPECT_TAGS = frozenset({"n", "ng", "eng", "an"})
# Jieba's dictionary tags some degree phrases as nouns (太暗, 太小): they are verdicts, not parts.
_VERDICT_START = ("太", "很", "不", "没")


_CLAUSE_BREAK = re.compile(r"[，,。.！!？?；;：:、\s~～…]+")


@dataclass(frozen=True, slots=True)
class TaggedWord:
    """One segmented word with its jieba part-of-speech tag.

    ``is_term``: worth counting (not a stop word or punctuation). ``is_aspect``: a term that
    names a product part or property (noun-like, or a product verb such as 死机).
    """

    word: str
    tag: str
    is_term: bool
    is_aspect: bool


def _read_resource(name: str) -> str:
    try:
        return resources.files(_RESOURCE_PACKAGE).joinpath(name).read_text(encoding="utf-8")
    except (FileNotFoundError, ModuleNotFoundError) as exc:
        raise ResourceError(f"packaged resource {name!r} is missing") from exc


def load_stop_words(text: str | None = None) -> frozenset[str]:
    """Parse a stop-word list (one per line, ``#`` comments); the packaged one by default.

    >>> sorted(load_stop_words("# c\\n的\\n 了 \\n\\n"))
    ['了', '的']
    """
    source = _read_resource(STOP_WORDS) if text is None else text
    return frozenset(line.strip() for line in source.splitlines() if line.strip() and not line.startswith("#"))


class ProductSegmenter:
    """Segments shopper text into product terms (queries) and tagged words (reviews)."""

    _default: ClassVar[ProductSegmenter | None] = None
    _default_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, stop_words: Iterable[str] | None = None, user_dict: str | None = None):
        self.stop_words = frozenset(stop_words) if stop_words is not None else load_stop_words()
        self._user_dict = _read_resource(USER_DICT) if user_dict is None else user_dict
        self._init_lock = threading.Lock()
        self._product_verbs: set[str] = set()

    @classmethod
    def default(cls) -> ProductSegmenter:
        """A process-wide segmenter with the packaged dictionary and stop words."""
        with cls._default_lock:
            if cls._default is None:
                cls._default = cls()
            return cls._default

    @cached_property
    def _pos(self) -> jieba.posseg.POSTokenizer:
        with self._init_lock:
            # jieba logs its dictionary loading at DEBUG through a handler of its own, and again
            # through ours: each line twice, whatever the log level. Its WARNINGs still show.
            jieba.setLogLevel(logging.WARNING)
            tokenizer = jieba.Tokenizer()
            tokenizer.initialize()
            # The user dictionary's own tags (死机 v, 散热 vn) are kept for part-of-speech lookups.
            for line in self._user_dict.splitlines():
                parts = line.split()
                if len(parts) == 3 and not line.startswith("#"):
                    tokenizer.add_word(parts[0], int(parts[1]), parts[2])
                    if parts[2] in {"v", "a", "vn"}:
                        self._product_verbs.add(parts[0])
            log.debug("product segmenter ready", extra={"user_words": len(self._product_verbs)})
            return jieba.posseg.POSTokenizer(tokenizer)

    def is_term(self, word: str) -> bool:
        """True for a word worth counting: not a stop word, not punctuation or a bare number."""
        return word not in self.stop_words and _MEANINGFUL.search(word) is not None

    def terms(self, text: str) -> list[str]:
        """Query terms: segmented words minus stop words and punctuation, lower-cased latin."""
        words = self._pos.tokenizer.lcut(text.strip())
        return [w.lower() for w in (w.strip() for w in words) if w and self.is_term(w.lower())]

    def clauses(self, text: str) -> list[list[TaggedWord]]:
        """Review words with part-of-speech tags, grouped by clause (split at punctuation).

        Stop words stay in (``is_term`` False) so that negations such as 不 in 不耐用 survive
        for the phrases that describe an aspect.
        """
        out: list[list[TaggedWord]] = []
        for clause in _CLAUSE_BREAK.split(text.strip()):
            if not clause:
                continue
            words: list[TaggedWord] = []
            for pair in self._pos.lcut(clause, HMM=False):
                word = pair.word.strip().lower()
                if not word:
                    continue
                term = self.is_term(word)
                aspect = (
                    term
                    and len(word) > 1
                    and not word.startswith(_VERDICT_START)
                    and (pair.flag in _ASPECT_TAGS or word in self._product_verbs)
                )
                words.append(TaggedWord(word, pair.flag, term, aspect))
            if words:
                out.append(words)
        return out

    def tagged(self, text: str) -> list[TaggedWord]:
        """The terms of a review with their tags, clause boundaries dropped."""
        return [w for clause in self.clauses(text) for w in clause if w.is_term]
