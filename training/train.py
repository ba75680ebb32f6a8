"""The training loop: CPU, fixed seeds, early stopping on validation MRR@10, a progress bar."""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from training import distributed
from training.histories import Batch, FlatHistories, as_flat, batch_groups, iterate_batches
from training.hyperparams import DEFAULTS
from training.model import DemandLSTM
from training.sequences import EncodedHistory
from training.split import TRAIN

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation settings of one run (defaults: ``training/hyperparams.py``)."""

    epochs: int = DEFAULTS.epochs
    lr: float = DEFAULTS.lr
    max_tokens: int = DEFAULTS.max_tokens
    patience: int = DEFAULTS.patience
    intent_weight: float = DEFAULTS.intent_weight
    weight_decay: float = DEFAULTS.weight_decay
    grad_clip: float = DEFAULTS.grad_clip
    seed: int = DEFAULTS.seed
    threads: int = 2
    progress: bool = True


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float
    valid_mrr10: float
    seconds: float


@dataclass
class TrainResult:
    best_epoch: int
    best_valid_mrr10: float
    curve: list[EpochRecord] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class Predictions:
    """Model outputs on every scored position of one period."""

    targets: np.ndarray  # (n,)
    topk: np.ndarray  # (n, k)
    intent_labels: np.ndarray  # (n,) -1 unknown
    intent_scores: np.ndarray  # (n,)


def seed_everything(seed: int, threads: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.set_num_threads(threads)


def _loss(model: torch.nn.Module, b: Batch, intent_weight: float) -> torch.Tensor:
    logp, intent_logit, _ = model(b.steps, b.win_cat, b.win_type, b.win_age, b.target, b.prior_at_target)
    demand_mask = (b.target_period == TRAIN) & (b.target > 1)
    demand = -(logp * demand_mask).sum() / demand_mask.sum().clamp(min=1)
    intent_mask = (b.target_period == TRAIN) & (b.intent >= 0)
    if not bool(intent_mask.any()):
        return demand  # type: ignore[no-any-return]
    intent = F.binary_cross_entropy_with_logits(intent_logit[intent_mask], b.intent[intent_mask].float())
    return demand + intent_weight * intent  # type: ignore[no-any-return]


SCORE_CELLS = 4_000_000  # (events x V) scores held at once by evaluation (16 MB of float32)


@torch.no_grad()
def predict(
    model: DemandLSTM,
    histories: FlatHistories | Sequence[EncodedHistory],
    period: int,
    k: int = 20,
    max_tokens: int = 20_000,
) -> Predictions:
    """Top-k targets and intent for every position whose next event falls in ``period``.

    Rows come in history order, then position order: the order of ``EncodedEvents.queries``.
    Vocabularies smaller than ``k`` leave the tail of each row at -1 (never a hit). Scores are
    made ``SCORE_CELLS // V`` events at a time, never ``(events, V)`` at once.
    """
    model.eval()
    keys, targets, topks, labels, scores = [], [], [], [], []
    chunk = max(1, SCORE_CELLS // max(model.config.n_targets, 1))
    for b in iterate_batches(as_flat(histories, model.spec), max_tokens):
        h, _ = model.hidden(b.steps)
        sel = (b.target_period == period) & (b.target > 0)  # the events data.queries(period) scores
        if not sel.any():
            continue
        rows, positions = torch.nonzero(sel, as_tuple=True)
        keys.append(np.asarray(b.order)[rows.numpy()] * (1 << 32) + positions.numpy())
        picked = (h[sel], b.win_cat[sel], b.win_type[sel], b.win_age[sel])
        for begin in range(0, len(rows), chunk):
            probs, intent = model.scores(*(t[begin : begin + chunk] for t in picked))
            top = torch.topk(probs, min(k, probs.shape[-1]), dim=-1).indices.numpy()
            topks.append(np.pad(top, ((0, 0), (0, k - top.shape[1])), constant_values=-1))
            scores.append(intent.numpy())
        targets.append(b.target[sel].numpy())
        labels.append(b.intent[sel].numpy())
    if not targets:
        empty = np.zeros(0, dtype=np.int64)
        return Predictions(empty, np.zeros((0, k), dtype=np.int64), empty, np.zeros(0))
    order = np.argsort(np.concatenate(keys), kind="stable")
    return Predictions(
        np.concatenate(targets)[order], np.concatenate(topks)[order],
        np.concatenate(labels)[order], np.concatenate(scores)[order],
    )  # fmt: skip


def fit(
    model: DemandLSTM,
    histories: FlatHistories | Sequence[EncodedHistory],
    valid_score: Callable[[DemandLSTM], float],
    config: TrainConfig,
) -> TrainResult:
    """Train with Adam; keep the weights of the epoch with the best validation MRR@10.

    Histories with leave-user-out prior values attached (``sequences.attach_leave_user_out``)
    train on those; without them the model's own prior is read. Under ``torchrun`` each rank
    trains on its shard of the users through DDP (``training/distributed.py``).
    """
    seed_everything(config.seed, config.threads)
    rank, world = distributed.rank_and_world()
    rng = np.random.default_rng(config.seed + rank)
    train = as_flat(histories, model.spec)
    if world > 1:  # this rank's users: every world-th, starting at its rank
        train = train.select(np.arange(rank, len(train), world))
    net = distributed.wrap(model)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    n_batches = distributed.min_across_ranks(len(batch_groups(train, config.max_tokens)))
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=config.lr, total_steps=config.epochs * n_batches)
    result = TrainResult(best_epoch=-1, best_valid_mrr10=-math.inf)
    best_state: dict[str, torch.Tensor] = {}
    started, stale = time.monotonic(), 0
    for epoch in range(1, config.epochs + 1):
        t0, losses = time.monotonic(), []
        model.train()
        batches = itertools.islice(iterate_batches(train, config.max_tokens, rng), n_batches)
        bar = tqdm(batches, total=n_batches, desc=f"epoch {epoch}", disable=not config.progress, leave=False)
        for batch in bar:
            loss = _loss(net, batch, config.intent_weight)
            optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimiser.step()
            scheduler.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
        valid = valid_score(model)
        record = EpochRecord(epoch, float(np.mean(losses)), valid, time.monotonic() - t0)
        result.curve.append(record)
        log.info(
            "epoch %d: train loss %.4f, valid MRR@10 %.4f (%.1fs)", epoch, record.train_loss, valid, record.seconds
        )
        if valid > result.best_valid_mrr10:
            result.best_epoch, result.best_valid_mrr10, stale = epoch, valid, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
            # Only an early stop when epochs were left to run; after the last one it is just the end.
            if stale >= config.patience and epoch < config.epochs:
                log.info("early stop after epoch %d of %d (best %d)", epoch, config.epochs, result.best_epoch)
                break
    if result.best_epoch < len(result.curve):
        log.info("keeping the weights of epoch %d (best validation MRR@10)", result.best_epoch)
    model.load_state_dict(best_state)
    result.seconds = time.monotonic() - started
    return result
