"""``demandstream forget-user``: erases exactly one user's window and state, pseudonymised like the worker.

Talks to the session's private Redis (tests/conftest.py): erasure is only meaningful against a
real store.

The tests are synchronous: the command runs its own event loop (``asyncio.run``).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from stream.config import Settings, get_settings
from stream.store import StateWrite, WindowAppend, WindowStore
from stream.store.keys import UserKeys
from stream.worker.pseudonym import Pseudonymizer
from tools.cli import SUBCOMMANDS, main
from tools.devinfra.processes import free_port
from tools.devinfra.redis_server import RedisServer
from tools.forget_cli import forget_user_command

KEY = "unit-test-hmac-key"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer) -> Iterator[dict[str, str]]:
    """Settings through the environment, as the command reads them (cache cleared around)."""
    values = {
        "DEMANDSTREAM_REDIS_URL": redis_server.url,
        "DEMANDSTREAM_REDIS_KEY_PREFIX": f"forget-{uuid.uuid4().hex[:8]}",
        "DEMANDSTREAM_PSEUDONYMIZE_USERS": "true",
        "DEMANDSTREAM_USER_HMAC_KEY": KEY,
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield values
    get_settings.cache_clear()


async def _seed(settings: Settings, users: list[str]) -> None:
    """Windows and states for ``users``, written the way the worker writes them."""
    store = WindowStore(settings)
    pseudonym = Pseudonymizer.from_settings(settings)
    try:
        appends = [
            WindowAppend(pseudonym(u), f"{u}-e{j}", 1_700_000_000_000 + j, b"row") for u in users for j in range(3)
        ]
        results = await store.append_batch(appends)
        await store.write_states(
            [StateWrite(a.user_key, r.seq, b"state") for a, r in zip(appends, results, strict=True)]
        )
    finally:
        await store.close()


def _keys(settings: Settings, user: str) -> tuple[str, ...]:
    return UserKeys.of(settings.redis_key_prefix, Pseudonymizer.from_settings(settings)(user)).all()


def _existing(url: str, keys: tuple[str, ...]) -> int:
    client = redis.Redis.from_url(url)
    try:
        return int(client.exists(*keys))
    finally:
        client.close()


def test_forget_user_erases_one_user_and_verifies(env: dict[str, str], redis_server: RedisServer) -> None:
    settings = get_settings()
    asyncio.run(_seed(settings, ["alice@example.com", "bob"]))
    alice, bob = _keys(settings, "alice@example.com"), _keys(settings, "bob")
    assert _existing(redis_server.url, alice) == 4 and _existing(redis_server.url, bob) == 4
    assert all("alice" not in key for key in alice)  # stored under the HMAC, never the raw id

    result = CliRunner().invoke(forget_user_command, ["alice@example.com"])

    assert result.exit_code == 0, result.output
    assert f"erased 4 keys from {redis_server.url}" in result.output and "verified erased: yes" in result.output
    assert "alice" not in result.output
    assert _existing(redis_server.url, alice) == 0
    assert _existing(redis_server.url, bob) == 4  # nobody else is touched

    again = CliRunner().invoke(forget_user_command, ["alice@example.com"])
    assert again.exit_code == 0 and f"no data held for this user in {redis_server.url}" in again.output  # idempotent


def test_forget_user_uses_the_workers_key(env: dict[str, str], redis_server: RedisServer, monkeypatch: Any) -> None:
    settings = get_settings()
    asyncio.run(_seed(settings, ["carol"]))
    monkeypatch.setenv("DEMANDSTREAM_USER_HMAC_KEY", "another-key")  # not the key the worker used
    get_settings.cache_clear()
    result = CliRunner().invoke(forget_user_command, ["carol"])
    assert result.exit_code == 0 and "no data held for this user" in result.output
    assert _existing(redis_server.url, _keys(settings, "carol")) == 4  # a wrong key finds nothing


def test_forget_user_reports_an_unreachable_redis(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMANDSTREAM_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    get_settings.cache_clear()
    result = CliRunner().invoke(main, ["forget-user", "dave"])  # main: the one-line error report
    assert result.exit_code == 1 and "Redis unavailable" in result.output


def test_forget_user_refuses_an_empty_id(env: dict[str, str]) -> None:
    result = CliRunner().invoke(forget_user_command, ["  "])
    assert result.exit_code == 2 and "empty" in result.output


def test_forget_user_is_a_demandstream_subcommand() -> None:
    assert SUBCOMMANDS["forget-user"][0] == "tools.forget_cli:forget_user_command"
    assert main.get_command(None, "forget-user") is forget_user_command  # type: ignore[arg-type]
