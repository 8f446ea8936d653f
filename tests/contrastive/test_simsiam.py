"""SimSiam: estimator contract, the negative-cosine loss and non-collapse."""

import math

import pytest
import torch

from skssl.contrastive.simsiam import SimSiam, simsiam_loss
from skssl.datasets import load_digits_images
from skssl.augment import Augment
from skssl.evaluation import embedding_diagnostics

from _untrained import fit_both, held_out_knn


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


# Digits are not mirror-symmetric and 8 pixels wide: no flip, milder crops (as SimCLR's test).
# With its own recipe (flip, 0.2-scale crops) the kNN fell below the untrained one's (0.665, 0.730).
DIGITS_AUGMENT = Augment(crop_scale=(0.3, 1.0), flip_p=0.0, degrees=15, saturation=0.0, grayscale_p=0.0)


def test_trains_without_collapsing_on_digits():
    # Against the same fit with no optimiser step (BatchNorm statistics still updated).
    # Measured: loss 0.00 -> -0.46 (untrained 0.00 -> 0.00), std_normalized 0.044 against
    # 0.046, effective rank 41 against 76; a collapsed embedding has std 0 and rank 1. Its kNN
    # stays at the untrained one's (0.755 against 0.735 on 400 held-out digits; 0.740 against
    # 0.735 after 20 epochs): at these budgets SimSiam keeps the spread but adds no class structure.
    X, y = load_digits_images(return_X_y=True)
    make = lambda: SimSiam(max_epochs=10, batch_size=64, augment=DIGITS_AUGMENT, random_state=0)  # noqa: E731
    trained, untrained = fit_both(make, X[:256])
    drop = trained.history_[0]["loss"] - trained.history_[-1]["loss"]
    untrained_drop = untrained.history_[0]["loss"] - untrained.history_[-1]["loss"]
    assert drop > 0.25 + untrained_drop
    d, d0 = (embedding_diagnostics(est.transform(X[:256])) for est in (trained, untrained))
    assert not d["has_nonfinite"]
    assert d["std_normalized"] > 0.5 * d0["std_normalized"] and d["effective_rank"] > 0.25 * d0["effective_rank"]
    knn, knn0 = (held_out_knn(est, X[:256], y[:256], X[1000:], y[1000:]) for est in (trained, untrained))
    assert knn > knn0 - 0.03, (knn, knn0)
