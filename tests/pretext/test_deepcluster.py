"""DeepClusterSSL: scikit-learn contract, cluster bookkeeping, and learning on digits."""

import numpy as np
import pytest
from sklearn.metrics import normalized_mutual_info_score

from skssl.datasets import load_digits_images
from skssl.pretext.deepcluster import DeepClusterSSL, split_empty_clusters, whiten_normalize


def test_empty_clusters_take_half_of_the_largest():
    features = np.arange(12, dtype=float).reshape(6, 2)
    labels = np.array([0, 0, 0, 0, 1, 1])
    out = split_empty_clusters(features, labels.copy(), 4, np.random.default_rng(0))
    assert np.array_equal(out[labels == 1], [1, 1])  # only the largest cluster is split
    assert np.all(np.bincount(out, minlength=4) >= 1)
    # identical points still split
    same = split_empty_clusters(np.zeros((4, 3)), np.zeros(4, dtype=np.int64), 2, np.random.default_rng(0))
    assert np.bincount(same).tolist() == [2, 2]


def test_whitened_features_are_unit_norm_and_constant_features_stay_finite():
    rng = np.random.default_rng(0)
    z = whiten_normalize(rng.normal(size=(50, 8)) * np.arange(1, 9), 4)
    assert z.shape == (50, 4) and np.allclose(np.linalg.norm(z, axis=1), 1)
    assert np.isfinite(whiten_normalize(np.ones((5, 3)), 2)).all()


def test_clusters_are_capped_balanced_by_weight_and_nmi_recorded():
    X, _ = load_digits_images(return_X_y=True)
    est = DeepClusterSSL(n_clusters=500, max_epochs=2, batch_size=32, random_state=0).fit(X[:64])
    head = est.networks_["head"]
    assert head.mlp[-1].out_features == 64 and est.labels_.shape == (64,)
    sums = np.bincount(est.labels_, weights=head.weights.numpy())
    assert np.allclose(sums[sums > 0], sums[sums > 0][0])  # every cluster weighs the same
    assert 0 <= est.history_[0]["nmi_next"] <= 1 and "nmi_next" not in est.history_[-1]


def test_same_seed_same_clusters():
    X, _ = load_digits_images(return_X_y=True)
    a = DeepClusterSSL(n_clusters=8, max_epochs=1, batch_size=32, random_state=1).fit(X[:64])
    b = DeepClusterSSL(n_clusters=8, max_epochs=1, batch_size=32, random_state=1).fit(X[:64])
    assert np.array_equal(a.labels_, b.labels_)


def test_training_makes_clusters_follow_the_digit_classes():
    # labels_ of a one-epoch fit cluster the random-init features (clustering
    # happens before the epoch); after three epochs of training they must
    # follow the (never seen) classes better.
    X, y = load_digits_images(return_X_y=True)
    params = dict(n_clusters=10, batch_size=64, random_state=0)
    before = DeepClusterSSL(max_epochs=1, **params).fit(X[:320]).labels_
    after = DeepClusterSSL(max_epochs=4, **params).fit(X[:320]).labels_
    assert normalized_mutual_info_score(y[:320], after) > normalized_mutual_info_score(y[:320], before) + 0.05
