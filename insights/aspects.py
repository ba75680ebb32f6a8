"""Which review words are product aspects: the lexicons a pain point must pass.

Jieba's part-of-speech tags already keep nouns and drop proper nouns (brands, people, places:
``nr``/``ns``/``nt``/``nz``, see :mod:`insights.text`). On top of that a word is not a product
aspect when it is

* a brand, shop or platform jieba tags as a common word (``resources/brands.txt``),
* service, retail, people or verdict vocabulary (``resources/not_aspects.txt``: 客服, 发票, 差劲),
* the category's own name or what shoppers call the product itself
  (``resources/category_words.txt``, plus the nouns and brands of a names file's catalogue).

The lists are generic (a word is on them for what it means, not for one data set); the labelled
check in ``tests/unit/test_insights_aspect_labels.py`` measures what they achieve.

>>> lex = AspectLexicon.default()
>>> [lex.is_product_aspect("手机", w) for w in ("电池", "华为", "客服", "手机", "机子")]
[True, False, False, False, False]
>>> lex.is_product_aspect("蒙牛", "蒙牛牛奶")
False
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

from insights.exceptions import ResourceError


def _words(name: str) -> list[list[str]]:
    try:
        text = resources.files("insights.resources").joinpath(name).read_text(encoding="utf-8")
    except (FileNotFoundError, ModuleNotFoundError) as exc:
        raise ResourceError(f"packaged resource {name!r} is missing") from exc
    return [line.split() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


@dataclass(slots=True)
class AspectLexicon:
    brands: set[str] = field(default_factory=set)
    not_aspects: set[str] = field(default_factory=set)
    own_words: dict[str, set[str]] = field(default_factory=dict)  # category -> its own names

    @classmethod
    def default(cls) -> AspectLexicon:
        """A fresh copy of the packaged lexicons (callers may extend it)."""
        base = _packaged()
        return cls(set(base.brands), set(base.not_aspects), {c: set(w) for c, w in base.own_words.items()})

    def add_category(self, category: str, own_words: Iterable[str] = (), brands: Iterable[str] = ()) -> None:
        """Teach the lexicon a category's product nouns and brands (e.g. from a catalogue)."""
        self.own_words.setdefault(category, set()).update(w.lower() for w in own_words)
        self.brands.update(b.lower() for b in brands)

    def is_product_aspect(self, category: str, word: str) -> bool:
        word = word.lower()
        if word in self.brands or word in self.not_aspects:
            return False
        own = self.own_words.get(category, set()) | {category.lower()}
        # 蒙牛牛奶, 华为手机: a word holding the product's own name or a brand is the product.
        return not any(o in word for o in own if len(o) > 1 or o == word) and not any(
            b in word for b in self.brands if len(b) > 1 and any("\u4e00" <= ch <= "\u9fff" for ch in b)
        )


@lru_cache(maxsize=1)
def _packaged() -> AspectLexicon:
    brands = {w.lower() for line in _words("brands.txt") for w in line}
    not_aspects = {w.lower() for line in _words("not_aspects.txt") for w in line}
    own = {line[0]: {w.lower() for w in line} for line in _words("category_words.txt")}
    return AspectLexicon(brands, not_aspects, own)
