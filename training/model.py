"""The demand network: an LSTM over a shopper's events with two heads.

* next-category demand: a mixture of a vocabulary softmax (what shoppers like this want next) and
  a pointer over the user's own recent window (repeat behaviour, which dominates real e-commerce
  data), weighted by a learned gate. Pointer scores see each window event's category, behaviour type,
  age and recency rank, so the network can learn time-decayed repeat weighting and go beyond it.
* purchase intent: the probability of a purchase among the user's next events.

:class:`IncrementalStep` is the serving graph exported to ONNX: it takes the new event(s) and the
previous ``(h, c)`` and returns top-k scores, intent and the new ``(h, c)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from stream.features import FeatureSpec, StaticColumn
from stream.features.encode import N_TYPES

_NEG = -1e9


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of the network (recorded in the manifest)."""

    n_categories: int
    n_items: int
    target: str = "category"  # "item": the demand head and pointer rank items instead
    hidden: int = 128
    cat_dim: int = 48
    item_dim: int = 16
    text_dim: int = 16
    small_dim: int = 8
    pointer_dim: int = 32
    dropout: float = 0.2
    # Category-specific pointer keys let the pointer memorise per-category stickiness, which
    # overfits on small data; category-agnostic keys (type, age, rank, same-as-newest) generalise.
    pointer_category_keys: bool = False

    @property
    def n_targets(self) -> int:
        return self.n_items if self.target == "item" else self.n_categories

    def to_dict(self) -> dict[str, int | str]:
        return asdict(self)


class DemandLSTM(nn.Module):
    """LSTM + (vocabulary softmax | pointer | transition prior) mixture + intent head.

    ``transitions`` (optional, ``(V, V)`` row-stochastic, counted on training data only) is a fixed
    first-order prior P(next | newest event's target); a low-rank softmax learns rare transitions
    poorly, and a lookup costs nothing at serving time. Rows 0 and 1 (padding, OOV) hold popularity.
    """

    def __init__(self, spec: FeatureSpec, config: ModelConfig, transitions: Tensor | None = None) -> None:
        super().__init__()
        self.spec, self.config = spec, config
        c = config
        self.type_emb = nn.Embedding(N_TYPES, c.small_dim, padding_idx=0)
        self.cat_emb = nn.Embedding(c.n_categories, c.cat_dim, padding_idx=0)
        self.item_emb = nn.Embedding(c.n_items, c.item_dim, padding_idx=0)
        self.price_emb = nn.Embedding(spec.n_price_buckets, c.small_dim, padding_idx=0)
        self.rating_emb = nn.Embedding(6, c.small_dim, padding_idx=0)
        self.gap_emb = nn.Embedding(spec.n_gap_buckets, c.small_dim)
        self.hour_emb = nn.Embedding(25, c.small_dim, padding_idx=0)
        self.text_emb = nn.Embedding(spec.text_buckets, c.text_dim, padding_idx=0)
        d_in = c.cat_dim + c.item_dim + c.text_dim + 5 * c.small_dim
        self.lstm = nn.LSTM(d_in, c.hidden, batch_first=True)
        self.dropout = nn.Dropout(c.dropout)
        self.generator = nn.Linear(c.hidden, c.n_targets)
        self.query = nn.Linear(c.hidden, c.pointer_dim)
        self.key_cat = nn.Embedding(c.n_targets, c.pointer_dim, padding_idx=0)
        self.key_type = nn.Embedding(N_TYPES, c.pointer_dim, padding_idx=0)
        self.key_age = nn.Embedding(spec.n_age_buckets, c.pointer_dim, padding_idx=0)
        self.key_rank = nn.Embedding(spec.window, c.pointer_dim)
        self.bias_type = nn.Embedding(N_TYPES, 1)
        self.bias_age = nn.Embedding(spec.n_age_buckets, 1)
        self.bias_rank = nn.Embedding(spec.window, 1)
        # "same category as the newest event" is the strongest repeat signal; learning it through
        # embedding dot products alone would take thousands of category-specific parameters.
        self.key_same = nn.Embedding(2, c.pointer_dim)
        self.bias_same = nn.Embedding(2, 1)
        n_parts = 2 if transitions is None else 3
        self.gate = nn.Linear(c.hidden, n_parts)
        if transitions is not None:
            self.register_buffer("transitions", transitions.float())
        else:
            self.transitions = None
        self.intent = nn.Sequential(nn.Linear(c.hidden, 64), nn.ReLU(), nn.Linear(64, 1))

    def embed_steps(self, steps: Tensor) -> Tensor:
        """``(B, S, step_width)`` int64 -> ``(B, S, d_in)``."""
        s = self.spec.static_width
        text_ids = steps[..., StaticColumn.TEXT : s]
        text_sum = self.text_emb(text_ids).sum(dim=-2)
        text_n = (text_ids > 0).sum(dim=-1, keepdim=True).clamp(min=1).to(text_sum.dtype)
        parts = [
            self.cat_emb(steps[..., StaticColumn.CATEGORY]),
            self.item_emb(steps[..., StaticColumn.ITEM]),
            text_sum / text_n,
            self.type_emb(steps[..., StaticColumn.TYPE]),
            self.price_emb(steps[..., StaticColumn.PRICE]),
            self.rating_emb(steps[..., StaticColumn.RATING]),
            self.gap_emb(steps[..., s]),
            self.hour_emb(steps[..., s + 1]),
        ]
        return torch.cat(parts, dim=-1)

    def heads(
        self, h: Tensor, win_cat: Tensor, win_type: Tensor, win_age: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """From hidden states ``(..., H)`` and windows ``(..., W)``: generator log-probs ``(..., V)``,
        pointer attention ``(..., W)``, mixture weights ``(..., 2|3)``, intent logit ``(...)``."""
        rank = torch.arange(self.spec.window, device=h.device).expand_as(win_cat)
        same = (win_cat == win_cat[..., :1]).long()
        keys = self.key_type(win_type) + self.key_age(win_age) + self.key_rank(rank) + self.key_same(same)
        if self.config.pointer_category_keys:
            keys = keys + self.key_cat(win_cat)
        keys = torch.tanh(keys)
        q = self.query(h).unsqueeze(-2)
        scores = (keys * q).sum(-1) / self.config.pointer_dim**0.5
        bias = self.bias_type(win_type) + self.bias_age(win_age) + self.bias_rank(rank) + self.bias_same(same)
        scores = scores + bias.squeeze(-1)
        scores = scores.masked_fill(win_cat <= 1, _NEG)
        attention = torch.softmax(scores, dim=-1)
        gen_logp = torch.log_softmax(self.generator(h), dim=-1)
        gate = torch.softmax(self.gate(h), dim=-1)
        return gen_logp, attention, gate, self.intent(h).squeeze(-1)

    def forward(
        self, steps: Tensor, win_cat: Tensor, win_type: Tensor, win_age: Tensor, targets: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Training pass over whole histories ``(B, T, ...)``.

        Returns per-position ``log p(target)``, intent logits and hidden states, all ``(B, T[, H])``.
        """
        h, _ = self.lstm(self.dropout(self.embed_steps(steps)))
        gen_logp, attention, gate, intent = self.heads(self.dropout(h), win_cat, win_type, win_age)
        safe = targets.clamp(min=0)
        p_gen = gen_logp.gather(-1, safe.unsqueeze(-1)).squeeze(-1).exp()
        p_ptr = (attention * (win_cat == targets.unsqueeze(-1)).to(attention.dtype)).sum(-1)
        p = gate[..., 0] * p_ptr + gate[..., 1] * p_gen
        if self.transitions is not None:
            p = p + gate[..., 2] * self.transitions[win_cat[..., 0], safe]
        return torch.log(p + 1e-9), intent, h

    def category_probs(self, h: Tensor, win_cat: Tensor, win_type: Tensor, win_age: Tensor) -> tuple[Tensor, Tensor]:
        """Full demand distribution ``(N, V)`` (padding/OOV zeroed) and intent probability ``(N,)``."""
        gen_logp, attention, gate, intent = self.heads(h, win_cat, win_type, win_age)
        p_ptr = torch.zeros_like(gen_logp).scatter_add(-1, win_cat, attention)
        probs = gate[..., :1] * p_ptr + gate[..., 1:2] * gen_logp.exp()
        if self.transitions is not None:
            probs = probs + gate[..., 2:3] * self.transitions[win_cat[..., 0]]
        keep = torch.ones(probs.shape[-1], dtype=probs.dtype, device=probs.device)
        keep[:2] = 0.0
        return probs * keep, torch.sigmoid(intent)


class IncrementalStep(nn.Module):
    """Serving graph: new steps + previous ``(h, c)`` + pointer window -> top-k, intent, new ``(h, c)``."""

    def __init__(self, model: DemandLSTM, top_k: int) -> None:
        super().__init__()
        self.model, self.top_k = model, top_k

    def forward(
        self, steps: Tensor, h0: Tensor, c0: Tensor, win_cat: Tensor, win_type: Tensor, win_age: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        out, (h1, c1) = self.model.lstm(self.model.embed_steps(steps), (h0, c0))
        probs, intent = self.model.category_probs(out[:, -1], win_cat, win_type, win_age)
        scores, indices = torch.topk(probs, self.top_k, dim=-1)
        return scores, indices, intent, h1, c1
