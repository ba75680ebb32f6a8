"""The worker's in-process copy of the model states it wrote last, so Redis need not send them back.

Redis stays the source of truth: every batch still appends to the window and writes the new
states there. What the cache saves is the return trip of each state blob (~1.8 KB per user and
batch) and its decoding: the worker tells ``append_window.lua`` which state seq it holds for each
user, and the script sends the blob only when the stored seq differs.

A cached state is used only when Redis reports the same seq for the user. That is safe because,
while this worker owns a user's partition, it is the only writer of the user's state, and it
caches exactly what Redis acknowledged writing (a refused compare-and-set drops the entry). A
rebalance may hand the user to another worker that writes its own states, so the cache is
emptied on every revocation and assignment. A user whose history restarted (expiry, erasure)
gets a state seq that this worker wrote itself, or none.

>>> import numpy as np
>>> def state(seq):
...     return ModelState("v1", seq, np.zeros(2), np.zeros(2), np.zeros(3), np.zeros(3), np.zeros(3))
>>> cache = StateCache(max_users=2)
>>> cache.store({"a": state(3), "b": state(5)})
>>> {user: state.seq for user, state in cache.known({"a", "c"}).items()}
{'a': 3}
>>> cache.store({"c": state(1)})  # over the bound: the least recently stored user ("a") leaves
>>> sorted(cache.known({"a", "b", "c"}))
['b', 'c']
>>> cache.discard(["b"]); sorted(cache.known({"a", "b", "c"}))
['c']
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable, Mapping

from stream.worker.state_codec import ModelState

logger = logging.getLogger(__name__)


class StateCache:
    """Per-user model states last written to Redis by this worker, least recently stored evicted first."""

    def __init__(self, max_users: int) -> None:
        self.max_users = max_users  # 0 turns the cache off
        self._states: OrderedDict[str, ModelState] = OrderedDict()

    def __len__(self) -> int:
        return len(self._states)

    def known(self, users: Iterable[str]) -> dict[str, ModelState]:
        """The cached states of those ``users`` that have one."""
        states = self._states
        return {user: state for user in users if (state := states.get(user)) is not None}

    def store(self, states: Mapping[str, ModelState]) -> None:
        """Remember states that Redis acknowledged writing."""
        if not self.max_users:
            return
        cached = self._states
        for user, state in states.items():
            # Own copies: the stepper's states are rows of whole-batch arrays, and one cached row
            # would keep its batch's arrays alive (idle users would pin gigabytes).
            cached[user] = state._replace(
                h=state.h.copy(), c=state.c.copy(), cat=state.cat.copy(), kind=state.kind.copy(), ts=state.ts.copy()
            )
            cached.move_to_end(user)
        while len(cached) > self.max_users:
            cached.popitem(last=False)

    def discard(self, users: Iterable[str]) -> None:
        """Forget users whose stored state may differ from the cached one."""
        for user in users:
            self._states.pop(user, None)

    def clear(self, why: str) -> None:
        if self._states:
            logger.info("state cache cleared (%d users): %s", len(self._states), why)
        self._states.clear()
