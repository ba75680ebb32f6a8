"""Every hyperparameter of the trainer, with its default, in one place (torch-free, so the CLI
can show the defaults without importing torch). ``TrainConfig``, ``TrainOptions``,
``ModelConfig``, the CLI and the demo take their defaults from :data:`DEFAULTS`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Hyperparameters:
    # features and network (ModelConfig, FeatureSpec)
    window: int = 100  # events the pointers read
    hidden: int = 64
    # Transition rows and popularity keep only their top entries, in training exactly as in serving.
    prior_top_m: int = 64
    item_min_count: int = 3  # item vocabulary cut for category targets (item targets keep every item)
    top_k: int = 20  # ranked targets the serving graph returns
    # optimisation (TrainConfig). Measured on the Taobao sample (docs/model.md): with the
    # leave-user-out prior validation MRR keeps rising for 5 epochs at this peak rate; early
    # stopping ends it when it stops.
    epochs: int = 7
    lr: float = 3e-3
    max_tokens: int = 6000  # padded positions per batch
    patience: int = 2
    intent_weight: float = 0.3
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    seed: int = 7


DEFAULTS = Hyperparameters()
