"""Outgoing records against the real broker: a huge refused input must not stall or crash the worker.

On main before issue 14 a dead letter carried the whole refused value in base64: a 600 KB
payload became an 800 KB record that fits no producer batch, and the worker died on it (on
every restart again, since the offset was never committed). Now the dead letter carries a
bounded prefix plus the value's length and SHA-256, and a record the broker still refuses for
good is counted and dropped while the batch goes on (tests/unit/test_worker_publish.py: tansu
enforces no record size limit, so a broker-side refusal cannot be provoked here).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from typing import Any

from support.models import generated_histories, publish_model
from support.streams import Running, TopicReader, dead_letters, event_payloads, interleaved, predicted_ids, produce

from stream.contracts.predictions import DLQ_PAYLOAD_PREFIX_BYTES

HUGE = 600_000


async def test_a_huge_refused_input_becomes_a_bounded_dead_letter(settings_factory: Any) -> None:
    settings = settings_factory(batch_max_size=16, batch_linger_ms=0, max_event_bytes=16_384)
    await asyncio.to_thread(publish_model, settings.model_registry, "v1", seed=1)
    events = interleaved(generated_histories(users=4, seed=2, max_len=10))
    huge = b"{" + os.urandom(HUGE)  # never valid JSON, far over max_event_bytes
    payloads = event_payloads(events)
    payloads.insert(len(payloads) // 2, (b"k", huge))
    predictions = TopicReader(settings.kafka_bootstrap, settings.topic_predictions)
    dlq = TopicReader(settings.kafka_bootstrap, settings.topic_dlq)
    running = Running(settings)
    try:
        await produce(settings.kafka_bootstrap, settings.topic_events, payloads, max_request_size=2 * HUGE)
        await predictions.until(lambda values: predicted_ids(values) >= {e.event_id for e in events})
        letters = dead_letters(await dlq.until(lambda values: len(values) >= 1))
        await running.until(lambda: running.worker.records_done == len(payloads), what="all records committed")
        assert running.alive()
    finally:
        await running.close()
        await predictions.close()
        await dlq.close()
    (letter,) = letters
    assert letter.code == "oversize"
    assert base64.b64decode(letter.payload_b64) == huge[:DLQ_PAYLOAD_PREFIX_BYTES]
    assert letter.payload_bytes == len(huge) and letter.payload_sha256 == hashlib.sha256(huge).hexdigest()
