"""ColorizationSSL: Lab conversion, input rules, learning, sklearn compatibility."""

import numpy as np
import pytest
import torch

from skssl.pretext.colorization import ColorizationSSL, lab_to_rgb, rgb_to_lab

# The checks' 1- and 4-feature data are square counts, read as 1-channel images, which colorization refuses.
def test_lab_of_reference_colours():
    rgb = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.5, 0.5, 0.5]]).view(4, 3, 1, 1)
    lab = rgb_to_lab(rgb).view(4, 3)
    expected = torch.tensor([[100.0, 0.0, 0.0], [0.0, 0.0, 0.0], [53.24, 80.09, 67.20], [53.39, 0.0, 0.0]])
    assert torch.allclose(lab, expected, atol=0.1)


def test_rgb_lab_round_trip():
    rgb = torch.rand(4, 3, 5, 6, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(lab_to_rgb(rgb_to_lab(rgb)), rgb, atol=1e-4)


def test_grayscale_input_raises_clear_error():
    X = np.random.default_rng(0).random((10, 8, 8))
    with pytest.raises(ValueError, match=r"needs colour images \(c=3\); X has 1 channel"):
        ColorizationSSL(max_epochs=1).fit(X)


def test_tabular_rows_are_padded_into_rgb():
    est = ColorizationSSL(max_epochs=1, batch_size=8, random_state=0).fit(np.random.default_rng(0).random((16, 10)))
    assert est.image_shape_ == (2, 2, 3)


def _striped(n, seed=0):
    """Four stripe patterns in L, each with its own constant ab: colour is predictable from L's pattern."""
    rng = np.random.default_rng(seed)
    kind, phase = rng.integers(0, 4, n), rng.integers(0, 2, n)
    i, j = np.mgrid[:8, :8]
    patterns = np.stack([i % 2, j % 2, (i + j) % 2, (i // 2 + j // 2) % 2])
    lightness = 40.0 + 30.0 * (patterns[kind] ^ phase[:, None, None])
    ab = np.array([[30, 30], [-30, 30], [-30, -30], [30, -30]], float)[kind]
    lab = np.concatenate([lightness[:, None], np.broadcast_to(ab[:, :, None, None], (n, 2, 8, 8))], 1)
    return lab_to_rgb(torch.tensor(lab, dtype=torch.float32)).permute(0, 2, 3, 1).numpy()


def test_held_out_ab_error_falls_well_below_mean_predictor():
    X = _striped(300)
    train, test = X[:200], X[200:]
    est = ColorizationSSL(max_epochs=5, batch_size=32, random_state=0).fit(train)
    ab = lambda A: rgb_to_lab(torch.from_numpy(A).permute(0, 3, 1, 2))[:, 1:]
    mean_error = float(((ab(test) - ab(train).mean(0)) ** 2).mean())
    score = est.pretext_score(test)
    assert score < 0.2 * mean_error, (score, mean_error)
    assert est.colorize(test[:3]).shape == (3, 8, 8, 3)


def test_same_seed_same_embedding_and_grayscale_backbone():
    X = _striped(64)
    a = ColorizationSSL(max_epochs=1, batch_size=16, random_state=3).fit(X)
    b = ColorizationSSL(max_epochs=1, batch_size=16, random_state=3).fit(X)
    np.testing.assert_array_equal(a.transform(X), b.transform(X))
    assert a.backbone_.stages[0][0].in_channels == 1


def test_a_one_channel_image_shape_given_for_padded_rows_is_refused_not_replaced():
    # Rows of 5 features read as (2, 3) gray images (padded): colour cannot be learned from
    # them, and silently reading them as a 2x2 RGB image instead would ignore the user's shape.
    X = np.random.default_rng(0).random((8, 5))
    with pytest.raises(ValueError, match="colour images"):
        ColorizationSSL(image_shape=(2, 3), max_epochs=1, batch_size=4).fit(X)
    assert ColorizationSSL(max_epochs=1, batch_size=4, random_state=0).fit(X).image_shape_ == (2, 2, 3)  # inferred
