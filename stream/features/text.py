"""Chinese-aware text tokens for the featurizer: jieba words hashed into a fixed bucket range.

jieba loads its dictionary on first use (about a second), never at import.

>>> hash_token("手机", 4096) == hash_token("手机", 4096)
True
>>> 1 <= hash_token("手机", 4096) < 4096
True
"""

from __future__ import annotations

import re
import threading
import zlib
from functools import lru_cache
from typing import Any

_WORD = re.compile(r"\w", re.UNICODE)
_lock = threading.Lock()
_tokenizer: Any = None


def _jieba() -> Any:
    global _tokenizer
    with _lock:
        if _tokenizer is None:
            import logging

            import jieba

            jieba.setLogLevel(logging.WARNING)
            _tokenizer = jieba.Tokenizer()
    return _tokenizer


def load_segmenter() -> None:
    """Load jieba's dictionary now instead of at the first text that needs it.

    A worker calls this at start-up: loaded lazily, the first search or review event of a
    stream stalls every event in flight for the ~1-2 s the load takes (seen as p99 latency).
    """
    _jieba().initialize()


def hash_token(token: str, buckets: int) -> int:
    """A stable bucket in ``1..buckets-1`` (0 is padding); crc32 is stable across processes."""
    return zlib.crc32(token.encode("utf-8")) % (buckets - 1) + 1


@lru_cache(maxsize=65_536)
def segment(text: str) -> tuple[str, ...]:
    """jieba words of ``text``, lower-cased, without punctuation or whitespace."""
    words = _jieba().lcut(text.lower(), HMM=False)
    return tuple(w for w in words if _WORD.search(w))


def text_token_ids(text: str | None, n: int, buckets: int) -> list[int]:
    """The first ``n`` distinct hashed words of ``text``, zero-padded to length ``n``.

    >>> text_token_ids(None, 3, 64)
    [0, 0, 0]
    >>> len(text_token_ids("蓝牙耳机 降噪", 3, 64))
    3
    """
    ids: list[int] = []
    if text:
        for word in segment(text):
            h = hash_token(word, buckets)
            if h not in ids:
                ids.append(h)
                if len(ids) == n:
                    break
    return ids + [0] * (n - len(ids))
