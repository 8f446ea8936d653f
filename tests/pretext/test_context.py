"""RelativePositionSSL: scikit-learn contract, pair construction, and learning on digits."""

import numpy as np
import torch

from skssl.datasets import load_digits_images
from skssl.pretext.context import NEIGHBOURS, RelativePositionSSL, position_pairs


def test_pairs_join_the_centre_with_each_neighbour_and_label_its_position():
    feats = torch.arange(2 * 9, dtype=torch.float32).view(2, 9, 1)  # tile k of image b -> 9b + k
    pairs, labels = position_pairs(feats)
    assert pairs.shape == (16, 2) and torch.equal(labels, torch.arange(8).repeat(2))
    assert torch.equal(pairs[:8, 0], torch.full((8,), 4.0))
    assert torch.equal(pairs[:8, 1], torch.tensor(NEIGHBOURS, dtype=torch.float32))
    assert torch.equal(pairs[8:, 0], torch.full((8,), 13.0))
    assert 4 not in NEIGHBOURS and len(set(NEIGHBOURS)) == 8


def test_learns_relative_positions_on_held_out_digits():
    X, _ = load_digits_images(return_X_y=True)
    est = RelativePositionSSL(max_epochs=4, batch_size=32, random_state=0).fit(X[:256])
    assert est.pretext_score(X[1500:1700]) > 0.3  # chance: 1/8
    Z = est.transform(X[1500:1510])
    assert Z.shape == (10, est.embedding_dim_) and np.isfinite(Z).all()
