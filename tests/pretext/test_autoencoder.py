"""DenoisingAutoencoderSSL: corruption, reconstruction learning, sklearn compatibility."""

import numpy as np
import pytest
import torch

from skssl.datasets import load_digits_images
from skssl.pretext.autoencoder import DenoisingAutoencoderSSL, corrupt


def test_masking_zeroes_the_requested_fraction_of_pixels_across_channels():
    x = torch.ones(64, 3, 16, 16)
    out = corrupt(x, "masking", 0.25, torch.Generator().manual_seed(0))
    dropped = (out == 0).float()
    assert abs(dropped.mean().item() - 0.25) < 0.02
    assert torch.equal(dropped[:, 0], dropped[:, 2])  # a masked pixel loses all its channels


def test_gaussian_noise_has_the_requested_std_and_level_zero_is_identity():
    x = torch.full((64, 1, 16, 16), 0.5)
    out = corrupt(x, "gaussian", 0.1, torch.Generator().manual_seed(0))
    assert abs((out - x).std().item() - 0.1) < 0.005
    assert corrupt(x, "masking", 0.0, None) is x


def test_masking_everything_raises():
    with pytest.raises(ValueError, match="masks every pixel"):
        DenoisingAutoencoderSSL(noise_level=1.0, max_epochs=1).fit(np.random.default_rng(0).random((8, 8, 8)))


def test_held_out_reconstruction_beats_the_training_mean_image():
    X = load_digits_images(return_X_y=True)[0][:500]
    train, test = X[:350], X[350:]
    est = DenoisingAutoencoderSSL(max_epochs=8, batch_size=16, random_state=0).fit(train)
    low, high = est.scale_
    standardise = lambda A: ((A - low) / (high - low) - est.channel_mean_[0]) / est.channel_std_[0]
    mean_image_error = float(np.mean((standardise(test) - standardise(train).mean(0)) ** 2))
    assert est.pretext_score(test) < 0.5 * mean_image_error
    assert est.reconstruct(test[:2]).shape == (2, 8, 8, 1)


@pytest.mark.parametrize("noise, level", [("gaussian", 0.2), ("gaussian", 0.0)])
def test_gaussian_and_plain_autoencoders_learn(noise, level):
    X = load_digits_images(return_X_y=True)[0][:300]
    est = DenoisingAutoencoderSSL(noise=noise, noise_level=level, max_epochs=3, batch_size=16, random_state=0).fit(X[:200])
    assert est.history_[-1]["loss"] < 0.7 * est.history_[0]["loss"]
    assert est.pretext_score(X[200:]) < 0.5  # predicting the channel mean scores 1
