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

import torch
from torch import Tensor, nn

from stream.features import FeatureSpec, StaticColumn
from stream.features.encode import N_TYPES, TYPE_INDEX

_NEG = -1e9


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of the network (recorded in the manifest)."""

    n_categories: int
    n_items: int
    target: str = "category"  # "item": the demand head and pointer rank items instead
    hidden: int = 64
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
    # Transition rows and popularity keep only their top entries: serving then scatters a few
    # dozen values per expert instead of reading and adding vocabulary-wide rows per event.
    prior_top_m: int = 64
    short_half_life_h: float = 0.25  # initial decay of the short-memory pointer
    long_half_life_h: float = 72.0  # initial decay of the long-memory pointer

    @property
    def n_targets(self) -> int:
        return self.n_items if self.target == "item" else self.n_categories

    def to_dict(self) -> dict[str, int | str]:
        return asdict(self)


def keep_top(rows: Tensor, m: int) -> Tensor:
    """Zero all but the ``m`` largest entries of each row.

    >>> keep_top(torch.tensor([[1.0, 5.0, 2.0, 0.5], [0.0, 0.0, 1.0, 0.0]]), 2).tolist()
    [[0.0, 5.0, 2.0, 0.0], [0.0, 0.0, 1.0, 0.0]]
    """
    if m >= rows.shape[-1]:
        return rows
    _, top = torch.topk(rows, m, dim=-1)
    return torch.zeros_like(rows).scatter(-1, top, rows.gather(-1, top))


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

    ``transitions`` (``(V, V)`` row-stochastic, counted on training data only) is a fixed first-order
    prior P(next | newest event's target); a low-rank softmax learns rare transitions poorly, and a
    lookup costs nothing at serving time. ``popularity`` (``(V,)``) starts the generator. Without
    them (tests, tiny data) those experts are uniform.
    """

    transitions: Tensor
    popularity: Tensor

    def __init__(
        self,
        spec: FeatureSpec,
        config: ModelConfig,
        transitions: Tensor | None = None,
        popularity: Tensor | None = None,
    ) -> None:
        super().__init__()
        self.spec, self.config = spec, config
        c, v = config, config.n_targets
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
        uniform = torch.full((v,), 1.0 / max(v - 2, 1))
        uniform[:2] = 0.0  # padding and OOV are never predicted
        self.generator = nn.Linear(c.hidden, v)
        full_popularity = (popularity if popularity is not None else uniform).float()
        self.register_buffer("popularity", keep_top(full_popularity, c.prior_top_m))
        self.generator.requires_grad_(c.learn_generator)
        # Without a prior (large item vocabularies, tests) a single popularity row stands in for it,
        # as it does for the prior's empty rows; a uniform row cut to its top entries would favour
        # arbitrary targets.
        rows = transitions if transitions is not None else full_popularity[None]
        self.register_buffer("transitions", keep_top(rows.float(), c.prior_top_m))
        self.sparse_priors: tuple[Tensor, Tensor, Tensor, Tensor] | None = None  # set by fuse_for_serving()
        self.joint_keys: Tensor | None = None
        # short pointer, long pointer, transitions from the newest category, generator, and
        # transitions from the category before it (what a user returns to after a detour)
        self.gate = nn.Linear(c.hidden, 5)
        with torch.no_grad():
            self.generator.weight.zero_()
            self.generator.bias.copy_(torch.log(full_popularity + 1e-9))
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

    def demand_probs(
        self,
        h: Tensor,
        win_cat: Tensor,
        win_type: Tensor,
        win_age: Tensor,
        priors: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        """Demand distribution ``(..., V)``; padding and OOV get no mass.

        ``priors`` replace the transition rows out of the newest and the previous other category
        (training passes them without the user's own transitions: ``training/priors.py``).

        Both pointers' attentions are weighted first and scattered once onto the vocabulary-wide
        experts, so serving touches each full-vocabulary vector only a few times per event.
        """
        w = torch.softmax(self.gate(h), dim=-1)
        if self.sparse_priors is not None and priors is None:  # never set with a learned generator
            return self._sparse_demand_probs(h, w, win_cat, win_type, win_age)
        if priors is None:
            last = self.transitions.shape[0] - 1
            priors = (
                self.transitions[win_cat[..., 0].clamp(max=last)],
                self.transitions[previous_other(win_cat).clamp(max=last)],
            )
        generated = torch.softmax(self.generator(h), dim=-1) if self.config.learn_generator else self.popularity
        dense = w[..., 2:3] * priors[0] + w[..., 3:4] * generated + w[..., 4:5] * priors[1]
        attention = w[..., 0:1] * self.short(h, win_cat, win_type, win_age)
        attention = attention + w[..., 1:2] * self.long(h, win_cat, win_type, win_age)
        # Padding/OOV window entries carry no attention unless all are masked; zeroing them here
        # (W-wide) keeps the V-wide experts free of any per-event masking work.
        return dense.scatter_add(-1, win_cat, attention * (win_cat > 1))

    def _sparse_demand_probs(self, h: Tensor, w: Tensor, win_cat: Tensor, win_type: Tensor, win_age: Tensor) -> Tensor:
        """:meth:`demand_probs` for serving: every expert's few non-zero entries in ONE scatter.

        Same values as the dense path (the rows hold at most ``prior_top_m`` non-zeros); the only
        vocabulary-wide work left per event is the zero fill the scatter writes into.
        """
        assert self.sparse_priors is not None and self.joint_keys is not None
        prior_idx, prior_val, pop_idx, pop_val = self.sparse_priors
        last = prior_idx.shape[0] - 1
        newest, other = win_cat[..., 0].clamp(max=last), previous_other(win_cat).clamp(max=last)
        # Both pointers' keys and biases in one row per window entry: one gather, not four.
        rows, d = self.joint_keys[self.short.key_code(win_cat, win_type, win_age)], self.short.dim
        short = self.short.attend(h, rows[..., :d], rows[..., 2 * d], win_cat)
        long = self.long.attend(h, rows[..., d : 2 * d], rows[..., 2 * d + 1], win_cat)
        attention = w[..., 0:1] * short + w[..., 1:2] * long
        lead = win_cat.shape[:-1]
        index = torch.cat(
            [win_cat, prior_idx[newest], prior_idx[other], pop_idx.expand(*lead, pop_idx.shape[-1])], dim=-1
        )
        values = torch.cat(
            [
                attention * (win_cat > 1),
                w[..., 2:3] * prior_val[newest],
                w[..., 4:5] * prior_val[other],
                w[..., 3:4] * pop_val.expand(*lead, pop_val.shape[-1]),
            ],
            dim=-1,
        )
        zeros = torch.zeros(*lead, self.popularity.shape[-1], dtype=values.dtype, device=values.device)
        return zeros.scatter_add(-1, index, values)

    @torch.no_grad()
    def fuse_for_serving(self) -> None:
        """Precompute what the serving graph looks up instead of computing per event: the pointers'
        key tables (joined into one) and index/value tables of the priors' non-zero entries."""
        for pointer in (self.short, self.long):
            pointer.fuse()
        m = self.config.prior_top_m
        if m >= self.popularity.shape[-1] or self.config.learn_generator:
            return  # dense rows (or a dense generator): nothing to save
        prior_val, prior_idx = torch.topk(self.transitions, m, dim=-1)
        pop_val, pop_idx = torch.topk(self.popularity, m, dim=-1)
        self.sparse_priors = (prior_idx, prior_val, pop_idx, pop_val)
        short, long = self.short, self.long
        assert short.fused_keys is not None and short.fused_bias is not None
        assert long.fused_keys is not None and long.fused_bias is not None
        self.joint_keys = torch.cat(
            [short.fused_keys, long.fused_keys, short.fused_bias[:, None], long.fused_bias[:, None]], dim=1
        )

    def unfuse_for_serving(self) -> None:
        """Back to computing everything (training; the parity reference)."""
        for pointer in (self.short, self.long):
            pointer.unfuse()
        self.sparse_priors = self.joint_keys = None

    def forward(
        self,
        steps: Tensor,
        win_cat: Tensor,
        win_type: Tensor,
        win_age: Tensor,
        targets: Tensor,
        priors: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Training pass over whole histories ``(B, T, ...)``.

        Returns per-position ``log p(target)``, intent logits and hidden states, all ``(B, T[, H])``.
        """
        h, _ = self.lstm(self.dropout(self.embed_steps(steps)))
        h = self.dropout(h)
        probs = self.demand_probs(h, win_cat, win_type, win_age, priors)
        target_p = probs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        return torch.log(target_p + 1e-9), self.intent(h).squeeze(-1), h

    def category_probs(self, h: Tensor, win_cat: Tensor, win_type: Tensor, win_age: Tensor) -> tuple[Tensor, Tensor]:
        """Demand distribution ``(N, V)`` and intent probability ``(N,)``."""
        return self.demand_probs(h, win_cat, win_type, win_age), torch.sigmoid(self.intent(h).squeeze(-1))


class IncrementalStep(nn.Module):
    """Serving graph: a batch of users' new steps from their previous ``(h, c)`` -> predictions.

    ``steps`` is ``(U, S, F)``, one row per user, right-padded; the export adds a ``lengths`` input
    (valid steps per row) to the LSTM, so ``h1``/``c1`` are each row's state after its last valid
    step. ``positions`` (``N``) picks the steps to predict at from the flattened ``(U * S)`` outputs,
    and the pointer windows are given per picked step, so one call serves a whole micro-batch
    whatever the number of events per user.
    """

    def __init__(self, model: DemandLSTM, top_k: int) -> None:
        super().__init__()
        self.model, self.top_k = model, top_k

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
        out, (h1, c1) = self.model.lstm(self.model.embed_steps(steps), (h0, c0))
        picked = out.reshape(-1, out.shape[-1]).index_select(0, positions)
        probs, intent = self.model.category_probs(picked, win_cat, win_type, win_age)
        scores, indices = torch.topk(probs, self.top_k, dim=-1)
        return scores, indices, intent, h1, c1
