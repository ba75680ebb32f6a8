"""Privacy under a running worker: pseudonymised Redis, retention TTLs, erasure, clean logs."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import msgspec
from pydantic import SecretStr
from support.models import generated_histories, publish_model
from support.streams import (
    Captured,
    Running,
    event_payloads,
    predictions_until,
    predicts_all,
    produce,
    redis_dump,
)

from stream.contracts import Event, Prediction
from stream.privacy import forget_user
from stream.store.keys import UserKeys
from stream.worker.pseudonym import Pseudonymizer
from tools.devinfra.redis_server import RedisServer

HMAC_KEY = "test-hmac-key-do-not-use-in-production"
QUERIES = ("降噪蓝牙耳机推荐", "waterproof hiking boots size 44")
REVIEWS = ("电池不耐用，发热严重，客服态度也差", "Arrived broken; the seller ignored three emails")


def _private_events() -> list[Event]:
    """Shoppers with distinctive ids, event ids that do not embed them, and private text."""
    events: list[Event] = []
    for n, history in enumerate(generated_histories(users=6, seed=31, max_len=14)):
        user = f"shopper-{n}-{uuid.uuid4().hex[:8]}"
        for j, event in enumerate(history):
            kind = ("search", "review", event.type)[j % 3]
            events.append(
                msgspec.structs.replace(
                    event,
                    event_id=uuid.uuid4().hex,
                    user_id=user,
                    type=kind,
                    query=QUERIES[j % 2] if kind == "search" else None,
                    text=REVIEWS[j % 2] if kind == "review" else None,
                    rating=2 if kind == "review" else None,
                )
            )
    return events


async def test_pseudonymised_store_retention_erasure_and_clean_logs(
    settings_factory: Any, redis_server: RedisServer
) -> None:
    settings = settings_factory(
        pseudonymize_users=True, user_hmac_key=SecretStr(HMAC_KEY), user_ttl_s=600, batch_linger_ms=0
    )
    await asyncio.to_thread(publish_model, settings.model_registry, "v1", seed=1)
    events = _private_events()
    users = sorted({e.user_id for e in events})
    await produce(settings.kafka_bootstrap, settings.topic_events, event_payloads(events))  # before the capture
    with Captured() as logs:  # everything the worker (and erasure) logs, DEBUG included
        running = Running(settings)
        try:
            values = await predictions_until(settings, predicts_all(events))
        finally:
            await running.close()
        result = await forget_user(settings, users[0])

    # Predictions carry the original user id (downstream needs it)...
    predictions = [msgspec.json.decode(v, type=Prediction) for v in values]
    assert {p.user_id for p in predictions} == set(users)

    # ...while Redis only ever saw the keyed HMAC, in keys and in values.
    pseudonym = Pseudonymizer.from_settings(settings)
    dump = await redis_dump(redis_server.url, settings.redis_key_prefix)
    stored = b"".join(
        key.encode() + b"".join(_flatten(item["value"])) for key, item in dump.items()
    )  # every key and value
    for user in users:
        assert user.encode() not in stored, user
    expected_keys = {k for user in users[1:] for k in UserKeys.of(settings.redis_key_prefix, pseudonym(user)).all()}
    assert set(dump) <= expected_keys and {k for k in dump if k.endswith(":w")} == {
        UserKeys.of(settings.redis_key_prefix, pseudonym(user)).window for user in users[1:]
    }
    for text in (*QUERIES, *REVIEWS):
        assert text.encode() not in stored  # windows keep segmented words, never the raw text

    # Retention: every key of every user expires within user_ttl_s.
    assert dump and all(0 < item["pttl"] <= settings.user_ttl_s * 1000 for item in dump.values()), dump

    # Erasure: the forgotten user's four keys were there (written by the worker) and are gone.
    assert result.keys_deleted >= 3 and result.verified
    assert not any(pseudonym(users[0]) in key for key in dump)

    # No raw review or query text, and no raw user id: in our own log lines at every level, and in
    # everyone's at INFO and above. (aiokafka's DEBUG lines dump raw fetched bytes: production
    # must not run the aiokafka loggers at DEBUG; docs/security.md says so.)
    ours = [line for line in logs.lines if line.split(" ", 2)[1].startswith("stream.")]
    assert any("DEBUG stream." in line for line in ours) or any("INFO stream." in line for line in ours)
    text = "\n".join(ours + [line for line in logs.lines if not line.startswith("DEBUG ")])
    assert "worker started" in text and "erased" in text
    for secret in (*QUERIES, *REVIEWS, *users, HMAC_KEY):
        assert secret not in text, secret


def _flatten(value: Any) -> list[bytes]:
    if isinstance(value, dict):
        return [b for k, v in value.items() for b in (k, v)]
    return list(value)
