"""The serving shortcuts of the demand network: truncated priors scattered sparsely and the joint
pointer key table compute the same distribution as the plain model, and export with them."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
import torch
from support.models import generated_histories

from stream.features import FeatureSpec, Vocabulary
from training.export import build_version
from training.model import DemandLSTM, ModelConfig, keep_top

SPEC = FeatureSpec(window=12, text_tokens=3, text_buckets=256)


def _model(n_categories: int, top_m: int, seed: int = 0) -> DemandLSTM:
    torch.manual_seed(seed)
    transitions = torch.rand(n_categories, n_categories).pow(4).softmax(-1)
    transitions[:, :2] = 0.0
    popularity = torch.rand(n_categories)
    popularity[:2] = 0.0
    config = ModelConfig(n_categories, 50, hidden=16, pointer_dim=8, prior_top_m=top_m)
    model = DemandLSTM(SPEC, config, transitions, popularity / popularity.sum())
    with torch.no_grad():  # a gate that depends on the state, so every expert matters somewhere
        model.gate.weight.normal_(0, 0.5)
        for pointer in (model.short, model.long):
            pointer.query.weight.normal_(0, 0.5)
    return model.eval()


def _inputs(n: int, n_categories: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    h = torch.randn(n, 16, generator=generator)
    win_cat = torch.randint(0, n_categories, (n, SPEC.window), generator=generator)
    win_cat[:, -3:] = 0  # short windows end in padding
    win_type = torch.randint(1, 5, (n, SPEC.window), generator=generator)
    win_age = torch.randint(0, SPEC.n_age_buckets, (n, SPEC.window), generator=generator)
    return h, win_cat, win_type, win_age


def test_rows_keep_their_top_entries_only() -> None:
    model = _model(300, top_m=16)
    assert int((model.transitions > 0).sum(dim=1).max()) <= 16
    assert int((model.popularity > 0).sum()) == 16


@pytest.mark.parametrize("top_m", [4, 16])
def test_the_sparse_serving_path_computes_the_dense_distribution(top_m: int) -> None:
    model = _model(300, top_m=top_m)
    inputs = _inputs(64, 300)
    with torch.no_grad():
        dense = model.demand_probs(*inputs)
        model.fuse_for_serving()
        assert model.sparse_priors is not None and model.joint_keys is not None
        sparse = model.demand_probs(*inputs)
        model.unfuse_for_serving()
    torch.testing.assert_close(sparse, dense, atol=1e-6, rtol=1e-5)
    totals = sparse.sum(-1)  # truncated rows keep the mass of their top entries only
    assert bool(((totals > 0) & (totals <= 1 + 1e-5)).all())


def test_without_a_transition_prior_its_expert_is_popularity() -> None:
    popularity = torch.rand(300)
    popularity[:2] = 0.0
    model = DemandLSTM(SPEC, ModelConfig(300, 50, hidden=16, prior_top_m=16), None, popularity / popularity.sum())
    assert model.transitions.shape == (1, 300)
    torch.testing.assert_close(model.transitions[0], model.popularity)


def test_truncation_changes_nothing_when_rows_are_short_enough() -> None:
    rows = torch.tensor([[0.0, 0.0, 0.7, 0.3, 0.0]])
    assert torch.equal(keep_top(rows, 2), rows)


def test_export_with_sparse_priors_passes_parity_and_ships_no_dense_prior(tmp_path: Path) -> None:
    histories = generated_histories(users=6, seed=2, max_len=30)
    categories = Vocabulary.build([e.category_id for h in histories for e in h if e.category_id] * 2)
    items = Vocabulary.build([e.item_id for h in histories for e in h if e.item_id] * 2)
    v = len(categories)
    assert v > 8, "the generated catalogue must be wider than the kept prior entries"
    model = _model(v, top_m=4)
    build_version(
        model, categories, items, version="vsparse", top_k=5, parity_histories=histories, extra={}, staging=tmp_path
    )  # raises ExportError unless stepping the ONNX graph reproduces the torch scores within 1e-4
    graph = onnx.load(str(tmp_path / "model.onnx")).graph
    constants = [attr.t for node in graph.node if node.op_type == "Constant" for attr in node.attribute]
    shapes = [tuple(tensor.dims) for tensor in [*graph.initializer, *constants]]
    assert (v, v) not in shapes, "the dense (V, V) prior must not be in the serving graph"
    assert (v, 4) in shapes, f"the prior's top entries per row are: {shapes}"
    assert any(node.op_type == "ScatterElements" for node in graph.node)
