"""``manifest.json``: what a model version is, how it was made, and how to feed it."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from stream.features import FeatureSpec

MANIFEST_NAME = "manifest.json"
MODEL_FILE = "model.onnx"
CATEGORY_VOCAB = "categories.json"
ITEM_VOCAB = "items.json"
# 2: one call per micro-batch (per-row ``lengths``, predictions at ``positions``); 1 predicted
# at the last step of every row only and is refused.
FORMAT_VERSION = 2


class TensorSpec(msgspec.Struct, frozen=True):
    """Name, element type and shape of one graph input/output; ``None`` marks a dynamic axis."""

    name: str
    dtype: Literal["int64", "float32"]
    shape: tuple[int | str | None, ...]


# The serving interface every model must expose (shapes use the spec's window and hidden size):
# ``users`` rows of right-padded steps with their lengths and start states; ``events`` picked
# steps (flat ``row * steps + step`` indices) with their pointer windows, one prediction each.
def serving_inputs(spec: FeatureSpec, hidden: int) -> tuple[TensorSpec, ...]:
    return (
        TensorSpec("steps", "int64", ("users", "steps", spec.step_width)),
        TensorSpec("lengths", "int64", ("users",)),
        TensorSpec("h0", "float32", (1, "users", hidden)),
        TensorSpec("c0", "float32", (1, "users", hidden)),
        TensorSpec("positions", "int64", ("events",)),
        TensorSpec("win_cat", "int64", ("events", spec.window)),
        TensorSpec("win_type", "int64", ("events", spec.window)),
        TensorSpec("win_age", "int64", ("events", spec.window)),
    )


def serving_outputs(top_k: int, hidden: int) -> tuple[TensorSpec, ...]:
    return (
        TensorSpec("scores", "float32", ("events", top_k)),
        TensorSpec("categories", "int64", ("events", top_k)),
        TensorSpec("intent", "float32", ("events",)),
        TensorSpec("h1", "float32", (1, "users", hidden)),
        TensorSpec("c1", "float32", (1, "users", hidden)),
    )


class Manifest(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a worker needs to trust and feed a model, and a reviewer needs to judge it."""

    format_version: int = FORMAT_VERSION
    version: str
    created_at: str
    target: Literal["category", "item"] = "category"
    files: dict[str, str]  # file name -> sha256 hex
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    feature_spec: FeatureSpec
    hidden: int
    top_k: int
    n_categories: int
    n_items: int
    model_config: dict[str, Any] = msgspec.field(default_factory=dict)
    intent_horizon: int = 10
    data_summary: dict[str, Any] = msgspec.field(default_factory=dict)
    split: dict[str, Any] = msgspec.field(default_factory=dict)
    metrics: dict[str, Any] = msgspec.field(default_factory=dict)

    def to_json(self) -> bytes:
        return msgspec.json.format(msgspec.json.encode(self), indent=2)

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        return msgspec.json.decode(raw, type=cls)
