"""The demo's two Kafka ends: simulated shoppers in, predictions and dead letters out."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Iterator

import msgspec

from stream.config import Settings
from stream.contracts import DeadLetter, Event, Prediction
from stream.kafka_options import kafka_options
from tools.demo.state import DemoState
from tools.simulate import Record, ShopperSimulator, records
from tools.simulate.output import KafkaSink, SendSummary, send_records

logger = logging.getLogger(__name__)

_CONSUMER_POLL_MS = 200
# aiokafka's default (500 ms) is how long a fetch may wait for data: tansu does not return early
# when data arrives, so the default would add up to half a second to every latency the demo shows.
_FETCH_MAX_WAIT_MS = 20


class _RecordingSink:
    """A :class:`KafkaSink` that tells the demo state about every record it sends."""

    def __init__(self, sink: KafkaSink, state: DemoState) -> None:
        self._sink = sink
        self._state = state
        self._decode = msgspec.json.Decoder(Event).decode

    async def write(self, record: Record) -> None:
        if record.malformed is not None:
            self._state.malformed_sent(record.malformed)
        else:
            self._state.event_sent(self._decode(record.value))
        await self._sink.write(record)

    async def flush(self) -> None:
        await self._sink.flush()

    async def close(self) -> None:
        await self._sink.close()


def live_events(seed: int, users: int, backfill_s: float) -> Iterator[Event]:
    """Shoppers starting ``backfill_s`` ago, up to the present (the worker refuses future events)."""
    now_ms = time.time_ns() // 1_000_000
    simulator = ShopperSimulator(seed, users, start_ms=now_ms - int(backfill_s * 1000))
    return itertools.takewhile(lambda e: e.ts <= time.time_ns() // 1_000_000, simulator)


async def feed(
    settings: Settings,
    state: DemoState,
    stop: asyncio.Event,
    *,
    seed: int,
    users: int,
    rate: float | None,
    malformed: float,
    backfill_s: float,
) -> SendSummary:
    """Send simulated events (and about ``malformed`` of them broken) until ``stop`` or exhaustion."""
    sink = _RecordingSink(KafkaSink(settings), state)
    try:
        summary = await send_records(
            records(live_events(seed, users, backfill_s), malformed, seed), sink, rate=rate, stop=stop
        )
    finally:
        await sink.close()
    if summary.stopped_by == "exhausted":
        state.feed_exhausted = True
        logger.info("simulated time reached now after %d events; no more to send", summary.sent)
    return summary


async def consume_outputs(settings: Settings, state: DemoState, stop: asyncio.Event) -> None:
    """Read the predictions and dead-letter topics into ``state`` until ``stop`` is set.

    No consumer group: the demo's topics are fresh, so it reads every partition from the start.
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition

    decode_prediction = msgspec.json.Decoder(Prediction).decode
    decode_dead_letter = msgspec.json.Decoder(DeadLetter).decode
    consumer = AIOKafkaConsumer(
        **kafka_options(settings),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=_FETCH_MAX_WAIT_MS,
    )
    await consumer.start()
    try:
        partitions = [
            TopicPartition(topic, partition)
            for topic in (settings.topic_predictions, settings.topic_dlq)
            for partition in range(settings.topic_partitions)
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=_CONSUMER_POLL_MS)
            for tp, batch_records in batch.items():
                for record in batch_records:
                    if record.value is None:
                        continue
                    if tp.topic == settings.topic_predictions:
                        state.prediction_received(decode_prediction(record.value))
                    else:
                        state.dead_letter_received(decode_dead_letter(record.value).code)
    finally:
        await consumer.stop()
