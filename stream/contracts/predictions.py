"""The prediction contract (topic ``demand.predictions``) and dead-letter records."""

from __future__ import annotations

from typing import Annotated

import msgspec


class CategoryScore(msgspec.Struct, frozen=True):
    """One entry of the demand top-k: a category and its probability of being wanted next."""

    category_id: str
    score: Annotated[float, msgspec.Meta(ge=0, le=1)]


class Prediction(msgspec.Struct, frozen=True):
    """What the worker publishes after each valid event (key = user id)."""

    user_id: str
    event_id: str
    event_ts: Annotated[int, msgspec.Meta(description="ts of the triggering event, epoch ms")]
    predicted_at: Annotated[int, msgspec.Meta(description="publish time, epoch ms")]
    model_version: str
    demand: list[CategoryScore]
    purchase_intent: Annotated[
        float,
        msgspec.Meta(
            ge=0,
            le=1,
            description="P(a purchase among the user's next 10 events), calibrated on the training run's "
            "validation days; it ranks users worse than a logistic regression on their behaviour counts "
            "(docs/model.md, 'Purchase intent')",
        ),
    ]
    history_len: Annotated[int, msgspec.Meta(ge=1, description="events in the user's window after this one")]


# A dead letter carries a bounded prefix of the refused value (plus its length and hash): a
# whole multi-megabyte payload in base64 could exceed the broker's record size limit, and a
# record that can never be produced would be lost (or, retried, stall the worker).
DLQ_PAYLOAD_PREFIX_BYTES = 4096


class DeadLetter(msgspec.Struct, frozen=True):
    """A refused input (topic ``demand.events.dlq``, key = the original key)."""

    code: str
    reason: str
    source_topic: str
    source_partition: int
    source_offset: int
    payload_b64: Annotated[
        str,
        msgspec.Meta(
            description=f"the original message value, base64: its first {DLQ_PAYLOAD_PREFIX_BYTES} bytes at most"
        ),
    ]
    failed_at: Annotated[int, msgspec.Meta(description="epoch ms when it was refused")]
    payload_bytes: Annotated[int, msgspec.Meta(ge=0, description="length of the whole original value")] = 0
    payload_sha256: Annotated[str, msgspec.Meta(description="SHA-256 (hex) of the whole original value")] = ""
