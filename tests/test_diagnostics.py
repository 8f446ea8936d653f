import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError

from skssl import (InstanceDiscriminationSSL, JigsawSSL, RelativePositionSSL, RotationSSL, SimCLR,
                   load_digits_images)
from skssl.augment import Augment
from skssl.baselines import RandomInit
from skssl.diagnostics import (PretextComparison, alignment, alignment_uniformity, compare_pretexts, effective_rank,
                               implicit_dimensionality, pretext_generalization, pretext_loss, random_label_baseline,
                               uniformity)
from skssl.evaluation import linear_probe_score
from skssl.pretext._random_targets import pretext_targets

TINY = dict(max_epochs=1, batch_size=32, random_state=0)


@pytest.fixture(scope="module")
def digits():
    return load_digits_images(return_X_y=True)


@pytest.fixture(scope="module")
def rotation(digits):
    return RotationSSL(**TINY).fit(digits[0][:96])


def known_spectrum(variances, n=200, d=16, seed=0):
    """Centred (n, d) rows whose principal variances are exactly proportional to ``variances``."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(n, len(variances)))
    Q, _ = np.linalg.qr(A - A.mean(axis=0))  # orthonormal, centred columns
    V, _ = np.linalg.qr(rng.normal(size=(d, len(variances))))
    return Q @ np.diag(np.sqrt(variances)) @ V.T


# ------------------------------------------------------------------ embeddings
@pytest.mark.parametrize("k", [1, 3, 7])
def test_rank_k_embedding_with_equal_variances_has_dimensionality_and_effective_rank_k(k):
    Z = known_spectrum([1.0] * k)
    assert implicit_dimensionality(Z, threshold=0.9) == k  # 0.9 k components are not enough
    assert effective_rank(Z) == pytest.approx(k)


def test_implicit_dimensionality_counts_components_up_to_the_threshold():
    Z = known_spectrum([4.0, 3.0, 2.0, 1.0])  # cumulative 0.4, 0.7, 0.9, 1.0
    assert implicit_dimensionality(Z, 0.9) == 3
    assert implicit_dimensionality(Z, 0.91) == 4
    assert implicit_dimensionality(Z, 0.4) == 1
    assert implicit_dimensionality(Z, 0.5) == 2


def test_collapsed_embedding_has_dimensionality_one_and_a_constant_one_zero():
    t = np.random.default_rng(0).normal(size=(100, 1))
    line = 3.0 + t * np.linspace(-1, 1, 32)  # every row on one line, off the origin
    assert implicit_dimensionality(line) == 1
    assert implicit_dimensionality(np.full((50, 8), 5.0)) == 0


def test_implicit_dimensionality_rejects_bad_input():
    with pytest.raises(ValueError, match="threshold"):
        implicit_dimensionality(np.eye(3), threshold=0)
    with pytest.raises(ValueError, match="2-D"):
        implicit_dimensionality(np.ones(3))


def test_alignment_and_uniformity_known_answers():
    Z = np.random.default_rng(0).normal(size=(20, 5))
    assert alignment(Z, Z) == 0.0
    assert alignment(Z, 3 * Z) == pytest.approx(0.0, abs=1e-12)  # rows are normalised first
    assert alignment(Z, -Z) == pytest.approx(4.0)
    assert alignment(Z, -Z, alpha=1) == pytest.approx(2.0)
    assert uniformity(np.ones((10, 4))) == pytest.approx(0.0)  # collapsed
    assert uniformity([[1.0, 0.0], [-1.0, 0.0]]) == pytest.approx(-8.0)
    assert uniformity(np.eye(6)) == pytest.approx(-4.0)  # every pair at squared distance 2
    assert uniformity(np.eye(6), t=1) == pytest.approx(-2.0)


def test_alignment_uniformity_of_identical_views_is_zero_alignment(digits, rotation):
    X = digits[0][:64]
    rng_state = torch.get_rng_state()
    same = alignment_uniformity(rotation, X, augment=Augment.none())
    assert same["alignment"] == pytest.approx(0.0, abs=1e-10)
    assert same["uniformity"] == pytest.approx(uniformity(rotation.transform(X)), abs=1e-5)
    augmented = alignment_uniformity(rotation, X)  # the training augmentation: crops and flips
    assert augmented["alignment"] > 1e-4
    assert augmented == alignment_uniformity(rotation, X)  # seeded
    assert augmented != alignment_uniformity(rotation, X, random_state=1)
    assert torch.equal(rng_state, torch.get_rng_state())


# ----------------------------------------------------------- pretext losses
def test_pretext_loss_is_seeded_and_leaves_the_estimator_untouched(digits, rotation):
    X = digits[0][96:160]
    rotation.networks_.train()  # pretext_loss must evaluate in eval mode whatever mode it finds
    state = {k: v.clone() for k, v in rotation.networks_.state_dict().items()}
    attributes = set(vars(rotation))
    rng_state = torch.get_rng_state()
    loss = pretext_loss(rotation, X)
    assert np.isfinite(loss) and loss > 0
    assert loss == pretext_loss(rotation, X)
    assert all(torch.equal(v, state[k]) for k, v in rotation.networks_.state_dict().items())  # BN stats too
    assert set(vars(rotation)) == attributes
    assert torch.equal(rng_state, torch.get_rng_state())
    assert not rotation.networks_.training


def test_pretext_generalization_reports_train_and_held_out_loss_and_accuracy(digits, rotation):
    X = digits[0]
    g = pretext_generalization(rotation, X[:96], X[96:400])
    assert g["method"] == "RotationSSL" and g["score"] == "accuracy" and g["note"] is None
    for key in ("train_loss", "test_loss", "train_accuracy", "test_accuracy"):
        assert isinstance(g[key], float) and np.isfinite(g[key])
    assert 0 <= g["train_accuracy"] <= 1 and g["train_score"] is None
    assert g["train_loss"] == pretext_loss(rotation, X[:96])  # held-out set subsampled to the same 96 images


def test_contrastive_method_has_a_loss_but_no_accuracy(digits):
    X = digits[0]
    est = SimCLR(**TINY).fit(X[:64])
    g = pretext_generalization(est, X[:64], X[64:128])
    assert g["train_loss"] > 0 and g["test_loss"] > 0
    assert g["train_accuracy"] is None and "no pretext_score" in g["note"]


def test_memory_bank_method_says_it_has_no_held_out_pretext_loss(digits):
    X = digits[0]
    est = InstanceDiscriminationSSL(projection_dim=8, n_negatives=16, **TINY).fit(X[:64])
    attributes = set(vars(est))
    g = pretext_generalization(est, X[:64], X[64:128])
    assert g["train_loss"] is None and g["test_loss"] is None
    assert "per training image" in g["note"]
    assert set(vars(est)) == attributes  # no half-written bank update left behind
    with pytest.raises(ValueError, match="per training image"):
        pretext_loss(est, X[:64])


def test_random_init_has_no_pretext_loss(digits):
    est = RandomInit(random_state=0).fit(digits[0][:32])
    with pytest.raises(ValueError, match="trains no pretext"):
        pretext_loss(est, digits[0][:32])


# ----------------------------------------------------------- random labels
@pytest.mark.parametrize("cls, n_labels", [(RotationSSL, 4), (JigsawSSL, 6), (RelativePositionSSL, 8)])
def test_shuffled_targets_are_a_fixed_random_permutation_per_image(digits, cls, n_labels):
    extra = {"n_permutations": 6} if cls is JigsawSSL else {}
    X = digits[0][:64]
    est = cls(shuffle_pretext_targets=True, **extra, **TINY).fit(X)
    table = est.networks_["random_targets"].table.long()
    assert table.shape == (64, n_labels)
    assert torch.equal(table.sort(dim=1).values, torch.arange(n_labels).expand(64, -1))  # permutations
    assert (table != torch.arange(n_labels)).any(dim=1).float().mean() > 0.5  # mostly not the identity
    assert torch.equal(table, cls(shuffle_pretext_targets=True, **extra, **TINY).fit(X)
                       .networks_["random_targets"].table.long())  # seeded
    # The same image keeps its targets in later epochs (warm start continues the fit).
    est.set_params(warm_start=True).fit(X)
    assert torch.equal(est.networks_["random_targets"].table.long(), table)
    assert "random_targets" not in cls(**extra, **TINY).fit(X).networks_


def test_training_targets_come_from_the_table_of_each_image(rotation):
    images = np.zeros((8, 8, 8), np.uint8) + np.arange(8, dtype=np.uint8)[:, None, None]
    est = RotationSSL(shuffle_pretext_targets=True, **TINY).fit(images)
    labels = torch.arange(4).repeat_interleave(3)  # rotate_all's order for a batch of 3
    est._batch_index, est._n_train = torch.tensor([5, 0, 2]), 8
    try:
        targets = pretext_targets(est, labels, 4, lambda index: index.repeat(4))
    finally:
        del est._batch_index
    table = est.networks_["random_targets"].table.long()
    expected = torch.stack([table[i, k] for k in range(4) for i in (5, 0, 2)])
    assert torch.equal(targets, expected)
    assert not torch.equal(targets, labels)
    # The real task's targets never read the training index.
    assert torch.equal(pretext_targets(rotation, labels, 4, lambda index: index.repeat(4)), labels)


def test_random_label_baseline_trains_a_shuffled_clone(digits):
    X, y = digits[0][:120], digits[1][:120]
    result = random_label_baseline(RotationSSL(**{**TINY, "max_epochs": 8}), X, y, cv=2)
    assert result["random_label_estimator"].shuffle_pretext_targets is True
    assert result["estimator"].shuffle_pretext_targets is False
    # Each number is what it says: the probe and the real pretext scored on each model.
    assert result["accuracy"] == linear_probe_score(result["estimator"], X, y, cv=2)
    assert result["random_label_accuracy"] == linear_probe_score(result["random_label_estimator"], X, y, cv=2)
    assert result["pretext_accuracy"] == result["estimator"].pretext_score(X)
    assert result["random_label_pretext_accuracy"] == result["random_label_estimator"].pretext_score(X)
    # Shuffled targets teach nothing about rotations: near chance (1/4), below the real pretext.
    assert abs(result["random_label_pretext_accuracy"] - 0.25) < 0.15
    assert result["pretext_accuracy"] > result["random_label_pretext_accuracy"] + 0.1, result
    with pytest.raises(ValueError, match="random targets"):
        pretext_loss(result["random_label_estimator"], X)
    with pytest.raises(ValueError, match="shuffle_pretext_targets"):
        random_label_baseline(SimCLR(**TINY), X, y)


# -------------------------------------------------------------- comparison
def test_compare_pretexts_table_columns_and_markdown(digits, rotation):
    X, y = digits[0][:96], digits[1][:96]
    table = compare_pretexts({"pixels": None, "rotation": rotation}, X, y, n_per_class=(1, 2), n_repeats=2, cv=2,
                             random_labels=True, fit=False)
    assert isinstance(table, PretextComparison) and len(table) == 3
    assert table.columns["method"] == ["pixels", "rotation", "rotation (random labels)"]
    assert list(table.columns) == ["method", "few_label_1", "few_label_2", "knn", "linear_probe", "effective_rank",
                                   "implicit_dim", "fit_seconds"]
    assert all(len(v) == 3 for v in table.columns.values())
    assert table.estimators["rotation"] is rotation  # fit=False compares the fitted model as it is
    assert table.columns["fit_seconds"][:2] == [None, None] and table.columns["fit_seconds"][2] > 0
    assert table.estimators["rotation (random labels)"].shuffle_pretext_targets
    assert table.columns["implicit_dim"][0] == implicit_dimensionality(X.reshape(96, -1).astype(float))
    assert set(table.curves["pixels"]) == {1, 2} and len(table.curves["pixels"][1]) == 2  # (mean, std)
    lines = table.to_markdown().splitlines()
    assert len(lines) == 5 and lines[0].startswith("| method | 1 labels/class | 2 labels/class | kNN |")
    assert lines[3].startswith("| rotation | ")


def test_comparison_columns_make_a_data_frame(digits):
    import pandas  # in the test extra: this test never skips
    table = compare_pretexts([None], digits[0][:40], digits[1][:40], n_per_class=(1, 2), n_repeats=1, cv=2)
    frame = pandas.DataFrame(table.columns)
    assert frame.shape == (1, 8) and frame["method"].tolist() == ["raw pixels"]


def test_compare_pretexts_fits_clones_of_a_list(digits):
    X, y = digits[0][:64], digits[1][:64]
    est = RotationSSL(**TINY)
    table = compare_pretexts([est, None], X, y, n_per_class=1, n_repeats=1, cv=2)
    assert table.columns["method"] == ["RotationSSL", "raw pixels"]
    assert not hasattr(est, "networks_") and hasattr(table.estimators["RotationSSL"], "networks_")


# ------------------------------------------------------------ loss_curve_
def test_loss_curve_follows_history_and_needs_a_fit(digits, rotation):
    with pytest.raises(NotFittedError):
        RotationSSL().loss_curve_
    assert rotation.loss_curve_ == [r["loss"] for r in rotation.history_] and len(rotation.loss_curve_) == 1
    assert RandomInit(random_state=0).fit(digits[0][:16]).loss_curve_ == []
