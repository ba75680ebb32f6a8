"""Wall time per stage, peak resident memory and throughput, for the report and ``metrics.json``."""

from __future__ import annotations

import logging
import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (the kernel's high-water mark)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024, 1)  # bytes on macOS, KB elsewhere


@dataclass
class StageClock:
    """Times named stages; each records its seconds and the peak RSS when it ended."""

    stages: dict[str, dict[str, float]] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        yield
        seconds = time.monotonic() - started
        self.stages[name] = {"seconds": round(seconds, 2), "peak_rss_mb": peak_rss_mb()}
        log.info("stage %s: %.1fs, peak RSS %.0f MB", name, seconds, self.stages[name]["peak_rss_mb"])

    def to_dict(self, events: int) -> dict[str, object]:
        total = sum(s["seconds"] for s in self.stages.values())
        return {
            "peak_rss_mb": peak_rss_mb(),
            "total_seconds": round(total, 2),
            "events": events,
            "stages": self.stages,
        }
