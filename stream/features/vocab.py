"""Token <-> index vocabularies with reserved padding and out-of-vocabulary slots.

>>> v = Vocabulary.build(["a", "b", "a", "c", "a", "b"], min_count=2)
>>> v.tokens
('a', 'b')
>>> v.index("a"), v.index("b"), v.index("zzz")
(2, 3, 1)
>>> v.indices(["b", None, "zzz"]), "a" in v.known
([3, 0, 1], True)
>>> len(v), v.token(3)
(4, 'b')
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, KeysView, Sequence
from pathlib import Path
from typing import Final

import numpy as np

from stream.features.exceptions import VocabularyFormatError

PAD: Final = 0
OOV: Final = 1
_RESERVED: Final = 2


class Vocabulary:
    """An immutable mapping of tokens to indices ``2..len-1``; 0 is padding, 1 is unknown."""

    def __init__(self, tokens: Sequence[str]) -> None:
        self.tokens: tuple[str, ...] = tuple(tokens)
        self._index = {tok: i + _RESERVED for i, tok in enumerate(self.tokens)}
        if len(self._index) != len(self.tokens):
            raise VocabularyFormatError("vocabulary tokens must be unique")

    @classmethod
    def build(cls, tokens: Iterable[str], *, min_count: int = 1, max_size: int | None = None) -> Vocabulary:
        """Most frequent first (ties by first appearance), keeping tokens seen ``min_count`` times."""
        counts = Counter(tokens)
        kept = [tok for tok, n in counts.most_common(max_size) if n >= min_count]
        return cls(kept)

    def __len__(self) -> int:
        return len(self.tokens) + _RESERVED

    def __contains__(self, token: object) -> bool:
        return token in self._index

    def index(self, token: str | None) -> int:
        """Index of ``token``; ``None`` is padding, an unseen token is :data:`OOV`."""
        if token is None:
            return PAD
        return self._index.get(token, OOV)

    def indices(self, tokens: Iterable[str | None]) -> list[int]:
        """:meth:`index` of each token, in one pass (the worker's hot path)."""
        get = self._index.get
        return [PAD if token is None else get(token, OOV) for token in tokens]

    @property
    def known(self) -> KeysView[str]:
        """The tokens as a container with a C-level ``in`` (cheaper per test than the vocabulary)."""
        return self._index.keys()

    def token(self, index: int) -> str:
        return self.tokens[index - _RESERVED]

    def lookup(self, indices: np.ndarray) -> list[str]:
        """Tokens of many indices at once (all must be real tokens, not PAD/OOV)."""
        return [self.tokens[i - _RESERVED] for i in indices.tolist()]

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"tokens": list(self.tokens)}, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Vocabulary:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            tokens = data["tokens"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise VocabularyFormatError(f"{path}: not a vocabulary file ({exc})") from exc
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise VocabularyFormatError(f"{path}: `tokens` must be a list of strings")
        return cls(tokens)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.tokens == other.tokens

    def __hash__(self) -> int:
        return hash(self.tokens)

    def __repr__(self) -> str:
        return f"Vocabulary({len(self.tokens)} tokens)"
