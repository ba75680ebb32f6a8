"""The product catalogue: categories with readable names and the Chinese lexicon of each.

The default catalogue (``catalogue.json`` beside this module) holds the shoppers' world of the
article this project grew from: phones, tablets, laptops, earphones, phone cases, power banks and a
few neighbours. Other parts of the project use it to show readable category names:

>>> cat = default_catalogue()
>>> cat.name("1001")
'phones'
>>> cat.label("1005")
'phone cases (手机壳)'
>>> cat.name("4756105")  # a category it does not know (e.g. a Taobao id) shows as itself
'4756105'
>>> len(cat) >= 6
True
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from importlib import resources
from typing import Annotated

import msgspec

from tools.simulate.exceptions import CatalogueError

_NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]
_Words = Annotated[list[_NonEmpty], msgspec.Meta(min_length=1)]


class Aspect(msgspec.Struct, frozen=True):
    """One thing shoppers praise or complain about, phrased both ways."""

    positive: _NonEmpty
    negative: _NonEmpty


class Category(msgspec.Struct, frozen=True):
    """A product category and the words shoppers use about it."""

    category_id: _NonEmpty
    name: _NonEmpty
    name_zh: _NonEmpty
    popularity: Annotated[float, msgspec.Meta(gt=0)]
    price_min: Annotated[float, msgspec.Meta(gt=0)]
    price_max: Annotated[float, msgspec.Meta(gt=0)]
    items: Annotated[int, msgspec.Meta(ge=1)]
    nouns: _Words
    brands: _Words
    attrs: _Words
    aspects: Annotated[list[Aspect], msgspec.Meta(min_length=1)]
    complements: list[str] = []


class Sentiments(msgspec.Struct, frozen=True):
    positive: _Words
    negative: _Words


class Lexicon(msgspec.Struct, frozen=True):
    """Category-independent phrasing: templates filled with a category's words."""

    query_templates: _Words
    review_templates: Sentiments
    openings: Sentiments
    closings: Sentiments


class _CatalogueFile(Lexicon, frozen=True):
    categories: Annotated[list[Category], msgspec.Meta(min_length=1)]


class Catalogue:
    """An ordered set of categories plus the shared phrasing lexicon."""

    def __init__(self, categories: list[Category], lexicon: Lexicon) -> None:
        self._by_id = {c.category_id: c for c in categories}
        if len(self._by_id) != len(categories):
            raise CatalogueError("category ids must be unique")
        for category in categories:
            if category.price_min > category.price_max:
                raise CatalogueError(f"category {category.category_id}: price_min > price_max")
            unknown = set(category.complements) - self._by_id.keys()
            if unknown:
                raise CatalogueError(
                    f"category {category.category_id}: unknown complements {sorted(unknown)}"
                )
        self.categories: tuple[Category, ...] = tuple(categories)
        self.lexicon = lexicon

    @classmethod
    def from_json(cls, raw: bytes) -> Catalogue:
        """Parse and validate a catalogue document (the format of ``catalogue.json``)."""
        try:
            doc = msgspec.json.decode(raw, type=_CatalogueFile)
        except msgspec.ValidationError as exc:
            raise CatalogueError(f"invalid catalogue: {exc}") from exc
        lexicon = Lexicon(doc.query_templates, doc.review_templates, doc.openings, doc.closings)
        return cls(doc.categories, lexicon)

    def __len__(self) -> int:
        return len(self.categories)

    def __iter__(self) -> Iterator[Category]:
        return iter(self.categories)

    def __contains__(self, category_id: object) -> bool:
        return category_id in self._by_id

    def __getitem__(self, category_id: str) -> Category:
        try:
            return self._by_id[category_id]
        except KeyError:
            raise CatalogueError(f"unknown category id {category_id!r}") from None

    def name(self, category_id: str) -> str:
        """Readable English name, or the id itself for a category outside the catalogue."""
        category = self._by_id.get(category_id)
        return category.name if category else category_id

    def label(self, category_id: str) -> str:
        """English and Chinese name together, or the id itself when unknown."""
        category = self._by_id.get(category_id)
        return f"{category.name} ({category.name_zh})" if category else category_id


@lru_cache(maxsize=1)
def default_catalogue() -> Catalogue:
    """The catalogue shipped with the package (parsed once, then shared; it is immutable)."""
    raw = resources.files("tools.simulate").joinpath("catalogue.json").read_bytes()
    return Catalogue.from_json(raw)
