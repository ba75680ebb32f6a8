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


class DeadLetter(msgspec.Struct, frozen=True):
    """A refused input (topic ``demand.events.dlq``, key = the original key)."""

    code: str
    reason: str
    source_topic: str
    source_partition: int
    source_offset: int
    payload_b64: Annotated[str, msgspec.Meta(description="the original message value, base64")]
    failed_at: Annotated[int, msgspec.Meta(description="epoch ms when it was refused")]
