"""Chinese search queries and reviews that fit a category, from the catalogue's lexicon.

Every template names one of the category's nouns, so a query or review always says what it is
about (the featurizer's jieba tokens then carry the category signal, as on real shop data).

>>> import random
>>> from tools.simulate.catalogue import default_catalogue
>>> cat = default_catalogue()
>>> q = search_query(cat["1006"], cat.lexicon, random.Random(1))
>>> any(noun in q for noun in cat["1006"].nouns)
True
"""

from __future__ import annotations

import random

from tools.simulate.catalogue import Category, Lexicon


def _round_price(value: float) -> int:
    """A price as shoppers type it: two significant digits (e.g. 2999 -> 3000, 137 -> 140)."""
    magnitude = 10 ** max(len(str(int(value))) - 2, 0)
    rounded: int = round(value / magnitude) * magnitude
    return max(rounded, 10)


def search_query(category: Category, lexicon: Lexicon, rng: random.Random) -> str:
    """One search query a shopper interested in ``category`` would type."""
    template: str = rng.choice(lexicon.query_templates)
    price = _round_price(rng.uniform(category.price_min, category.price_max))
    return template.format(
        noun=rng.choice(category.nouns),
        brand=rng.choice(category.brands),
        attr=rng.choice(category.attrs),
        price=price,
    )


def review(category: Category, lexicon: Lexicon, rng: random.Random, *, positive: bool) -> str:
    """One review of a product of ``category``, praising or complaining about one aspect."""
    tone = "positive" if positive else "negative"
    aspect = rng.choice(category.aspects)
    templates: list[str] = getattr(lexicon.review_templates, tone)
    template = rng.choice(templates)
    return template.format(
        noun=rng.choice(category.nouns),
        opening=rng.choice(getattr(lexicon.openings, tone)),
        aspect=aspect.positive if positive else aspect.negative,
        closing=rng.choice(getattr(lexicon.closings, tone)),
    )
