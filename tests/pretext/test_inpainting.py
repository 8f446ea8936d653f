"""InpaintingSSL: scikit-learn compatibility, masks, held-out reconstruction."""

import numpy as np
import pytest
import torch

from skssl.datasets import load_digits_images
from skssl.pretext.inpainting import InpaintingSSL, masked_mse, region_masks


def test_center_mask_is_the_central_square_of_the_given_side():
    mask = region_masks(3, (8, 8), "center", 0.5, None, "cpu")
    assert mask.shape == (3, 1, 8, 8) and mask.sum() == 3 * 16
    assert mask[:, :, 2:6, 2:6].all()


def test_random_masks_differ_per_image_and_follow_the_generator():
    draw = lambda: region_masks(4, (16, 16), "random", 0.5, torch.Generator().manual_seed(0), "cpu")
    masks = draw()
    assert not torch.equal(masks[0], masks[1]) and torch.equal(masks, draw())
    assert (masks.sum(dim=(1, 2, 3)) >= 16).all()  # at least one 4x4 block each


def test_masked_mse_ignores_visible_pixels():
    target, mask = torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    mask[:, :, 0, 0] = True
    pred = torch.ones(2, 1, 4, 4)
    pred[:, :, 0, 0] = 3.0
    assert masked_mse(pred, target, mask).item() == pytest.approx(9.0)


# Random blocks must be placed through the encoder's 2x2 bottleneck: they learn slower.
@pytest.mark.parametrize(("params", "ratio"), [({}, 0.6), ({"adversarial_weight": 0.001}, 0.6), ({"mask": "random"}, 0.9)])
def test_held_out_reconstruction_beats_predicting_the_mean(params, ratio):
    X, _ = load_digits_images(return_X_y=True)
    idx = np.random.RandomState(0).permutation(len(X))
    train, test = X[idx[:600]], X[idx[600:900]]
    est = InpaintingSSL(max_epochs=3, batch_size=32, random_state=0, **params).fit(train)
    seed = int(np.random.RandomState(0).randint(2**31 - 1))  # the masks pretext_score(random_state=0) draws
    masks = region_masks(len(test), (8, 8), est.mask, 0.5, torch.Generator().manual_seed(seed), "cpu")
    masks = masks[:, 0].reshape(len(test), -1).numpy()
    mean_error = (((test.reshape(len(test), -1) - train.reshape(len(train), -1).mean(0)) / 16) ** 2)[masks].mean()
    assert est.pretext_score(test) < ratio * mean_error
