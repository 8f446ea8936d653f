"""Barlow Twins: estimator contract, the cross-correlation loss and non-collapse."""

import pytest
import torch

from skssl.contrastive.barlow_twins import BarlowTwins, barlow_twins_loss
from skssl.datasets import load_digits_images
from skssl.evaluation import embedding_diagnostics


# Columns with zero mean, unit (biased) variance, mutually orthogonal: C = I.
ORTHONORMAL = torch.tensor([[1.0, 1.0, 1.0], [1.0, -1.0, -1.0], [-1.0, 1.0, -1.0], [-1.0, -1.0, 1.0]])


def test_loss_is_zero_at_identity_cross_correlation():
    assert barlow_twins_loss(ORTHONORMAL, ORTHONORMAL, lambd=0.5, eps=0.0).item() == 0.0
    # Standardisation makes it invariant to per-dimension shift and scale.
    shifted = ORTHONORMAL * torch.tensor([2.0, 0.5, 7.0]) + torch.tensor([3.0, -1.0, 0.0])
    assert barlow_twins_loss(shifted, ORTHONORMAL, lambd=0.5).item() == pytest.approx(0.0, abs=1e-4)


def test_loss_hand_computed():
    z1 = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])
    z2 = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])
    # C = [[1, -1], [1, -1]]: diagonal (1 - 1)^2 + (1 + 1)^2 = 4, off-diagonal 1 + 1 = 2
    assert barlow_twins_loss(z1, z2, lambd=0.25, eps=0.0).item() == pytest.approx(4.0 + 0.25 * 2.0)


def test_redundant_dimensions_cost_only_through_lambda():
    # Perfectly invariant but all dimensions identical: diagonal term 0, off-diagonal d^2 - d.
    z = ORTHONORMAL[:, :1].repeat(1, 3)
    assert barlow_twins_loss(z, z, lambd=0.0, eps=0.0).item() == 0.0
    assert barlow_twins_loss(z, z, lambd=0.1, eps=0.0).item() == pytest.approx(0.1 * 6)


def test_loss_validates_input():
    with pytest.raises(ValueError, match="equal shape"):
        barlow_twins_loss(torch.zeros(4, 3), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="at least 2"):
        barlow_twins_loss(torch.zeros(1, 3), torch.zeros(1, 3))


def test_does_not_collapse_on_digits():
    # The untrained backbone scores about 0.003 and 4 here; a collapsed one 0 and 1.
    X, _ = load_digits_images(return_X_y=True)
    est = BarlowTwins(max_epochs=10, batch_size=64, random_state=0).fit(X[:256])
    assert est.history_[-1]["loss"] < est.history_[0]["loss"]
    d = embedding_diagnostics(est.transform(X[:256]))
    assert not d["has_nonfinite"]
    assert d["std_normalized"] > 0.01
    assert d["effective_rank"] > 10
