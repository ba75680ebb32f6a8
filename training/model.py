"""The demand network: an LSTM over a shopper's events with two heads.

* next-category demand: a mixture of experts whose weights the LSTM state sets at every step:
  two pointers over the user's own recent window (short- and long-memory repeat, which dominates
  real e-commerce data), a fixed first-order transition prior counted on training data, and a
  learned generator over the whole vocabulary for what the others miss. The experts start as the
  tuned repeat/transition heuristics; training learns when to depart from them. Pointer scores see
  each window event's behaviour type, age, recency rank and whether it matches the newest event.
* purchase intent: the probability of a purchase among the user's next events.

:class:`IncrementalStep` is the serving graph exported to ONNX: it takes the new event(s) and the
previous ``(h, c)`` and returns top-k scores, intent and the new ``(h, c)``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from stream.features import FeatureSpec, StaticColumn
from stream.features.encode import N_TYPES, TYPE_INDEX
from training.candidates import CANDIDATE_MIN_TARGETS, sparse_top_k
from training.hyperparams import DEFAULTS
from training.priors import SparsePrior

_NEG = -1e9
MAX_DENSE_GENERATOR = 20_000  # a learned generator is a dense (..., V) softmax


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of the network (recorded in the manifest)."""

    n_categories: int
    n_items: int
    target: str = "category"  # "item": the demand head and pointer rank items instead
    hidden: int = DEFAULTS.hidden
    cat_dim: int = 48
    item_dim: int = 16
    text_dim: int = 16
    small_dim: int = 8
    pointer_dim: int = 16
    dropout: float = 0.2
    # Category/item identity embeddings and a learned vocabulary-wide generator memorise the
    # training days' popular categories and overfit the next day; without them the network learns
    # behaviour dynamics (when to trust repeat vs transitions) and all category knowledge comes from
    # the counted priors and the user's own window. Both stay available for larger datasets.
    identity_features: bool = False
    learn_generator: bool = False
    # Transition rows and popularity keep only their top entries (training/priors.py): serving
    # scatters a few dozen values per expert instead of adding vocabulary-wide rows per event.
    prior_top_m: int = DEFAULTS.prior_top_m
    short_half_life_h: float = 0.25  # initial decay of the short-memory pointer
    long_half_life_h: float = 72.0  # initial decay of the long-memory pointer

    @property
    def n_targets(self) -> int:
        return self.n_items if self.target == "item" else self.n_categories

    def to_dict(self) -> dict[str, int | str]:
        return asdict(self)


def previous_other(win_cat: Tensor) -> Tensor:
    """The newest window category other than the newest event's (0 when there is none).

    >>> previous_other(torch.tensor([[5, 5, 1, 7, 5], [3, 3, 0, 0, 0]])).tolist()
    [7, 0]
    """
    other = (win_cat != win_cat[..., :1]) & (win_cat > 1)
    first = other.to(torch.float32).argmax(dim=-1, keepdim=True)  # ties: the first (newest) one
    return (win_cat.gather(-1, first) * other.any(dim=-1, keepdim=True)).squeeze(-1)


class WindowPointer(nn.Module):
    """Attention over the user's window events, scattered onto the vocabulary.

    Keys are category-agnostic (type, age, rank, same-as-newest): category-specific keys would
    memorise per-category stickiness and overfit. Biases start as an exponential decay with
    ``half_life_h`` and behaviour-type weights, so an untrained pointer *is* the repeat heuristic.
    """

    # What a repeat of a category is worth by the behaviour that showed it (tuned on validation).
    _TYPE_WEIGHTS: ClassVar[dict[str, float]] = {"fav": 0.5, "purchase": 0.25}

    def __init__(self, spec: FeatureSpec, hidden: int, dim: int, half_life_h: float) -> None:
        super().__init__()
        self.spec, self.dim = spec, dim
        self.query = nn.Linear(hidden, dim)
        self.key_type = nn.Embedding(N_TYPES, dim)
        self.key_age = nn.Embedding(spec.n_age_buckets, dim)
        self.key_rank = nn.Embedding(spec.window, dim)
        self.key_same = nn.Embedding(2, dim)
        self.bias_type = nn.Embedding(N_TYPES, 1)
        self.bias_age = nn.Embedding(spec.n_age_buckets, 1)
        self.bias_rank = nn.Embedding(spec.window, 1)
        self.bias_same = nn.Embedding(2, 1)
        self.fused_keys: Tensor | None = None  # set by fuse() for serving
        self.fused_bias: Tensor | None = None
        edges_h = torch.tensor([0.0, *spec.age_edges_s], dtype=torch.float32) / 3600
        upper = torch.cat([edges_h[1:], edges_h[-1:] * 2])
        mid_h = torch.cat([torch.zeros(1), (edges_h + upper) / 2])[: spec.n_age_buckets]
        with torch.no_grad():
            self.query.weight.zero_()
            self.query.bias.zero_()
            self.bias_age.weight.copy_((-(mid_h / half_life_h) * math.log(2)).clamp(min=-30.0)[:, None])
            self.bias_type.weight.zero_()
            for name, weight in self._TYPE_WEIGHTS.items():
                self.bias_type.weight[TYPE_INDEX[name]] = math.log(weight)
            self.bias_rank.weight.zero_()
            self.bias_same.weight.zero_()

    def key_code(self, win_cat: Tensor, win_type: Tensor, win_age: Tensor) -> Tensor:
        """Row of each window entry in the fused tables (:meth:`fuse`)."""
        rank = torch.arange(self.spec.window, device=win_cat.device).expand_as(win_cat)
        same = (win_cat == win_cat[..., :1]).long()
        return ((win_type * self.spec.n_age_buckets + win_age) * self.spec.window + rank) * 2 + same

    def forward(self, h: Tensor, win_cat: Tensor, win_type: Tensor, win_age: Tensor) -> Tensor:
        """Attention ``(..., W)`` over the window; entries sum per category into a distribution."""
        if self.fused_keys is not None and self.fused_bias is not None:
            code = self.key_code(win_cat, win_type, win_age)
            keys, bias = self.fused_keys[code], self.fused_bias[code]
        else:
            rank = torch.arange(self.spec.window, device=h.device).expand_as(win_cat)
            same = (win_cat == win_cat[..., :1]).long()
            keys = torch.tanh(
                self.key_type(win_type) + self.key_age(win_age) + self.key_rank(rank) + self.key_same(same)
            )
            bias = (self.bias_type(win_type) + self.bias_age(win_age) + self.bias_rank(rank) + self.bias_same(same))[
                ..., 0
            ]
        return self.attend(h, keys, bias, win_cat)

    def attend(self, h: Tensor, keys: Tensor, bias: Tensor, win_cat: Tensor) -> Tensor:
        """Softmax over the window of ``query(h) . key + bias``, padding/OOV entries masked."""
        # A batched MatMul, not Mul + ReduceSum: one kernel instead of two passes over (W, dim).
        scores = torch.matmul(keys, self.query(h).unsqueeze(-1)).squeeze(-1) / self.dim**0.5
        return torch.softmax((scores + bias).masked_fill(win_cat <= 1, _NEG), dim=-1)

    @torch.no_grad()
    def fuse(self) -> None:
        """Precompute keys and biases for every (type, age, rank, same) combination.

        Keys depend only on those four small discrete inputs, so serving can look each window
        entry up once instead of gathering and adding four embeddings and a tanh per entry; the
        exported graph does the same arithmetic, which the export parity check confirms.
        """
        types = torch.arange(N_TYPES)[:, None, None, None]
        ages = torch.arange(self.spec.n_age_buckets)[None, :, None, None]
        ranks = torch.arange(self.spec.window)[None, None, :, None]
        sames = torch.arange(2)[None, None, None, :]
        keys = self.key_type(types) + self.key_age(ages) + self.key_rank(ranks) + self.key_same(sames)
        bias = self.bias_type(types) + self.bias_age(ages) + self.bias_rank(ranks) + self.bias_same(sames)
        self.fused_keys = torch.tanh(keys).reshape(-1, self.dim).clone()
        self.fused_bias = bias.reshape(-1).clone()

    def unfuse(self) -> None:
        """Back to computing keys from the embeddings (training; the parity reference)."""
        self.fused_keys = self.fused_bias = None


class DemandLSTM(nn.Module):
    """LSTM + mixture-of-experts demand head + intent head.

    ``prior`` (``training/priors.py``): the first-order transition prior P(next | newest event's
    target) counted on training data, as top-``m`` index/value tables ``(V, m)``, and the top-``m``
    popularity entries; a low-rank softmax learns rare transitions poorly, and a lookup costs
    nothing at serving time. Without it (tests, tiny data) every row is the popularity row.

    Two entry points carry every use of the network: :meth:`hidden` (steps -> LSTM states) and
    :meth:`scores` (states + pointer windows -> demand distribution and intent), used by
    evaluation, the torch parity reference and the serving graph; training reads the same mixture
    at the target only (:meth:`target_log_prob`), so no ``B x T x V`` tensor is built.
    """

    prior_idx: Tensor
    prior_val: Tensor
    pop_idx: Tensor
    pop_val: Tensor

    def __init__(self, spec: FeatureSpec, config: ModelConfig, prior: SparsePrior | None = None) -> None:
        super().__init__()
        self.spec, self.config = spec, config
        c, v = config, config.n_targets
        if c.learn_generator and v > MAX_DENSE_GENERATOR:
            raise ValueError(f"a learned generator is a dense softmax over {v} targets (max {MAX_DENSE_GENERATOR})")
        self.type_emb = nn.Embedding(N_TYPES, c.small_dim, padding_idx=0)
        if c.identity_features:
            self.cat_emb = nn.Embedding(c.n_categories, c.cat_dim, padding_idx=0)
            self.item_emb = nn.Embedding(c.n_items, c.item_dim, padding_idx=0)
        self.price_emb = nn.Embedding(spec.n_price_buckets, c.small_dim, padding_idx=0)
        self.rating_emb = nn.Embedding(6, c.small_dim, padding_idx=0)
        self.gap_emb = nn.Embedding(spec.n_gap_buckets, c.small_dim)
        self.hour_emb = nn.Embedding(25, c.small_dim, padding_idx=0)
        self.text_emb = nn.Embedding(spec.text_buckets, c.text_dim, padding_idx=0)
        d_in = (c.cat_dim + c.item_dim if c.identity_features else 0) + c.text_dim + 5 * c.small_dim
        self.lstm = nn.LSTM(d_in, c.hidden, batch_first=True)
        self.dropout = nn.Dropout(c.dropout)
        self.short = WindowPointer(spec, c.hidden, c.pointer_dim, c.short_half_life_h)
        self.long = WindowPointer(spec, c.hidden, c.pointer_dim, c.long_half_life_h)
        if prior is None:
            uniform = np.full(v, 1.0 / max(v - 2, 1))
            uniform[:2] = 0.0  # padding and OOV are never predicted
            prior = SparsePrior.popularity_only(uniform, c.prior_top_m)
        if prior.n_targets != v:
            raise ValueError(f"prior has {prior.n_targets} rows for {v} targets")
        self.register_buffer("prior_idx", torch.from_numpy(prior.idx))
        self.register_buffer("prior_val", torch.from_numpy(prior.val))
        self.register_buffer("pop_idx", torch.from_numpy(prior.pop_idx))
        self.register_buffer("pop_val", torch.from_numpy(prior.pop_val))
        self.joint_keys: Tensor | None = None  # set by fuse_for_serving()
        # short pointer, long pointer, transitions from the newest target, generator (popularity),
        # and transitions from the target before it (what a user returns to after a detour)
        self.gate = nn.Linear(c.hidden, 5)
        self.generator: nn.Linear | None = None
        if c.learn_generator:
            self.generator = nn.Linear(c.hidden, v)
            popularity = torch.zeros(v).scatter_add(0, self.pop_idx, self.pop_val)
            with torch.no_grad():
                self.generator.weight.zero_()
                self.generator.bias.copy_(torch.log(popularity + 1e-9))
        with torch.no_grad():
            self.gate.weight.zero_()
            # The tuned heuristic blend (repeat 1, long repeat 0.6, transitions 0.5) with a popularity
            # fill and a small second-order share that training may grow.
            self.gate.bias.copy_(torch.log(torch.tensor([1.0, 0.6, 0.5, 0.05, 0.05])))
        self.intent = nn.Sequential(nn.Linear(c.hidden, 64), nn.ReLU(), nn.Linear(64, 1))

    def embed_steps(self, steps: Tensor) -> Tensor:
        """``(B, S, step_width)`` int64 -> ``(B, S, d_in)``."""
        s = self.spec.static_width
        text_ids = steps[..., StaticColumn.TEXT : s]
        text_sum = self.text_emb(text_ids).sum(dim=-2)
        text_n = (text_ids > 0).sum(dim=-1, keepdim=True).clamp(min=1).to(text_sum.dtype)
        parts = [
            text_sum / text_n,
            self.type_emb(steps[..., StaticColumn.TYPE]),
            self.price_emb(steps[..., StaticColumn.PRICE]),
            self.rating_emb(steps[..., StaticColumn.RATING]),
            self.gap_emb(steps[..., s]),
            self.hour_emb(steps[..., s + 1]),
        ]
        if self.config.identity_features:
            parts += [self.cat_emb(steps[..., StaticColumn.CATEGORY]), self.item_emb(steps[..., StaticColumn.ITEM])]
        return torch.cat(parts, dim=-1)

    def hidden(self, steps: Tensor, state: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """Entry point 1: steps ``(B, S, F)`` (and an optional ``(h, c)``) -> states ``(B, S, H)``
        and the final ``(h, c)``. Dropout acts in training mode only."""
        out, final = self.lstm(self.dropout(self.embed_steps(steps)), state)
        return self.dropout(out), final

    def _mixture(self, h: Tensor, win_cat: Tensor, win_type: Tensor, win_age: Tensor) -> tuple[Tensor, Tensor]:
        """Expert weights ``(..., 5)`` and the weighted pointer attention ``(..., W)`` (padding and
        OOV window entries carry none)."""
        w = torch.softmax(self.gate(h), dim=-1)
        if self.joint_keys is not None:  # serving: both pointers' keys and biases in one gather
            rows, d = self.joint_keys[self.short.key_code(win_cat, win_type, win_age)], self.short.dim
            short = self.short.attend(h, rows[..., :d], rows[..., 2 * d], win_cat)
            long = self.long.attend(h, rows[..., d : 2 * d], rows[..., 2 * d + 1], win_cat)
        else:
            short = self.short(h, win_cat, win_type, win_age)
            long = self.long(h, win_cat, win_type, win_age)
        attention = (w[..., 0:1] * short + w[..., 1:2] * long) * (win_cat > 1)
        return w, attention

    def _rows(self, win_cat: Tensor) -> tuple[Tensor, Tensor]:
        last = self.prior_idx.shape[0] - 1
        return win_cat[..., 0].clamp(max=last), previous_other(win_cat).clamp(max=last)

    def scores(self, h: Tensor, win_cat: Tensor, win_type: Tensor, win_age: Tensor) -> tuple[Tensor, Tensor]:
        """Entry point 2: demand distribution ``(..., V)`` and intent probability ``(...)``.

        Every expert's few non-zero entries go in ONE scatter (the pointers' window entries, two
        prior rows and the popularity row); the only vocabulary-wide work per event is the zero
        fill the scatter writes into. Callers bound the leading size (``predict`` chunks it).
        """
        w, attention = self._mixture(h, win_cat, win_type, win_age)
        newest, other = self._rows(win_cat)
        lead = win_cat.shape[:-1]
        index = [win_cat, self.prior_idx[newest], self.prior_idx[other]]
        values = [attention, w[..., 2:3] * self.prior_val[newest], w[..., 4:5] * self.prior_val[other]]
        if self.generator is not None:
            base = w[..., 3:4] * torch.softmax(self.generator(h), dim=-1)
        else:
            base = torch.zeros(*lead, self.config.n_targets, dtype=h.dtype, device=h.device)
            index.append(self.pop_idx.expand(*lead, self.pop_idx.shape[-1]))
            values.append(w[..., 3:4] * self.pop_val.expand(*lead, self.pop_val.shape[-1]))
        probs = base.scatter_add(-1, torch.cat(index, dim=-1), torch.cat(values, dim=-1))
        return probs, torch.sigmoid(self.intent(h).squeeze(-1))

    def top_candidates(
        self, h: Tensor, win_cat: Tensor, win_type: Tensor, win_age: Tensor, top_k: int
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Top-k of :meth:`scores` (scores, indices) and intent for ``(N, H)`` states, scoring only
        the ``W + 3m`` entries the experts can give (``training/candidates.py``); no learned generator."""
        if self.generator is not None:
            raise ValueError("a learned generator scores the whole vocabulary; use the dense scores")
        w, attention = self._mixture(h, win_cat, win_type, win_age)
        newest, other = self._rows(win_cat)
        n, m = h.shape[0], self.pop_idx.shape[-1]
        index = torch.cat([win_cat, self.prior_idx[newest], self.prior_idx[other], self.pop_idx.expand(n, m)], dim=-1)
        values = torch.cat(
            [
                attention,
                w[:, 2:3] * self.prior_val[newest],
                w[:, 4:5] * self.prior_val[other],
                w[:, 3:4] * self.pop_val.expand(n, m),
            ],
            dim=-1,
        )
        top, indices = sparse_top_k(index, values, top_k)
        return top, indices, torch.sigmoid(self.intent(h).squeeze(-1))

    def target_log_prob(
        self,
        h: Tensor,
        win_cat: Tensor,
        win_type: Tensor,
        win_age: Tensor,
        target: Tensor,
        prior_at_target: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        """``log p(target)`` of the :meth:`scores` distribution without building it: the mixture is
        exact at one entry. ``prior_at_target`` replaces the two prior rows' values at the target
        (training passes them without the user's own transitions: ``training/priors.py``)."""
        w, attention = self._mixture(h, win_cat, win_type, win_age)
        t = target.clamp(min=0).unsqueeze(-1)
        pointer = (attention * (win_cat == t)).sum(-1)
        if prior_at_target is None:
            newest, other = self._rows(win_cat)
            prior_at_target = (
                (self.prior_val[newest] * (self.prior_idx[newest] == t)).sum(-1),
                (self.prior_val[other] * (self.prior_idx[other] == t)).sum(-1),
            )
        if self.generator is not None:
            popular = torch.softmax(self.generator(h), dim=-1).gather(-1, t).squeeze(-1)
        else:
            popular = (self.pop_val * (self.pop_idx == t)).sum(-1)
        p = pointer + w[..., 2] * prior_at_target[0] + w[..., 3] * popular + w[..., 4] * prior_at_target[1]
        return torch.log(p + 1e-9)

    @torch.no_grad()
    def fuse_for_serving(self) -> None:
        """Precompute the pointers' key tables (joined into one) that the serving graph looks up
        instead of computing per event."""
        for pointer in (self.short, self.long):
            pointer.fuse()
        short, long = self.short, self.long
        assert short.fused_keys is not None and short.fused_bias is not None
        assert long.fused_keys is not None and long.fused_bias is not None
        self.joint_keys = torch.cat(
            [short.fused_keys, long.fused_keys, short.fused_bias[:, None], long.fused_bias[:, None]], dim=1
        )

    def unfuse_for_serving(self) -> None:
        """Back to computing the keys (training; the parity reference)."""
        for pointer in (self.short, self.long):
            pointer.unfuse()
        self.joint_keys = None

    def forward(
        self,
        steps: Tensor,
        win_cat: Tensor,
        win_type: Tensor,
        win_age: Tensor,
        targets: Tensor,
        prior_at_target: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Training pass over whole histories ``(B, T, ...)``.

        Returns per-position ``log p(target)``, intent logits and hidden states, all ``(B, T[, H])``.
        """
        h, _ = self.hidden(steps)
        logp = self.target_log_prob(h, win_cat, win_type, win_age, targets, prior_at_target)
        return logp, self.intent(h).squeeze(-1), h


class IncrementalStep(nn.Module):
    """Serving graph: a batch of users' new steps from their previous ``(h, c)`` -> predictions.

    ``steps`` is ``(U, S, F)``, one row per user, right-padded; the export adds a ``lengths`` input
    (valid steps per row) to the LSTM, so ``h1``/``c1`` are each row's state after its last valid
    step. ``positions`` (``N``) picks the steps to predict at from the flattened ``(U * S)`` outputs,
    and the pointer windows are given per picked step, so one call serves a whole micro-batch
    whatever the number of events per user.
    """

    def __init__(self, model: DemandLSTM, top_k: int, candidates: bool | None = None) -> None:
        super().__init__()
        self.model, self.top_k = model, top_k
        n_candidates = model.spec.window + 3 * model.pop_idx.shape[-1]
        if candidates is None:  # the cheaper graph for the vocabulary size (training/candidates.py)
            candidates = (
                model.generator is None and model.config.n_targets >= CANDIDATE_MIN_TARGETS and top_k <= n_candidates
            )
        if candidates and top_k > n_candidates:
            raise ValueError(f"top_k {top_k} exceeds the {n_candidates} candidates the experts give")
        self.candidates = candidates

    def forward(
        self,
        steps: Tensor,
        h0: Tensor,
        c0: Tensor,
        positions: Tensor,
        win_cat: Tensor,
        win_type: Tensor,
        win_age: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        out, (h1, c1) = self.model.hidden(steps, (h0, c0))
        picked = out.reshape(-1, out.shape[-1]).index_select(0, positions)
        if self.candidates:
            scores, indices, intent = self.model.top_candidates(picked, win_cat, win_type, win_age, self.top_k)
            return scores, indices, intent, h1, c1
        probs, intent = self.model.scores(picked, win_cat, win_type, win_age)
        scores, indices = torch.topk(probs, self.top_k, dim=-1)
        return scores, indices, intent, h1, c1
