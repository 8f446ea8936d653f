"""SimSiam: estimator contract, the negative-cosine loss and non-collapse."""

import math

import pytest
import torch

from skssl.contrastive.simsiam import SimSiam, simsiam_loss
from skssl.datasets import load_digits_images
from skssl.evaluation import embedding_diagnostics


def test_simsiam_loss_hand_computed():
    p = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]])
    z = torch.tensor([[2.0, 0.0], [1.0, 1.0], [-1.0, 0.0]])
    # cosines 1, 1/sqrt(2), -1
    assert simsiam_loss(p, z).item() == pytest.approx(-(1 + 1 / math.sqrt(2) - 1) / 3, rel=1e-6)


def test_simsiam_loss_bounds_and_minimum_when_aligned():
    g = torch.Generator().manual_seed(0)
    p, z = torch.randn(64, 5, generator=g), torch.randn(64, 5, generator=g)
    assert -1.0 <= simsiam_loss(p, z).item() <= 1.0
    assert simsiam_loss(p, 2.0 * p).item() == pytest.approx(-1.0, abs=1e-6)
    assert simsiam_loss(p, -p).item() == pytest.approx(1.0, abs=1e-6)


def test_simsiam_loss_stops_gradient():
    p = torch.randn(4, 3, requires_grad=True)
    z = torch.randn(4, 3, requires_grad=True)
    simsiam_loss(p, z).backward()
    assert p.grad is not None and z.grad is None


def test_simsiam_loss_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="equal shape"):
        simsiam_loss(torch.zeros(4, 3), torch.zeros(5, 3))


def test_projector_ends_in_batchnorm_and_predictor_is_a_bottleneck():
    est = SimSiam(max_epochs=1, batch_size=16, projection_dim=32, predictor_hidden_dim=8, random_state=0)
    X, _ = load_digits_images(return_X_y=True)
    est.fit(X[:32])
    assert isinstance(est.networks_["projector"][-1], torch.nn.BatchNorm1d)
    assert sum(isinstance(m, torch.nn.Linear) for m in est.networks_["projector"]) == 3
    widths = [m.out_features for m in est.networks_["predictor"] if isinstance(m, torch.nn.Linear)]
    assert widths == [8, 32]
    assert all(h["loss"] >= -1.0 and h["loss"] <= 1.0 for h in est.history_)


def test_does_not_collapse_on_digits():
    # The untrained backbone scores about 0.003 and 4 here; a collapsed one 0 and 1.
    X, _ = load_digits_images(return_X_y=True)
    est = SimSiam(max_epochs=10, batch_size=64, random_state=0).fit(X[:256])
    d = embedding_diagnostics(est.transform(X[:256]))
    assert not d["has_nonfinite"]
    assert d["std_normalized"] > 0.01
    assert d["effective_rank"] > 10
