"""Erase one user's window and model state from Redis, the way the worker names them.

The worker stores a user under ``Pseudonymizer.from_settings(settings)(user_id)`` (the keyed
HMAC when ``pseudonymize_users`` is on), so erasure applies the very same mapping: with the same
settings (prefix, key, switch) it finds exactly the keys the worker wrote. After the delete it
deletes again as a check: that second ``DEL`` must find none of the user's keys (a worker that
wrote to the user in between, from events still in Kafka, shows up as ``remaining > 0``; those
keys are deleted too, and the caller should retry).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from stream.config import Settings
from stream.store import WindowStore
from stream.store.keys import UserKeys
from stream.worker.pseudonym import Pseudonymizer

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ForgetResult:
    """What an erasure did. ``user_key`` is the pseudonym (never the raw id when pseudonymising)."""

    user_key: str
    keys_deleted: int
    remaining: int  # keys the verifying second delete still found (0 = verified erased)

    @property
    def verified(self) -> bool:
        return self.remaining == 0


async def forget_user(settings: Settings, user_id: str) -> ForgetResult:
    """Delete every Redis key of ``user_id`` (window, ids, meta, state) and verify they are gone.

    Raises :class:`stream.store.StoreUnavailable` when Redis cannot be reached.
    """
    user_key = Pseudonymizer.from_settings(settings)(user_id)
    store = WindowStore(settings)
    try:
        deleted = await store.forget_user(user_key)
        remaining = await store.forget_user(user_key)
    finally:
        await store.close()
    # The key pattern holds the pseudonym, which is safe to log; the raw user id is not logged.
    pattern = UserKeys.of(settings.redis_key_prefix, user_key).window.removesuffix(":w") + ":*"
    logger.info("erased %s: %d keys deleted, %d found by the check", pattern, deleted, remaining)
    return ForgetResult(user_key=user_key, keys_deleted=deleted, remaining=remaining)
