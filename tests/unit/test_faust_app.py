"""The faust adapter's pure parts: the held references that keep faust from committing, its config."""

from __future__ import annotations

from typing import Any

import faust
import pytest
from faust.types import TP
from faust.types.tuples import Message
from mode import CrashingSupervisor
from pydantic import SecretStr

from stream.config import Settings
from tools.faust_app import HeldBatch, app_config, broker_credentials, source_partitions, take_within_s


class FakeEvent:
    """A faust event as ``take_events`` yields it: a real message, acked the way ``Event.ack`` does."""

    def __init__(self, message: Message) -> None:
        self.message = message

    def ack(self) -> bool:
        return self.message.ack(None)  # type: ignore[arg-type]  # plain messages ignore the consumer


def taken(n: int) -> list[FakeEvent]:
    """Messages as the stream holds them: one reference each (the stream's)."""
    events = []
    for offset in range(n):
        message = Message("events", 2, 10 + offset, 0.0, 0, {}, b"u1", b"{}", None)
        message.incref()
        events.append(FakeEvent(message))
    return events


def test_a_held_batch_is_committable_only_after_its_release() -> None:
    events = taken(3)
    held = HeldBatch(events)
    for event in events:  # take_events acks as the agent moves on
        event.ack()
    assert not any(event.message.acked for event in events)  # faust may not commit these yet
    held.release()
    assert all(event.message.acked for event in events)


def test_a_batch_that_is_never_released_is_never_committable() -> None:
    events = taken(2)
    HeldBatch(events)
    for event in events:  # the failed agent's take_events generator is closed: it acks its events
        event.ack()
    assert not any(event.message.acked for event in events)


def test_release_is_idempotent_and_records_keep_their_location() -> None:
    events = taken(2)
    held = HeldBatch(events)
    held.release()
    held.release()
    assert [event.message.refcount for event in events] == [1, 1]  # only the stream's own reference left
    assert [(r.topic, r.partition, r.offset, r.key, r.value) for r in held.records()] == [
        ("events", 2, 10, b"u1", b"{}"),
        ("events", 2, 11, b"u1", b"{}"),
    ]


def test_source_partitions_keeps_the_events_topic_only() -> None:
    tps = {TP("events", 0), TP("events", 3), TP("app-__assignor-__leader", 0)}
    assert source_partitions(tps, "events") == {("events", 0), ("events", 3)}


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_app_config_comes_from_the_settings(tmp_path: Any) -> None:
    config = app_config(
        settings(kafka_bootstrap="a:9092, b:9093", batch_max_size=64, kafka_session_timeout_ms=9000), tmp_path
    )
    assert config["broker"] == ["kafka://a:9092", "kafka://b:9093"]
    assert config["broker_max_poll_records"] == 64
    assert config["broker_session_timeout"] == 9.0
    assert config["broker_credentials"] is None
    assert (config["key_serializer"], config["value_serializer"]) == ("raw", "raw")
    assert config["agent_supervisor"] is CrashingSupervisor  # a failure stops the app, never a silent restart
    assert config["web_enabled"] is False
    app = faust.App("config-check", **config)  # faust accepts every key
    assert app.conf.broker_max_poll_records == 64


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_sasl_settings_become_faust_credentials(protocol: str) -> None:
    credentials = broker_credentials(
        settings(
            kafka_security_protocol=protocol,
            kafka_sasl_mechanism="SCRAM-SHA-512",
            kafka_sasl_username="svc",
            kafka_sasl_password=SecretStr("s3cret"),
        )
    )
    assert isinstance(credentials, faust.SASLCredentials)
    assert (credentials.username, credentials.password) == ("svc", "s3cret")
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert (credentials.ssl_context is not None) == (protocol == "SASL_SSL")


def test_tls_settings_become_faust_ssl_credentials() -> None:
    credentials = broker_credentials(settings(kafka_security_protocol="SSL"))
    assert isinstance(credentials, faust.SSLCredentials)


def test_a_zero_linger_still_gives_take_events_a_timeout() -> None:
    # faust reads within=0 as "wait until the batch is full": a quiet stream would never flush.
    assert take_within_s(settings(batch_linger_ms=0)) == 0.001
    assert take_within_s(settings(batch_linger_ms=20)) == 0.02
