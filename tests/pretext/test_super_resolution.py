"""SuperResolutionSSL: scikit-learn compatibility, beating interpolation, embeddings."""

import numpy as np
import pytest
import torch

from skssl.datasets import load_digits_images
from skssl.pretext.super_resolution import SuperResolutionSSL, degrade, psnr


def test_degrade_keeps_the_size_and_loses_detail():
    x = torch.zeros(1, 1, 8, 8)
    x[..., ::2, :] = 1.0  # one-pixel stripes vanish at half resolution
    y = degrade(x, 2)
    assert y.shape == x.shape and torch.allclose(y, torch.full_like(y, 0.5))
    assert psnr(y, x).item() == pytest.approx(-10 * np.log10(0.25), rel=1e-5)


@pytest.fixture(scope="module")
def digits():
    X, _ = load_digits_images(return_X_y=True)
    idx = np.random.RandomState(0).permutation(len(X))
    return X[idx[:600]], X[idx[600:900]]


@pytest.fixture(scope="module")
def fitted(digits):
    return SuperResolutionSSL(max_epochs=3, batch_size=32, random_state=0).fit(digits[0])


def test_held_out_psnr_beats_the_mean_and_interpolation(fitted, digits):
    train, test = digits
    mse_of_mean = (((test - train.mean(0)) / 16) ** 2).reshape(len(test), -1).mean(1)
    score = fitted.pretext_score(test)
    assert score > np.mean(-10 * np.log10(mse_of_mean)) + 3
    assert score > fitted.baseline_score(test, "bilinear") + 1
    assert score > fitted.baseline_score(test, "bicubic") + 1


def test_embedding_chooses_the_trunk(fitted, digits):
    generator = fitted.transform(digits[1][:10])
    discriminator = fitted.set_params(embedding="discriminator").transform(digits[1][:10])
    fitted.set_params(embedding="generator")
    assert generator.shape == discriminator.shape and not np.allclose(generator, discriminator)


def test_scale_larger_than_the_image_is_rejected():
    with pytest.raises(ValueError, match="scale"):
        SuperResolutionSSL(scale=16, max_epochs=1).fit(np.random.rand(10, 64))
