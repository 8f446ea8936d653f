"""GANSSL: scikit-learn compatibility, a discriminator that learns, a working sampler."""

import numpy as np
import pytest
import torch

from skssl.datasets import load_digits_images
from skssl.pretext.gan import GANSSL, adversarial_losses


@pytest.fixture(scope="module")
def digits_split():
    X, _ = load_digits_images(return_X_y=True)
    idx = np.random.RandomState(0).permutation(len(X))
    return X[idx[:600]], X[idx[600:900]]


@pytest.fixture(scope="module")
def fitted_gan(digits_split):
    return GANSSL(max_epochs=3, batch_size=32, random_state=0).fit(digits_split[0])


def test_discriminator_separates_held_out_real_from_fresh_fakes(fitted_gan, digits_split):
    assert fitted_gan.pretext_score(digits_split[1]) > 0.75


def test_sample_returns_rows_in_the_input_scale(fitted_gan):
    samples = fitted_gan.sample(5, random_state=1)
    assert samples.shape == (5, 64) and samples.dtype == np.float32
    assert samples.min() >= 0.0 and samples.max() <= 16.0 and samples.std() > 0.1
    np.testing.assert_array_equal(samples, fitted_gan.sample(5, random_state=1))


def test_sample_rejects_a_non_positive_count(fitted_gan):
    with pytest.raises(ValueError, match="n_samples"):
        fitted_gan.sample(0)


def test_generator_term_does_not_move_the_discriminator():
    torch.manual_seed(0)
    discriminator = torch.nn.Linear(4, 1)
    fake = torch.randn(8, 4, requires_grad=True)
    _, loss_g = adversarial_losses(discriminator, torch.randn(8, 4), fake)
    loss_g.backward()
    assert discriminator.weight.grad is None and fake.grad.abs().sum() > 0
