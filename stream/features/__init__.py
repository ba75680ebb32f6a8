"""The one featurizer shared by training and serving (no training/serving skew).

An event becomes a fixed-width *static row* (what the window stores), and the time-dependent
features (gap since the previous event, hour, ages of window events) are derived from timestamps by
the same functions in training and in the worker.
"""

from stream.features.encode import EventEncoder, StaticColumn, StepColumn
from stream.features.spec import FeatureSpec
from stream.features.vocab import OOV, PAD, Vocabulary

__all__ = ["OOV", "PAD", "EventEncoder", "FeatureSpec", "StaticColumn", "StepColumn", "Vocabulary"]
