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


@pytest.mark.parametrize("sobel, epochs, seeds, margin", [(True, 8, (0, 1), 0.025), (False, 4, (0,), 0.05)])
def test_training_makes_clusters_follow_the_digit_classes(sobel, epochs, seeds, margin):
    # labels_ of a one-epoch fit cluster the random-init features (clustering
    # happens before the epoch); after more epochs of training they must
    # follow the (never seen) classes better. Measured NMI, 1 -> more epochs,
    # seeds 0/1/2: with Sobel (random Sobel features already cluster better;
    # 8 epochs) 0.42->0.40, 0.47->0.60, 0.47->0.58, so the test averages two
    # seeds; without Sobel (4 epochs) 0.31->0.55, 0.34->0.44, 0.38->0.45.
    X, y = load_digits_images(return_X_y=True)
    before, after = [], []
    for seed in seeds:
        params = dict(n_clusters=10, batch_size=64, sobel=sobel, random_state=seed)
        before.append(normalized_mutual_info_score(y[:320], DeepClusterSSL(max_epochs=1, **params).fit(X[:320]).labels_))
        after.append(normalized_mutual_info_score(y[:320], DeepClusterSSL(max_epochs=epochs, **params).fit(X[:320]).labels_))
    assert np.mean(after) > np.mean(before) + margin, (before, after)


# ------------------------------------------------------------------- Sobel
import torch  # noqa: E402

from skssl import load  # noqa: E402
from skssl.pretext.deepcluster import sobel  # noqa: E402

RGB = np.random.default_rng(0).integers(50, 200, (48, 12, 12, 3), dtype=np.uint8)


def _in_channels(est):
    return next(m for m in est.backbone_.modules() if isinstance(m, torch.nn.Conv2d)).in_channels


def test_sobel_gives_two_gradient_channels_of_the_channel_mean():
    ramp = torch.arange(6.0).expand(2, 3, 5, 6).clone()  # grows by 1 per column
    out = sobel(ramp)
    assert out.shape == (2, 2, 5, 6)
    torch.testing.assert_close(out[:, 0, :, 1:-1], torch.full((2, 5, 4), -8.0))  # 1 + 2 + 1, both sides
    assert torch.equal(out[:, 1], torch.zeros(2, 5, 6))  # no vertical change
    torch.testing.assert_close(sobel(torch.full((1, 3, 4, 4), 0.7)), torch.zeros(1, 2, 4, 4))  # no border edges


def test_sobel_is_on_for_colour_images_and_the_backbone_sees_two_channels(tmp_path):
    est = DeepClusterSSL(n_clusters=4, max_epochs=1, batch_size=16, random_state=0).fit(RGB)
    assert est.sobel is True and _in_channels(est) == 2
    Z = est.transform(RGB)
    assert Z.shape == (48, est.embedding_dim_)
    # a colour cast (a constant per channel) is invisible to the Sobel input: clusters cannot form on colour
    cast = RGB.copy()
    cast[..., 0] += 30
    np.testing.assert_allclose(est.transform(cast), Z, atol=1e-5)
    est.save(tmp_path / "dc.skssl")
    loaded = load(tmp_path / "dc.skssl")
    assert _in_channels(loaded) == 2
    np.testing.assert_array_equal(loaded.transform(RGB), Z)
    off = DeepClusterSSL(n_clusters=4, max_epochs=1, batch_size=16, sobel=False, random_state=0).fit(RGB)
    assert _in_channels(off) == 3


def test_sobel_is_on_for_grayscale_too_and_can_be_turned_off():
    X, _ = load_digits_images(return_X_y=True)
    params = dict(n_clusters=4, max_epochs=1, batch_size=32, random_state=0)
    assert _in_channels(DeepClusterSSL(**params).fit(X[:64])) == 2
    assert _in_channels(DeepClusterSSL(sobel=False, **params).fit(X[:64])) == 1
