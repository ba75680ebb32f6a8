"""Display names for category and item ids, so a person reads "earphones", not ``1008``.

The names come from a file the caller passes (``--names``): either the simulator's catalogue
(``tools/simulate/catalogue.json``: a ``categories`` list of ``{category_id, name, name_zh}``)
or a plain names file ``{"categories": {id: name}, "items": {id: name}}``. The model registry's
vocabularies hold ids only, so they cannot name anything by themselves. Unknown ids show as the
id itself: a report never hides a category because it has no name.

>>> names = Names.from_json(b'{"categories": {"1008": "earphones"}}')
>>> names.category("1008"), names.category("77")
('earphones', '77')
>>> cat = b'{"categories": [{"category_id": "1001", "name": "phones", "name_zh": "\\xe6\\x89\\x8b\\xe6\\x9c\\xba"}]}'
>>> Names.from_json(cat).category("1001")
'phones (手机)'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from insights.exceptions import DataFileError


@dataclass(frozen=True, slots=True)
class Names:
    """id -> display name for categories and items (empty: every id shows as itself)."""

    categories: dict[str, str] = field(default_factory=dict)
    items: dict[str, str] = field(default_factory=dict)
    # From a catalogue: what a category's product is called (手机, 智能手机) and its brands, which
    # are never its pain points.
    own_words: dict[str, list[str]] = field(default_factory=dict)
    brands: dict[str, list[str]] = field(default_factory=dict)

    def category(self, category_id: str) -> str:
        return self.categories.get(category_id, category_id)

    def item(self, item_id: str) -> str:
        return self.items.get(item_id, item_id)

    @property
    def source(self) -> str:
        return f"{len(self.categories)} category names, {len(self.items)} item names"

    @classmethod
    def from_json(cls, raw: bytes, where: str = "names") -> Names:
        """Parse a plain names file or a simulator catalogue (see the module docstring)."""
        try:
            doc: Any = msgspec.json.decode(raw)
        except msgspec.DecodeError as exc:
            raise DataFileError(f"{where}: not JSON ({exc})") from exc
        if not isinstance(doc, dict):
            raise DataFileError(f"{where}: expected a JSON object with `categories`")
        cats, items = doc.get("categories", {}), doc.get("items", {})
        own: dict[str, list[str]] = {}
        brands: dict[str, list[str]] = {}
        if isinstance(cats, list):  # the simulator's catalogue format
            rows = [c for c in cats if isinstance(c, dict) and "category_id" in c]
            cats = {str(c["category_id"]): _catalogue_label(c) for c in rows}
            for c in rows:
                cid = str(c["category_id"])
                own[cid] = [str(w) for w in [c.get("name_zh"), c.get("name"), *c.get("nouns", [])] if w]
                brands[cid] = [str(b) for b in c.get("brands", [])]
        if not isinstance(cats, dict) or not isinstance(items, dict):
            raise DataFileError(f"{where}: `categories` and `items` must map ids to names")
        return cls({str(k): str(v) for k, v in cats.items()}, {str(k): str(v) for k, v in items.items()}, own, brands)

    @classmethod
    def load(cls, path: Path) -> Names:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise DataFileError(f"cannot read names file {path}: {exc}") from exc
        return cls.from_json(raw, str(path))


def _catalogue_label(category: dict[str, Any]) -> str:
    name, zh = category.get("name"), category.get("name_zh")
    if name and zh:
        return f"{name} ({zh})"
    return str(name or zh or category["category_id"])
