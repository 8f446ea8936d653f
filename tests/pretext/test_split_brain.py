"""SplitBrainSSL: channel and spatial splits, cross-prediction learning, sklearn compatibility."""

import numpy as np
import pytest
import torch

from skssl.datasets import load_digits_images
from skssl.pretext.split_brain import SplitBrainSSL

from skssl.pretext.colorization import lab_to_rgb

from _untrained import fit_both


def _striped(n, seed=0):
    """Four block patterns in L, each in two phases; the pair (pattern, phase) has its own constant ab.

    Each half then predicts the other: L's pattern gives the colour, and the
    colour gives the pattern and its phase (its saturation is the phase).
    Coarse blocks, not one-pixel stripes: from a constant colour the 8x8
    decoder learns blocks in a few epochs but not stripes (B's error stayed
    at 0.90-0.96 of the mean predictor's at 5-10 epochs).
    """
    rng = np.random.default_rng(seed)
    kind, phase = rng.integers(0, 4, n), rng.integers(0, 2, n)
    i, j = np.mgrid[:8, :8]
    patterns = np.stack([i < 4, j < 4, (i < 4) ^ (j < 4), (abs(i - 3.5) < 2) & (abs(j - 3.5) < 2)]).astype(int)
    lightness = 40.0 + 30.0 * (patterns[kind] ^ phase[:, None, None])
    ab = np.array([[30, 30], [-30, 30], [-30, -30], [30, -30]], float)[kind] * (1.0 - 0.5 * phase[:, None])
    lab = np.concatenate([lightness[:, None], np.broadcast_to(ab[:, :, None, None], (n, 2, 8, 8))], 1)
    return lab_to_rgb(torch.tensor(lab, dtype=torch.float32)).permute(0, 2, 3, 1).numpy()


def _fitted(X, **kw):
    return SplitBrainSSL(max_epochs=1, batch_size=16, random_state=0, **kw).fit(X)


def test_groups_follow_the_split_rule():
    rng = np.random.default_rng(0)
    rgb = _fitted(rng.random((32, 8, 8, 3)))
    assert (rgb.split_, rgb.split_channels_) == ("lab", 1)
    g1, g2 = rgb._groups(torch.rand(2, 3, 8, 8))
    assert g1.shape == (2, 1, 8, 8) and g2.shape == (2, 2, 8, 8)
    raw = _fitted(rng.random((32, 8, 8, 3)), split=2)
    assert raw.split_ == "channels" and raw._groups(torch.rand(2, 3, 8, 8))[1].shape == (2, 1, 8, 8)
    four = _fitted(rng.random((32, 8, 8, 4)))
    assert four.split_channels_ == 2
    gray = _fitted(rng.random((32, 8, 10)))
    assert gray.split_ == "spatial"
    left, right = gray._groups(torch.rand(2, 1, 8, 10))
    assert left.shape == (2, 1, 8, 5) and right.shape == (2, 1, 8, 5)


def test_embedding_concatenates_both_encoders():
    X = np.random.default_rng(0).random((32, 8, 8, 3))
    est = _fitted(X)
    Z = est.transform(X)
    n_a = est.networks_["backbone"](est._groups(torch.rand(1, 3, 8, 8))[0]).shape[1]
    assert Z.shape == (32, est.embedding_dim_) and est.embedding_dim_ == 2 * n_a
    assert est.networks_["backbone"].stages[0][0].in_channels == 1
    assert est.networks_["backbone_b"].stages[0][0].in_channels == 2


def test_bad_split_raises():
    with pytest.raises(ValueError, match="split=3 but X has 3 channel"):
        _fitted(np.random.default_rng(0).random((32, 8, 8, 3)), split=3)


def test_cross_prediction_beats_the_mean_on_held_out_images():
    X = _striped(300)
    make = lambda: SplitBrainSSL(max_epochs=5, batch_size=32, random_state=0)  # noqa: E731
    trained, untrained = fit_both(make, X[:200])
    error_a, error_b = trained.pretext_score(X[200:])
    # Predicting the training mean scores about 1 for each half. Measured: A 0.07, B 0.53;
    # the same fit untrained scores 1.2 and 1.0.
    assert error_a < 0.2 and error_b < 0.75
    assert min(untrained.pretext_score(X[200:])) > 0.9


def test_spatial_split_on_digits_beats_the_mean():
    X = load_digits_images(return_X_y=True)[0][:400]
    est = SplitBrainSSL(max_epochs=4, batch_size=32, random_state=0).fit(X[:300])
    assert max(est.pretext_score(X[300:])) < 0.7  # the training mean scores about 1
