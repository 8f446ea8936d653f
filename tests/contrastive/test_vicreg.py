"""VICReg: estimator contract, the three loss terms and non-collapse."""

import pytest
import torch

from skssl.contrastive.vicreg import VICReg, vicreg_covariance, vicreg_loss, vicreg_variance
from skssl.datasets import load_digits_images
from skssl.evaluation import embedding_diagnostics


def test_variance_term_is_zero_when_every_std_exceeds_target():
    g = torch.Generator().manual_seed(0)
    z = 3.0 * torch.randn(256, 6, generator=g)
    assert z.std(dim=0).min() > 1.5
    assert vicreg_variance(z, target=1.0).item() == 0.0


def test_variance_term_hand_computed():
    # Column stds (unbiased): 0 and 2 -> hinge relu(1 - 0.01) = 0.99 and 0; mean 0.495.
    z = torch.tensor([[5.0, 1.0], [5.0, -1.0], [5.0, 3.0], [5.0, -3.0]])
    z[:, 1] = z[:, 1] * (2.0 / z[:, 1].std())
    assert vicreg_variance(z, target=1.0, eps=1e-4).item() == pytest.approx(0.495, rel=1e-5)
    assert vicreg_variance(torch.ones(8, 4)).item() == pytest.approx(1.0 - 1e-2)  # collapsed: maximal


def test_covariance_term_hand_computed():
    # Centred columns a = [1, -1, 1, -1], b = [1, 1, -1, -1], c = a: cov(a, c) = 4/3, others 0.
    z = torch.tensor([[1.0, 1.0, 1.0], [-1.0, 1.0, -1.0], [1.0, -1.0, 1.0], [-1.0, -1.0, -1.0]])
    assert vicreg_covariance(z).item() == pytest.approx(2 * (4 / 3) ** 2 / 3)
    assert vicreg_covariance(z[:, :2]).item() == 0.0  # decorrelated


def test_loss_combines_terms_with_weights():
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(32, 4, generator=g), torch.randn(32, 4, generator=g)
    expected = (2.0 * torch.mean((z1 - z2) ** 2)
                + 3.0 * (vicreg_variance(z1) + vicreg_variance(z2)) / 2
                + 0.5 * (vicreg_covariance(z1) + vicreg_covariance(z2)))
    torch.testing.assert_close(vicreg_loss(z1, z2, 2.0, 3.0, 0.5), expected)
    # Identical, spread-out (std > 1), decorrelated views: every term is zero.
    z = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]]) * 2
    assert vicreg_loss(z, z).item() == 0.0


def test_loss_validates_input():
    with pytest.raises(ValueError, match="equal shape"):
        vicreg_loss(torch.zeros(4, 3), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="n >= 2"):
        vicreg_loss(torch.zeros(1, 3), torch.zeros(1, 3))


def test_does_not_collapse_on_digits():
    # The untrained backbone scores about 0.003 and 4 here; a collapsed one 0 and 1.
    X, _ = load_digits_images(return_X_y=True)
    est = VICReg(max_epochs=10, batch_size=64, random_state=0).fit(X[:256])
    assert est.history_[-1]["loss"] < est.history_[0]["loss"]
    d = embedding_diagnostics(est.transform(X[:256]))
    assert not d["has_nonfinite"]
    assert d["std_normalized"] > 0.01
    assert d["effective_rank"] > 10
