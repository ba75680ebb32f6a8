"""Online evaluation: predictions judged against the events that follow them, per model version."""

from stream.evaluation.scoring import IntentOutcome, Judged, OnlineScorer, RepeatBaseline
from stream.evaluation.windows import OnlineMetrics

__all__ = ["IntentOutcome", "Judged", "OnlineMetrics", "OnlineScorer", "RepeatBaseline"]
