"""``demandstream tail``: follow the predictions topic, as a downstream team would see it.

It reads every partition without a consumer group (nothing is committed, nothing to clean up),
from the end by default or from the start with ``--from-beginning``. On the local tansu broker
"from the end" can be wrong after batched produce (DESIGN.md); use ``--from-beginning`` there.

>>> from stream.contracts import CategoryScore
>>> p = Prediction("u7", "e1", 1_700_000_000_000, 1_700_000_000_120, "v3",
...                [CategoryScore("1001", 0.61), CategoryScore("1005", 0.2)], 0.42, 9)
>>> plain_text(p, lambda c: {"1001": "phones", "1005": "phone cases"}[c])
'u7  phones 0.61, phone cases 0.20  intent 0.42  history 9  model v3  (120 ms after the event)'
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from datetime import UTC, datetime

import click
import msgspec
from rich.console import Console
from rich.text import Text

from stream.config import Settings, get_settings
from stream.contracts import Prediction
from stream.kafka_options import kafka_options
from tools.kafka_clients import start_client

logger = logging.getLogger(__name__)

CategoryNamer = Callable[[str], str]
_POLL_MS = 200
_LIVE_DELAY_MS = 60_000


def matches(prediction: Prediction, user: str | None) -> bool:
    """Whether ``--user`` lets this prediction through (no filter: all do)."""
    return user is None or prediction.user_id == user


def plain_text(prediction: Prediction, names: CategoryNamer, top: int = 3) -> str:
    """One readable line: user, top categories with scores, intent, history, model, delay."""
    demand = ", ".join(f"{names(entry.category_id)} {entry.score:.2f}" for entry in prediction.demand[:top])
    delay_ms = prediction.predicted_at - prediction.event_ts
    # A replayed dataset's events are years old: their delay says nothing, their date does.
    when = (
        f"{delay_ms} ms after the event"
        if delay_ms < _LIVE_DELAY_MS
        else "event of " + datetime.fromtimestamp(prediction.event_ts / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    )
    return (
        f"{prediction.user_id}  {demand}  intent {prediction.purchase_intent:.2f}  "
        f"history {prediction.history_len}  model {prediction.model_version}  ({when})"
    )


def styled(prediction: Prediction, names: CategoryNamer) -> Text:
    """:func:`plain_text` with colour: the user in bold, high purchase intent in green."""
    text = Text(plain_text(prediction, names))
    text.stylize("bold", 0, len(prediction.user_id))
    if prediction.purchase_intent >= 0.5:
        text.highlight_words(["intent"], style="bold green")
    return text


async def follow(
    settings: Settings,
    emit: Callable[[bytes, Prediction], None],
    stop: asyncio.Event,
    *,
    from_beginning: bool,
    user: str | None,
    max_messages: int | None = None,
    topic: str | None = None,
) -> int:
    """Call ``emit(raw, prediction)`` for each prediction that passes the filter; returns how many."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    topic = topic or settings.topic_predictions
    decode = msgspec.json.Decoder(Prediction).decode
    consumer = AIOKafkaConsumer(**kafka_options(settings), enable_auto_commit=False, fetch_max_wait_ms=100)
    await start_client(consumer, settings.kafka_bootstrap)
    shown = 0
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            raise click.ClickException(f"topic {topic!r} does not exist at {settings.kafka_bootstrap}")
        consumer.assign(partitions)
        if from_beginning:
            await consumer.seek_to_beginning(*partitions)
        else:
            await consumer.seek_to_end(*partitions)
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=_POLL_MS)
            for records in batch.values():
                for record in records:
                    if record.value is None:
                        continue
                    try:
                        prediction = decode(record.value)
                    except msgspec.DecodeError as exc:  # not ours to fix: say so and keep going
                        logger.warning("skipping undecodable record at %s:%s: %s", record.partition, record.offset, exc)
                        continue
                    if not matches(prediction, user):
                        continue
                    emit(record.value, prediction)
                    shown += 1
                    if max_messages is not None and shown >= max_messages:
                        return shown
    finally:
        await consumer.stop()
    return shown


async def _follow_until_signal(
    settings: Settings,
    emit: Callable[[bytes, Prediction], None],
    *,
    from_beginning: bool,
    user: str | None,
    max_messages: int | None,
    topic: str | None,
) -> int:
    """:func:`follow` until Ctrl-C / SIGTERM (or ``max_messages``)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        return await follow(
            settings, emit, stop, from_beginning=from_beginning, user=user, max_messages=max_messages, topic=topic
        )
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


@click.command()
@click.option("--from-beginning", is_flag=True, help="Start at the oldest retained prediction, not the newest.")
@click.option("--json", "as_json", is_flag=True, help="Print each prediction's JSON exactly as published.")
@click.option("--user", default=None, help="Only this user's predictions.")
@click.option("--max-messages", type=click.IntRange(min=1), default=None, help="Stop after this many.")
@click.option("--topic", default=None, help="Topic instead of DEMANDSTREAM_TOPIC_PREDICTIONS.")
def tail(from_beginning: bool, as_json: bool, user: str | None, max_messages: int | None, topic: str | None) -> None:
    """Follow the predictions topic: readable lines (category names) or --json, optionally one --user."""
    from tools.simulate import default_catalogue

    # aiokafka narrates its subscription at INFO: noise between the predictions.
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, logging.getLogger().getEffectiveLevel()))
    names = default_catalogue().name
    console = Console(highlight=False, soft_wrap=True)  # one prediction per line, even when piped

    def emit(raw: bytes, prediction: Prediction) -> None:
        if as_json:
            click.echo(raw.decode())
        else:
            console.print(styled(prediction, names))

    shown = asyncio.run(
        _follow_until_signal(
            get_settings(), emit, from_beginning=from_beginning, user=user, max_messages=max_messages, topic=topic
        )
    )
    logger.info("tail stopped after %d predictions", shown)
