"""Logging set-up: plain or JSON lines, level from settings. Called by entry points only."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line; ``extra={...}`` fields are kept as structured keys."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        payload.update({k: v for k, v in record.__dict__.items() if k not in _RESERVED})
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, ensure_ascii=False, default=str)


def configure_logging(level: str | None = None, json_lines: bool | None = None) -> None:
    """Configure the root logger from arguments, falling back to the settings."""
    from stream.config import get_settings

    settings = get_settings()
    handler = logging.StreamHandler(sys.stderr)
    use_json = settings.log_json if json_lines is None else json_lines
    handler.setFormatter(
        JsonFormatter() if use_json else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level or settings.log_level)
    # aiokafka logs raw message payloads (shoppers' text and ids) at DEBUG: never let them through.
    logging.getLogger("aiokafka").setLevel(max(logging.INFO, root.level))
