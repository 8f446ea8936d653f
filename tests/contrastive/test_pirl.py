"""PIRL: jigsaw branch, memory bank, loss weighting, no collapse, sklearn checks."""

import numpy as np
import pytest
import torch

from skssl.contrastive.pirl import PIRL
from skssl.datasets import load_digits_images
from skssl.evaluation import embedding_diagnostics



@pytest.fixture(scope="module")
def digits():
    X, y = load_digits_images(return_X_y=True)
    return X[:200], y[:200]


@pytest.fixture(scope="module")
def fitted(digits):
    return PIRL(max_epochs=6, batch_size=50, random_state=0).fit(digits[0])


def test_no_collapse(fitted, digits):
    Z = fitted.transform(digits[0])
    assert Z.shape == (200, 128)
    # untrained network on these images: std_normalized 0.0013, effective rank 2.2
    d = embedding_diagnostics(Z)
    assert d["std_normalized"] > 0.01 and d["effective_rank"] > 8
    losses = [h["loss"] for h in fitted.history_]
    assert losses[-1] < losses[0]


def test_bank_holds_unit_image_embeddings(fitted):
    bank = fitted.networks_["memory"]
    assert bank.features.shape == (200, 128)
    assert torch.allclose(bank.features.norm(dim=1), torch.ones(200), atol=1e-5)


def test_jigsaw_embedding_depends_on_tile_order(fitted, digits):
    x = torch.as_tensor(digits[0][:4] / 16.0, dtype=torch.float32)[:, None]
    x = torch.nn.functional.interpolate(x, size=(18, 18), mode="bilinear")
    fitted.networks_.eval()
    embeddings = []
    for seed in (0, 1, 0):
        fitted._generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            embeddings.append(fitted._jigsaw_embedding(x))
    del fitted._generator
    assert embeddings[0].shape == (4, 128)
    assert torch.allclose(embeddings[0].norm(dim=1), torch.ones(4), atol=1e-5)
    assert torch.equal(embeddings[0], embeddings[2])  # seeded tiles and orders
    assert not torch.allclose(embeddings[0], embeddings[1])  # other jitter and order


def test_nce_variant_and_warm_start_on_other_size(digits):
    X = digits[0]
    est = PIRL(loss="nce", n_negatives=64, max_epochs=1, batch_size=50, projection_dim=8, n_permutations=4, random_state=0).fit(X)
    assert np.isfinite(est.history_[0]["loss"]) and torch.isfinite(est.networks_["memory"].log_z)
    est.set_params(warm_start=True).fit(X[:60])
    assert est.networks_["memory"].features.shape == (60, 8)
    assert len(est.history_) == 2


def test_same_seed_same_embedding(digits):
    X = digits[0][:64]
    a, b = (PIRL(loss="nce", max_epochs=1, batch_size=32, projection_dim=8, n_negatives=32, n_permutations=4,
                 random_state=3).fit_transform(X) for _ in range(2))
    np.testing.assert_array_equal(a, b)
