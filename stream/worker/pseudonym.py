"""User-id pseudonymisation: the key the worker uses in Redis (and logs) instead of the user id.

>>> Pseudonymizer(None)("u1")
'u1'
>>> p = Pseudonymizer(b"k")
>>> p("u1") == p("u1") != "u1", len(p("u1"))
(True, 64)
"""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache

from stream.config import Settings

_CACHE_SIZE = 200_000  # active users per worker; an entry is ~200 bytes


class Pseudonymizer:
    """HMAC-SHA256 of the user id with a secret key (hex), or the id itself when disabled.

    The key stays inside this object: it is never logged, and ``repr`` does not show it.
    """

    def __init__(self, key: bytes | None) -> None:
        self.enabled = key is not None
        if key is None:
            self._map = _identity
        else:
            secret = key

            @lru_cache(maxsize=_CACHE_SIZE)
            def keyed(user_id: str) -> str:
                return hmac.new(secret, user_id.encode(), hashlib.sha256).hexdigest()

            self._map = keyed

    @classmethod
    def from_settings(cls, settings: Settings) -> Pseudonymizer:
        if not settings.pseudonymize_users or settings.user_hmac_key is None:
            return cls(None)
        return cls(settings.user_hmac_key.get_secret_value().encode())

    def __call__(self, user_id: str) -> str:
        return self._map(user_id)

    def __repr__(self) -> str:
        return f"Pseudonymizer(enabled={self.enabled})"


def _identity(user_id: str) -> str:
    return user_id
