"""JSON Schema documents generated from the contract types (``docs/schemas/*.json``).

``python -m stream.contracts.schemas docs/schemas`` rewrites them; a test fails if they drift.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from stream.contracts.events import Event
from stream.contracts.predictions import DeadLetter, Prediction

SCHEMA_TYPES: dict[str, type[msgspec.Struct]] = {
    "event.schema.json": Event,
    "prediction.schema.json": Prediction,
    "dead_letter.schema.json": DeadLetter,
}


def schema_documents() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema document, as generated from the code."""
    docs: dict[str, dict[str, Any]] = {}
    for name, kind in SCHEMA_TYPES.items():
        doc = msgspec.json.schema(kind)
        doc["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        doc["title"] = kind.__name__
        docs[name] = doc
    return docs


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_schemas(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, doc in schema_documents().items():
        path = directory / name
        path.write_text(render(doc), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    write_schemas(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/schemas"))
