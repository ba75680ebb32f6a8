"""Which Redis errors the store reports as retriable (``StoreUnavailable``) and which as wrong answers.

During a Redis Cluster failover the client sees TRYAGAIN, CLUSTERDOWN, MASTERDOWN, a slot no node
covers, no reachable node at all, or READONLY from a master just demoted: all of them pass, so the
worker's one retry policy (stream/retry.py) retries the batch. A script error is not transient and
must not be retried forever. redis-py's own retries are off, so that policy is the only one.
"""

from __future__ import annotations

from typing import Any

import pytest
from redis import exceptions as redis_errors

from stream.config import Settings
from stream.store import StoreProtocolError, StoreUnavailable, WindowStore, window_store

RETRIABLE = [
    redis_errors.ConnectionError("Connection refused"),
    redis_errors.TimeoutError("Timeout reading from socket"),
    redis_errors.BusyLoadingError("Redis is loading the dataset in memory"),
    redis_errors.ClusterDownError("The cluster is down"),
    redis_errors.MasterDownError("Link with MASTER is down and replica-serve-stale-data is set to 'no'."),
    redis_errors.TryAgainError("Multiple keys request during rehashing of slot"),
    redis_errors.ClusterError("TTL exhausted."),
    redis_errors.ReadOnlyError("You can't write against a read only replica."),
    redis_errors.SlotNotCoveredError("Slot 42 not covered by the cluster."),
    redis_errors.RedisClusterUnreachableError("unreachable: no node of the cluster answered"),
]

NOT_RETRIABLE = [
    redis_errors.ResponseError("ERR Error running script (call to f_...): bad argument"),
    redis_errors.DataError("Invalid input of type: 'dict'"),
    redis_errors.RedisClusterException("No way to dispatch this command to Redis Cluster."),
]


class _Failing:
    """A client whose every command raises ``error`` (a pure unit: the error mapping only)."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    async def delete(self, *keys: Any) -> int:
        raise self.error

    async def evalsha(self, *args: Any) -> Any:
        raise self.error

    async def ping(self) -> bool:
        raise self.error


def _store(monkeypatch: pytest.MonkeyPatch, error: BaseException, *, cluster: bool = True) -> WindowStore:
    monkeypatch.setattr(window_store, "make_redis_client", lambda _settings: _Failing(error))
    return WindowStore(Settings(redis_url="redis://127.0.0.1:1/0", redis_cluster=cluster))


@pytest.mark.parametrize("error", RETRIABLE, ids=lambda e: type(e).__name__)
async def test_failover_errors_are_store_unavailable(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    store = _store(monkeypatch, error)
    with pytest.raises(StoreUnavailable) as caught:
        await store.forget_user("u1")
    assert caught.value.__cause__ is error
    with pytest.raises(StoreUnavailable):
        await store.append_batch([window_store.WindowAppend("u1", "e1", 1, b"row")])
    assert await store.ping() is False  # readiness: never raises


@pytest.mark.parametrize("error", NOT_RETRIABLE, ids=lambda e: type(e).__name__)
async def test_wrong_answers_are_protocol_errors(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    store = _store(monkeypatch, error)
    with pytest.raises(StoreProtocolError) as caught:
        await store.forget_user("u1")
    assert not isinstance(caught.value, StoreUnavailable)
    assert caught.value.__cause__ is error


@pytest.mark.parametrize("cluster", [False, True], ids=["single", "cluster"])
def test_redis_py_retries_are_off(cluster: bool) -> None:
    """Only stream/retry.py retries: redis-py's own Retry would stack its attempts under it."""
    client = window_store.make_redis_client(Settings(redis_url="redis://127.0.0.1:1/0", redis_cluster=cluster))
    retry = client.retry if cluster else client.connection_pool.connection_kwargs["retry"]
    assert retry.get_retries() == 0
