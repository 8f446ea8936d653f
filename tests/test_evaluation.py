import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA

from skssl.evaluation import _knn_predict, embedding_diagnostics, few_label_score, knn_score, linear_probe_score


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    return d.images, d.data, d.target


def test_raw_pixels_few_label(digits):
    images, _, y = digits
    assert few_label_score(None, images, y, 10) > 0.7
    assert few_label_score(None, images, y, 1) > 0.3  # chance is 0.1
    assert few_label_score(None, images, y, 10, probe="knn") > 0.7


def test_noise_embedding_near_chance(digits):
    _, _, y = digits
    Z = np.random.default_rng(0).normal(size=(len(y), 32))
    assert few_label_score(Z, None, y, 10) < 0.25
    assert linear_probe_score(Z, None, y) < 0.25
    assert knn_score(Z, None, y) < 0.25


def test_raw_pixels_probe_and_knn(digits):
    images, X, y = digits
    assert linear_probe_score(None, images, y) > 0.9
    assert knn_score(None, images, y) > 0.9
    assert knn_score(None, images, y) == knn_score(X, None, y)  # images are flattened


def test_transformer_equals_embeddings(digits):
    _, X, y = digits
    pca = PCA(16, random_state=0).fit(X)
    Z = pca.transform(X)
    assert few_label_score(pca, X, y, 5, 2) == few_label_score(Z, None, y, 5, 2) == few_label_score(Z, X, y, 5, 2)
    assert linear_probe_score(pca, X, y, cv=2) == linear_probe_score(Z, None, y, cv=2)
    assert knn_score(pca, X, y) == knn_score(Z, X, y)
    tr, te = slice(0, 1200), slice(1200, None)
    pca = PCA(16, random_state=0).fit(X[tr])
    Z_tr, Z_te = pca.transform(X[tr]), pca.transform(X[te])
    for score in (linear_probe_score, knn_score):
        a = score(pca, X[tr], y[tr], X_test=X[te], y_test=y[te])
        assert a == score(Z_tr, None, y[tr], X_test=Z_te, y_test=y[te]) and a > 0.85


def test_determinism_and_seeds(digits):
    _, X, y = digits
    a = few_label_score(None, X, y, 3, 3, return_std=True, random_state=1)
    assert a == few_label_score(None, X, y, 3, 3, return_std=True, random_state=1)
    assert a != few_label_score(None, X, y, 3, 3, return_std=True, random_state=2)
    assert isinstance(a, tuple) and 0 < a[1] < 0.2
    probe = [linear_probe_score(None, X[:600], y[:600], cv=2, random_state=4) for _ in range(2)]
    assert probe[0] == probe[1]


def test_sequence_returns_dict(digits):
    _, X, y = digits
    out = few_label_score(None, X, y, [1, 5], n_repeats=2)  # 1 and 5 labels per class
    assert list(out) == [1, 5] and all(isinstance(v, float) for v in out.values())
    assert out[5] == few_label_score(None, X, y, 5, n_repeats=2)  # each n reseeds
    std = few_label_score(None, X, y, (1, 5), n_repeats=2, return_std=True)
    assert std[1][0] == out[1] and len(std[5]) == 2


def test_validation_errors(digits):
    _, X, y = digits
    keep = np.flatnonzero(y != 3)[:500].tolist() + np.flatnonzero(y == 3)[:7].tolist()
    with pytest.raises(ValueError, match="n_per_class=10 but class 3 has only 7 samples"):
        few_label_score(None, X[keep], y[keep], [5, 10])
    with pytest.raises(ValueError, match="NaN"):
        few_label_score(np.full((len(y), 4), np.nan), None, y)
    with pytest.raises(ValueError, match="inf"):
        knn_score(np.full((len(y), 4), np.inf), None, y)
    with pytest.raises(ValueError, match="1797 labels"):
        linear_probe_score(None, X, y[:-1])
    with pytest.raises(ValueError, match="rows but X has"):
        knn_score(X[:10], X[:11], y[:10])
    with pytest.raises(ValueError, match="required"):
        linear_probe_score(PCA(2).fit(X), None, y)
    with pytest.raises(ValueError, match="2-D"):
        knn_score(X.ravel(), None, y)
    with pytest.raises(ValueError, match="together"):
        knn_score(None, X, y, X_test=X)
    with pytest.raises(ValueError, match="probe"):
        few_label_score(None, X, y, probe="svm")
    with pytest.raises(ValueError, match="n_per_class"):
        few_label_score(None, X, y, 0)


def test_knn_separated_clusters():
    rng = np.random.default_rng(0)
    Z = np.vstack([rng.normal([5, 0, 0], 0.3, (40, 3)), rng.normal([0, 5, 0], 0.3, (40, 3))])
    y = np.repeat(["cat", "dog"], 40)  # non-integer labels are fine
    assert knn_score(Z, None, y) == 1.0
    assert knn_score(Z[::2], None, y[::2], X_test=Z[1::2], y_test=y[1::2], n_neighbors=200) == 1.0


def test_knn_weighting_by_hand():
    # query along +x; one class-0 point almost aligned, two class-1 points at 60 degrees, a far class-0 point
    ang = np.deg2rad([5, 60, -60, 180])
    Z = np.c_[np.cos(ang), np.sin(ang)]
    y = np.array([0, 1, 1, 0])
    q, s = np.array([[3.0, 0.0]]), np.cos(ang)
    w0, w1 = np.exp(s[0] / 0.07), 2 * np.exp(s[1] / 0.07)  # 3 nearest: one vote for 0, two for 1
    assert w0 > w1  # the weighted vote disagrees with the 1-vs-2 majority
    assert _knn_predict(Z, y, q, 3, 0.07)[0] == 0
    assert knn_score(Z, None, y, X_test=q, y_test=[0], n_neighbors=3) == 1.0
    assert _knn_predict(Z, y, q, 3, 100.0)[0] == 1  # high temperature ~ plain majority
    t_tie = (s[0] - s[1]) / np.log(2)  # exp(s0/T) == 2 exp(s1/T) exactly here
    assert _knn_predict(Z, y, q, 3, 0.95 * t_tie)[0] == 0 and _knn_predict(Z, y, q, 3, 1.05 * t_tie)[0] == 1
    with pytest.raises(ValueError, match="temperature"):
        _knn_predict(Z, y, q, 3, 0.0)


def test_knn_matches_reference_and_chunking():
    rng = np.random.default_rng(1)
    A, B, y = rng.normal(size=(300, 8)), rng.normal(size=(70, 8)), rng.integers(0, 4, 300)
    An, Bn = A / np.linalg.norm(A, axis=1, keepdims=True), B / np.linalg.norm(B, axis=1, keepdims=True)
    sim = Bn @ An.T
    ref = []
    for row in sim:
        top = np.argsort(-row)[:10]
        ref.append(np.bincount(y[top], weights=np.exp(row[top] / 0.1), minlength=4).argmax())
    np.testing.assert_array_equal(_knn_predict(A, y, B, 10, 0.1), ref)
    np.testing.assert_array_equal(_knn_predict(A, y, B, 10, 0.1, chunk_elems=600), ref)  # chunks of 2 rows
    np.testing.assert_array_equal(_knn_predict(A[:5], y[:5], B, 10, 0.1), _knn_predict(A[:5], y[:5], B, 5, 0.1))


def test_diagnostics_collapsed():
    Z = np.tile(np.random.default_rng(0).normal(size=16), (200, 1))
    d = embedding_diagnostics(Z)
    assert d["std_normalized"] == pytest.approx(0, abs=1e-9)
    assert d["effective_rank"] == pytest.approx(1, abs=1e-6)
    assert d["n_dead_dims"] == 16 and d["has_nonfinite"] is False


def test_diagnostics_isotropic():
    Z = np.random.default_rng(0).normal(size=(5000, 16))
    d = embedding_diagnostics(Z)
    assert 15 < d["effective_rank"] <= 16
    assert d["std_normalized"] == pytest.approx(1 / np.sqrt(16), rel=0.05)
    assert d["n_dead_dims"] == 0
    Z[:, :3] = 0  # dead dims lower the rank
    d = embedding_diagnostics(Z)
    assert d["n_dead_dims"] == 3 and 12 < d["effective_rank"] <= 13


def test_diagnostics_edge_cases():
    d = embedding_diagnostics(np.array([[1.0, np.nan], [0.0, 1.0]]))
    assert d["has_nonfinite"] is True and np.isnan(d["std_normalized"]) and np.isnan(d["effective_rank"])
    assert embedding_diagnostics(np.zeros((4, 3)))["effective_rank"] == 0.0
    with pytest.raises(ValueError, match="2-D"):
        embedding_diagnostics(np.zeros(5))


def test_modules_do_not_import_torch():
    # import the two modules as parts of a bare skssl package (its own __init__.py, which imports
    # torch, never runs), so the check does not depend on it and relative imports still resolve
    root = Path(__file__).resolve().parents[1] / "skssl"
    code = ("import importlib, sys, types\n"
            "package = types.ModuleType('skssl')\n"
            f"package.__path__ = [r'{root}']\n"
            "sys.modules['skssl'] = package\n"
            "for name in ('evaluation', 'datasets'):\n"
            "    importlib.import_module('skssl.' + name)\n"
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))[:3]\n")
    subprocess.run([sys.executable, "-c", code], check=True)
