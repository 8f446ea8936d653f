"""UnsupervisedMetaSSL: UMTRA and CACTUs-style episodes, the prototypical loss, what it learns."""

import numpy as np
import pytest
import torch

import skssl
from skssl.augment import Augment
from skssl.datasets import load_digits_images
from skssl.evaluation import few_shot_score
from skssl.meta import UnsupervisedMetaSSL
from skssl.meta._episodes import ClusterEpisodeSampler, prototypical_loss

from _untrained import fit_both


@pytest.fixture(scope="module")
def digits():
    return load_digits_images(return_X_y=True)


def test_prototypical_loss_matches_its_definition():
    g = torch.Generator().manual_seed(0)
    support, query = torch.randn(3, 4, 2, 5, generator=g), torch.randn(3, 4, 3, 5, generator=g)
    loss, accuracy = prototypical_loss(support, query)
    expected, hits = [], []
    for e in range(3):
        prototypes = support[e].mean(1)  # (4, 5)
        for j in range(4):
            for q in range(3):
                logits = -((query[e, j, q] - prototypes) ** 2).sum(1)
                expected.append(-torch.log_softmax(logits, 0)[j])
                hits.append(float(logits.argmax() == j))
    torch.testing.assert_close(loss, torch.stack(expected).mean())
    assert accuracy.item() == pytest.approx(np.mean(hits))


def test_umtra_episode_classes_are_single_images_with_their_views_as_samples(digits):
    # With identity views the support and queries of a class are the same image's
    # features, and the n_way classes of an episode are different images.
    X = digits[0][:40]
    est = UnsupervisedMetaSSL(augment=Augment.none(), n_way=4, k_shot=2, n_query=3, max_epochs=1, random_state=0).fit(X)
    x = torch.as_tensor(X[:12].reshape(-1, 1, 8, 8) / 16.0, dtype=torch.float32)
    est._generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        est.networks_.eval()
        features, shape = est._umtra_features(x, None, est._generator)
        direct = est._encode(x).view(3, 4, -1)
    assert tuple(shape) == (3, 4) and features.shape == (3, 4, 5, est.embedding_dim_)
    torch.testing.assert_close(features, direct[:, :, None].expand_as(features))
    assert torch.cdist(direct[0], direct[0]).fill_diagonal_(1.0).min() > 0


def test_cluster_episodes_take_distinct_images_of_distinct_eligible_pseudo_classes():
    labels = torch.tensor([0] * 6 + [1] * 2 + [2] * 9 + [3] * 4 + [4] * 5 + [-1] * 3)  # class 1 is too small
    sampler = ClusterEpisodeSampler(labels, per_class=4, seed=0)
    episodes = sampler.sample(200, n_way=3)
    assert episodes.shape == (200, 3, 4)
    classes = labels[episodes]  # (episode, way, sample)
    assert (classes == classes[..., :1]).all()  # one pseudo-class per way
    assert not torch.isin(classes, torch.tensor([1, -1])).any()
    for e in episodes:
        assert len(set(e.flatten().tolist())) == 12  # no image twice in an episode
        assert len(set(labels[e[:, 0]].tolist())) == 3  # distinct classes
    # every eligible class and every member of class 2 are drawn
    assert set(classes.unique().tolist()) == {0, 2, 3, 4}
    assert set(episodes[classes == 2].tolist()) == set(range(8, 17))
    assert ClusterEpisodeSampler(labels, per_class=7, seed=0).sample(5, 3) is None  # only class 2 qualifies


def test_clusters_mode_clusters_the_embedding_and_keeps_the_labels_through_save_and_load(digits, tmp_path):
    X = digits[0][:96]
    est = UnsupervisedMetaSSL(pseudo_labels="clusters", n_clusters=6, cluster_warmup=1, max_epochs=2, batch_size=32,
                              random_state=0).fit(X)
    assert [r["pseudo_classes"] for r in est.history_] == [0, 6]  # after one warm-up epoch of UMTRA episodes
    assert sorted(np.unique(est.labels_)) == list(range(6))
    est.save(tmp_path / "m.skssl")
    loaded = skssl.load(tmp_path / "m.skssl")
    np.testing.assert_array_equal(loaded.labels_, est.labels_)
    np.testing.assert_array_equal(loaded.transform(X), est.transform(X))
    assert not hasattr(est, "_episode_source") and not hasattr(est, "_sampler")


def test_bad_settings_are_refused_by_name(digits):
    X = digits[0][:32]
    with pytest.raises(ValueError, match="n_way"):
        UnsupervisedMetaSSL(n_way=1).fit(X)
    with pytest.raises(ValueError, match="pseudo_labels"):
        UnsupervisedMetaSSL(pseudo_labels="labels").fit(X)
    est = UnsupervisedMetaSSL(max_epochs=1, random_state=0).fit(X)
    with pytest.raises(ValueError, match="at least n_way=5 images"):
        est.pretext_score(X[:3])
    with pytest.raises(AttributeError, match="clusters"):
        est.labels_


@pytest.mark.parametrize("mode", ["augmentation", "clusters"])
def test_episodes_train_an_embedding_that_classifies_unseen_digits_from_few_shots(mode, digits):
    # Measured (seed 0, 256 training digits, 5 epochs, 5-way 1-shot on the 797 held-out digits,
    # confidence intervals about 0.013): augmentation 0.718 trained / 0.566 untrained, UMTRA
    # episode accuracy 0.337 / 0.283 (chance 0.2; about 800 queries); clusters 0.651 / 0.568.
    X, y = digits
    kwargs = dict(n_clusters=10, cluster_warmup=1, cluster_update_every=2) if mode == "clusters" else {}
    trained, untrained = fit_both(lambda: UnsupervisedMetaSSL(pseudo_labels=mode, max_epochs=5, batch_size=64,
                                                              random_state=0, **kwargs), X[:256])
    held_out, labels = X[1000:], y[1000:]
    good, bad = (few_shot_score(e.transform(held_out), labels, n_query=5, n_episodes=300, random_state=0)
                 for e in (trained, untrained))
    assert good.mean > bad.mean + good.ci95 + bad.ci95, (good, bad)
    if mode == "augmentation":  # its own task on held-out images; the clusters train another
        episode, episode_untrained = trained.pretext_score(held_out), untrained.pretext_score(held_out)
        assert episode > episode_untrained + 0.03, (episode, episode_untrained)


def test_pretext_generalization_has_the_umtra_loss_on_new_images_but_not_the_cluster_loss(digits):
    X = digits[0]
    umtra = UnsupervisedMetaSSL(max_epochs=1, batch_size=32, random_state=0).fit(X[:64])
    result = skssl.pretext_generalization(umtra, X[:64], X[64:128])
    assert result["test_loss"] > 0 and result["test_accuracy"] is not None and result["note"] is None
    cactus = UnsupervisedMetaSSL(pseudo_labels="clusters", n_clusters=4, cluster_warmup=0, max_epochs=1, batch_size=32,
                                 random_state=0).fit(X[:64])
    result = skssl.pretext_generalization(cactus, X[:64], X[64:128])
    assert result["test_loss"] is None and "per training image" in result["note"]
