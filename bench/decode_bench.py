"""Why the contracts use msgspec: decode + validate speed of the event contract, side by side.

    .venv/bin/python -m bench.decode_bench [--events 50000]

Decodes the same payloads (simulated shoppers, Chinese text included, plus 10% invalid ones) with
the project's msgspec ``EventDecoder`` and with an equivalent pydantic v2 model validated straight
from JSON bytes, and reports microseconds per event and the ratio.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bench.common import write_results
from stream.contracts import EventDecoder, encode_event
from tools.simulate import ShopperSimulator

logger = logging.getLogger(__name__)


class PydanticEvent(BaseModel):
    """The event contract written as a pydantic model (same fields and bounds)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    event_id: str = Field(min_length=1, max_length=128)
    user_id: str = Field(min_length=1, max_length=128)
    ts: int = Field(ge=0)
    type: Literal["view", "search", "cart", "fav", "purchase", "review"]
    item_id: str | None = Field(None, min_length=1, max_length=128)
    category_id: str | None = Field(None, min_length=1, max_length=128)
    query: str | None = Field(None, max_length=4096)
    text: str | None = Field(None, max_length=4096)
    rating: int | None = Field(None, ge=1, le=5)
    price: float | None = Field(None, ge=0, le=1e9)


def payloads(n: int) -> list[bytes]:
    events = ShopperSimulator(seed=7, users=500)
    out = []
    for i, event in zip(range(n), events, strict=False):
        raw = encode_event(event)
        out.append(raw.replace(b'"type":"', b'"type":"x') if i % 10 == 0 else raw)  # 10% unknown type
    return out


def time_per_event(call: Callable[[bytes], object], data: list[bytes]) -> float:
    """Best of three passes, in microseconds per payload."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for raw in data:
            call(raw)
        best = min(best, time.perf_counter() - start)
    return best / len(data) * 1e6


def main(n: int) -> None:
    data = payloads(n)
    decoder = EventDecoder(max_bytes=1 << 20)

    def with_pydantic(raw: bytes) -> object:
        try:
            return PydanticEvent.model_validate_json(raw)
        except ValidationError as exc:
            return exc

    ms = time_per_event(decoder.decode, data)
    pd = time_per_event(with_pydantic, data)
    results = {"events": n, "msgspec_us_per_event": round(ms, 3), "pydantic_us_per_event": round(pd, 3)}
    write_results(
        "decode_bench",
        {**results, "ratio": round(pd / ms, 2)},
        [("events", str(n)), ("msgspec EventDecoder", f"{ms:.2f} µs/event"),
         ("pydantic v2 model_validate_json", f"{pd:.2f} µs/event"), ("pydantic / msgspec", f"{pd / ms:.1f}x")],
    )  # fmt: skip


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=50_000)
    main(parser.parse_args().events)
