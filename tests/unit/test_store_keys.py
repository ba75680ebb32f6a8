"""Pure units of the window store: key names, entry encoding, slot grouping, laziness."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

from stream.config import Settings
from stream.store import StoreError, WindowAppend, WindowStore
from stream.store.keys import ENTRY_HEADER, UserKeys, decode_entry, encode_entry

STORE_DIR = Path(__file__).resolve().parents[2] / "stream" / "store"


def test_keys_share_one_hash_tag() -> None:
    keys = UserKeys.of("ds", "u-42")
    assert keys.all() == ("ds:{u-42}:w", "ds:{u-42}:ids", "ds:{u-42}:m", "ds:{u-42}:s")
    assert len({key_slot(key.encode()) for key in keys.all()}) == 1


@given(
    seq=st.integers(min_value=1, max_value=2**53),
    ts_ms=st.integers(min_value=0, max_value=2**53),
    event_id=st.text(max_size=200),
    row=st.binary(max_size=300),
)
def test_entry_round_trips(seq: int, ts_ms: int, event_id: str, row: bytes) -> None:
    assert decode_entry(encode_entry(seq, ts_ms, event_id, row)) == (seq, ts_ms, event_id, row)


def test_lua_header_matches_python_header() -> None:
    source = (STORE_DIR / "append_window.lua").read_text()
    assert "local ENTRY = '>I8i8I2'" in source
    assert f"local ENTRY_LEN = {ENTRY_HEADER.size}" in source
    assert "local RECORD = '>I4i8I2I4'" in source  # _APPEND_RECORD ">IqHI"
    states = (STORE_DIR / "write_states.lua").read_text()
    assert "local RECORD = '>I4I8I4'" in states  # _STATE_RECORD ">IQI"


def test_store_does_not_connect_when_built() -> None:
    store = WindowStore(Settings(_env_file=None, redis_url="redis://127.0.0.1:1/0"))  # type: ignore[call-arg]
    assert store._client is None


async def test_empty_calls_need_no_redis() -> None:
    store = WindowStore(Settings(_env_file=None, redis_url="redis://127.0.0.1:1/0"))  # type: ignore[call-arg]
    assert await store.append_batch([]) == []
    assert await store.read_windows([]) == {}
    await store.write_states([])
    assert store._client is None


async def test_overlong_event_id_is_refused_before_any_io() -> None:
    store = WindowStore(Settings(_env_file=None, redis_url="redis://127.0.0.1:1/0"))  # type: ignore[call-arg]
    with pytest.raises(StoreError, match="event_id"):
        await store.append_batch([WindowAppend("u", "x" * 70_000, 1, b"")])
    assert store._client is None


@given(users=st.lists(st.sampled_from([f"user{i}" for i in range(30)]), max_size=60))
def test_cluster_groups_are_single_slot_and_keep_order(users: list[str]) -> None:
    store = WindowStore(Settings(_env_file=None, redis_cluster=True))  # type: ignore[call-arg]
    groups = store._slot_groups(users)
    assert sorted(i for group in groups for i in group) == list(range(len(users)))
    for group in groups:
        assert group == sorted(group)
        assert len({key_slot(f"ds:{{{users[i]}}}:w".encode()) for i in group}) == 1


def test_single_node_keeps_the_batch_in_one_call() -> None:
    store = WindowStore(Settings(_env_file=None))  # type: ignore[call-arg]
    assert store._slot_groups(["a", "b", "c"]) == [[0, 1, 2]]
