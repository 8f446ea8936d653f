"""Frozen-embedding evaluation: linear probe, cosine kNN, few-label and few-shot protocols, diagnostics.

Every scorer takes ``estimator_or_embeddings`` first: a fitted transformer (embeddings are
``estimator.transform(X)``), ``None`` (raw inputs flattened to (n, -1), the pixel baseline),
or a 2-D array of precomputed embeddings (``X`` may then be None). With precomputed
embeddings, ``X_test`` must be the precomputed test embeddings.
"""
from dataclasses import dataclass
from numbers import Integral

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_random_state

__all__ = ["linear_probe_score", "knn_score", "few_label_score", "few_shot_score", "FewShotResult",
           "embedding_diagnostics"]


def _embed(est, X, y, what="X"):
    if est is None or hasattr(est, "transform"):
        if X is None:
            raise ValueError(f"{what} is required unless precomputed embeddings are passed")
        Z = np.asarray(est.transform(X) if est is not None else np.asarray(X).reshape(len(X), -1))
    else:
        Z = np.asarray(est)
    if Z.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (n_samples, n_features), got shape {Z.shape}")
    if X is not None and len(X) != len(Z):
        raise ValueError(f"embeddings have {len(Z)} rows but {what} has {len(X)} samples")
    Z = Z.astype(np.float64) if not np.issubdtype(Z.dtype, np.floating) else Z
    if not np.all(np.isfinite(Z)):
        raise ValueError("embeddings contain NaN" if np.isnan(Z).any() else "embeddings contain inf")
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != len(Z):
        raise ValueError(f"y{what[1:]} must be 1-D with {len(Z)} labels, got shape {y.shape}")
    return Z, y


def _linear_probe(C=1.0, max_iter=2000):
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))


def _knn_predict(Z_train, y_train, Z_test, n_neighbors, temperature, chunk_elems=2**24):
    if temperature <= 0 or n_neighbors < 1:
        raise ValueError(f"need temperature > 0 and n_neighbors >= 1, got {temperature}, {n_neighbors}")
    classes, y_idx = np.unique(y_train, return_inverse=True)
    # float32 halves the matmul cost (60k x 10k); cosine precision is ample for ranking
    A, B = ((Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12)).astype(np.float32, copy=False)
            for Z in (Z_train, Z_test))
    k = min(int(n_neighbors), len(A))
    step = max(1, chunk_elems // len(A))  # bounds the (step, n_train) similarity block in memory
    pred = np.empty(len(B), dtype=np.intp)
    for s in range(0, len(B), step):
        sim = B[s:s + step] @ A.T
        idx = np.argpartition(sim, -k, axis=1)[:, -k:]
        top = np.take_along_axis(sim, idx, axis=1)
        # Wu et al. 2018: vote weight exp(sim / T); the row max is subtracted only for overflow safety
        w = np.exp((top - top.max(axis=1, keepdims=True)) / temperature)
        votes = np.zeros((len(top), len(classes)))
        np.add.at(votes, (np.arange(len(top))[:, None], y_idx[idx]), w)
        pred[s:s + step] = votes.argmax(axis=1)
    return classes[pred]


def _score(fit_predict, est, X, y, X_test, y_test, cv, random_state):
    """Test-set accuracy if X_test/y_test are given, else mean stratified k-fold accuracy."""
    Z, y = _embed(est, X, y)
    if (X_test is None) != (y_test is None):
        raise ValueError("X_test and y_test must be given together")
    if X_test is not None:
        Zt, y_test = _embed(est if hasattr(est, "transform") else None, X_test, y_test, "X_test")
        if Zt.shape[1] != Z.shape[1]:
            raise ValueError(f"test embeddings have {Zt.shape[1]} features, train have {Z.shape[1]}")
        return float(np.mean(fit_predict(Z, y, Zt) == y_test))
    folds = StratifiedKFold(n_splits=cv, shuffle=True, random_state=random_state).split(Z, y)
    return float(np.mean([np.mean(fit_predict(Z[tr], y[tr], Z[te]) == y[te]) for tr, te in folds]))


def linear_probe_score(estimator_or_embeddings, X, y, *, X_test=None, y_test=None, cv=5,
                       C=1.0, max_iter=2000, random_state=0):
    """Accuracy of a linear probe (StandardScaler + LogisticRegression) on frozen embeddings.

    Parameters
    ----------
    estimator_or_embeddings : fitted transformer, None, or array of shape (n_samples, n_features)
        See the module docstring.
    X : array-like or None
        Images to embed with the estimator, or rows used as they are when
        ``estimator_or_embeddings`` is None (raw pixels).
    y : array-like of shape (n_samples,)
        Labels of ``X``.
    X_test, y_test : array-like, optional
        If given, fit on (X, y) and return test accuracy; else mean accuracy over
        ``cv`` shuffled StratifiedKFold folds seeded by ``random_state``.
    cv : int, default=5
        Folds of the cross-validation when no test set is given.
    C, max_iter : float, int
        LogisticRegression parameters.
    random_state : int or None, default=0
        Seeds the folds.

    Returns
    -------
    score : float

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> X, y = load_digits(return_X_y=True)
    >>> linear_probe_score(None, X, y) > 0.9
    True
    """
    def fit_predict(Z, yz, Zt):
        return _linear_probe(C, max_iter).fit(Z, yz).predict(Zt)

    return _score(fit_predict, estimator_or_embeddings, X, y, X_test, y_test, cv, random_state)


def knn_score(estimator_or_embeddings, X, y, *, X_test=None, y_test=None, n_neighbors=20,
              temperature=0.07, cv=5, random_state=0):
    """Accuracy of the cosine-weighted kNN classifier of Wu et al. (2018).

    Each of the ``n_neighbors`` most cosine-similar training points votes for its class
    with weight ``exp(sim / temperature)``; chunked matrix products keep 60k x 10k fast.

    Parameters
    ----------
    estimator_or_embeddings, X, y, X_test, y_test
        As in :func:`linear_probe_score`.
    n_neighbors : int, default=20
        Number of neighbours (clipped to the training-set size).
    temperature : float, default=0.07
        Softness of the vote weights; large values approach an unweighted vote.
    cv, random_state
        As in :func:`linear_probe_score`.

    Returns
    -------
    score : float

    Examples
    --------
    >>> Z = np.array([[1.0, 0.1], [1.0, -0.1], [-1.0, 0.1], [-1.0, -0.1]])
    >>> knn_score(Z, None, [0, 0, 1, 1], X_test=[[2.0, 0.0]], y_test=[0], n_neighbors=2)
    1.0
    """
    def fit_predict(Z, yz, Zt):
        return _knn_predict(Z, yz, Zt, n_neighbors, temperature)

    return _score(fit_predict, estimator_or_embeddings, X, y, X_test, y_test, cv, random_state)


def few_label_score(estimator_or_embeddings, X, y, n_per_class=10, n_repeats=5, *,
                    probe="linear", random_state=0, return_std=False):
    """Few-label protocol: train a probe on ``n_per_class`` labels per class, test on the rest.

    Each repeat draws a stratified labelled subset and tests on all remaining samples.
    Embeddings are computed once. Each ``n`` reseeds with ``random_state``, so a dict value
    equals the scalar call with that ``n``.

    Parameters
    ----------
    estimator_or_embeddings, X, y
        As in :func:`linear_probe_score`.
    n_per_class : int or sequence of int, default=10
        Labelled images per class; a sequence scores each.
    n_repeats : int, default=5
        Labelled subsets drawn per ``n``; the score is their mean.
    probe : {"linear", "knn"}, default="linear"
        StandardScaler + LogisticRegression(max_iter=2000), or cosine kNN with
        ``n_neighbors=min(20, n_labelled)``.
    random_state : int or None, default=0
        Seeds the labelled subsets.
    return_std : bool, default=False
        Return ``(mean, std)`` over repeats instead of the mean.

    Returns
    -------
    score : float, tuple or dict
        Mean accuracy (or ``(mean, std)``); a dict ``{n: score}`` if ``n_per_class`` is a sequence.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> X, y = load_digits(return_X_y=True)
    >>> sorted(few_label_score(None, X, y, [1, 10], n_repeats=2))
    [1, 10]
    """
    if probe not in ("linear", "knn"):
        raise ValueError(f"probe must be 'linear' or 'knn', got {probe!r}")
    if not isinstance(n_repeats, Integral) or n_repeats < 1:
        raise ValueError(f"n_repeats must be a positive int, got {n_repeats!r}")
    ns = [n_per_class] if isinstance(n_per_class, Integral) else list(n_per_class)
    if not ns or not all(isinstance(n, Integral) and n >= 1 for n in ns):
        raise ValueError(f"n_per_class must be a positive int or a sequence of them, got {n_per_class!r}")
    Z, y = _embed(estimator_or_embeddings, X, y)
    classes, counts = np.unique(y, return_counts=True)
    members = [np.flatnonzero(y == c) for c in classes]
    out = {}
    for n in ns:
        if counts.min() < n:
            c = classes[counts.argmin()]
            raise ValueError(f"n_per_class={n} but class {c} has only {counts.min()} samples")
        if n * len(classes) >= len(y):
            raise ValueError(f"n_per_class={n} leaves no samples to test on")
        rng = np.random.default_rng(random_state)
        accs = []
        for _ in range(n_repeats):
            train = np.concatenate([rng.choice(m, n, replace=False) for m in members])
            test = np.isin(np.arange(len(y)), train, invert=True)
            if probe == "linear":
                pred = _linear_probe().fit(Z[train], y[train]).predict(Z[test])
            else:
                pred = _knn_predict(Z[train], y[train], Z[test], min(20, len(train)), 0.07)
            accs.append(np.mean(pred == y[test]))
        out[int(n)] = (float(np.mean(accs)), float(np.std(accs))) if return_std else float(np.mean(accs))
    return out[int(n_per_class)] if isinstance(n_per_class, Integral) else out


def embedding_diagnostics(Z):
    """Collapse diagnostics of an embedding matrix.

    Parameters
    ----------
    Z : array-like of shape (n_samples, n_features)
        The embeddings, one row per image.

    Returns
    -------
    diagnostics : dict
        ``std_normalized``: mean over dims of the std of the L2-normalised rows (~0 when
        collapsed, ~1/sqrt(d) when healthy); ``effective_rank``: exp of the entropy of the
        normalised singular values of (uncentred) Z, Roy & Vetterli (2007), in [1, d] (0 for
        an all-zero Z); ``n_dead_dims``: dims with std < 1e-6; ``has_nonfinite``: any NaN/inf
        (the two float metrics are then NaN).

    Examples
    --------
    >>> d = embedding_diagnostics(np.ones((100, 8)))
    >>> round(d["std_normalized"], 6), round(d["effective_rank"], 6), d["n_dead_dims"]
    (0.0, 1.0, 8)
    """
    Z = np.asarray(Z, dtype=np.float64)
    if Z.ndim != 2:
        raise ValueError(f"Z must be 2-D (n_samples, n_features), got shape {Z.shape}")
    finite = bool(np.all(np.isfinite(Z)))
    with np.errstate(invalid="ignore"):  # a column holding inf has std NaN: not counted as dead
        n_dead = int(np.sum(Z.std(axis=0) < 1e-6))
    if not finite:
        return {"std_normalized": float("nan"), "effective_rank": float("nan"),
                "n_dead_dims": n_dead, "has_nonfinite": True}
    Zn = Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12)
    s = np.linalg.svd(Z, compute_uv=False)
    p = s[s > 0] / s.sum()  # empty for an all-zero Z
    erank = float(np.exp(-np.sum(p * np.log(p)))) if p.size else 0.0
    return {"std_normalized": float(Zn.std(axis=0).mean()), "effective_rank": erank,
            "n_dead_dims": n_dead, "has_nonfinite": False}


@dataclass(frozen=True)
class FewShotResult:
    """What :func:`few_shot_score` measured.

    A frozen dataclass: the mean accuracy, its 95% interval and the
    accuracy of every episode (for other intervals or paired comparisons
    between two embeddings scored with the same ``random_state``).

    Parameters
    ----------
    mean : float
        Mean query accuracy over the episodes.
    ci95 : float
        Half-width of the 95% confidence interval of ``mean``:
        ``1.96 * std(accuracies) / sqrt(n_episodes)``.
    accuracies : ndarray of shape (n_episodes,)
        Query accuracy of every episode.

    See Also
    --------
    few_shot_score : Computes it.

    Examples
    --------
    >>> import numpy as np
    >>> result = FewShotResult(mean=0.5, ci95=0.1, accuracies=np.array([0.4, 0.6]))
    >>> result.mean - result.ci95, result.mean + result.ci95
    (0.4, 0.6)
    """

    mean: float
    ci95: float
    accuracies: np.ndarray

    def __repr__(self):
        return f"FewShotResult(mean={self.mean:.4f}, ci95={self.ci95:.4f}, n_episodes={len(self.accuracies)})"


_FEW_SHOT_METRICS = ("normalized_euclidean", "euclidean")
# Episodes are drawn in chunks whose per-class random keys hold at most this many numbers.
_EPISODE_CHUNK = 1 << 22


def few_shot_score(Z, y, n_way=5, k_shot=1, n_query=15, n_episodes=600, random_state=None,
                   metric="normalized_euclidean"):
    """N-way K-shot accuracy of a prototype classifier on labelled embeddings, with its 95% interval.

    The standard few-shot protocol (Vinyals et al. 2016; Snell et al. 2017):
    each episode draws ``n_way`` distinct classes, then ``k_shot`` support
    and ``n_query`` query samples of each, all distinct. Each class's
    prototype is the mean of its support embeddings and each query is given
    the class of its nearest prototype (ties broken at random, so that
    indistinguishable classes score chance, not the first class). The score
    is the mean query accuracy over episodes with the half-width
    ``1.96 * std / sqrt(n_episodes)`` of its 95% confidence interval. All
    episodes are drawn and scored as arrays, without a Python loop over them.

    Parameters
    ----------
    Z : array-like of shape (n_samples, n_features)
        Embeddings, e.g. ``estimator.transform(X_test)`` of images of classes
        the estimator never trained on.
    y : array-like of shape (n_samples,)
        Class of each embedding.
    n_way : int, default=5
        Classes per episode.
    k_shot : int, default=1
        Support samples per class (averaged into its prototype).
    n_query : int, default=15
        Query samples per class, scored against the prototypes.
    n_episodes : int, default=600
        Episodes drawn.
    random_state : int, RandomState, Generator or None, default=None
        Seeds the draw of episodes and the breaking of ties.
    metric : {"normalized_euclidean", "euclidean"}, default="normalized_euclidean"
        Distance from a query to a prototype. ``"normalized_euclidean"``:
        every embedding is L2-normalised first, then prototypes (means of
        the normalised supports, not normalised again) and queries are
        compared by Euclidean distance; this is common for self-supervised
        embeddings, whose norms carry little class information.
        ``"euclidean"``: the raw embeddings, as prototypical networks train.

    Returns
    -------
    FewShotResult
        ``mean``, ``ci95`` and the per-episode ``accuracies``.

    See Also
    --------
    few_label_score : Linear-probe accuracy with few labels of the same classes.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(np.arange(6), 20)
    >>> Z = np.eye(6)[y] + 0.1 * rng.standard_normal((120, 6))
    >>> result = few_shot_score(Z, y, n_way=5, k_shot=1, n_query=5, n_episodes=100, random_state=0)
    >>> result.mean
    1.0
    """
    for name, value, low in (("n_way", n_way, 2), ("k_shot", k_shot, 1), ("n_query", n_query, 1),
                             ("n_episodes", n_episodes, 1)):
        if isinstance(value, bool) or not isinstance(value, Integral) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    if metric not in _FEW_SHOT_METRICS:
        raise ValueError(f"metric must be one of {_FEW_SHOT_METRICS}, got {metric!r}")
    Z = np.asarray(Z)
    if Z.ndim != 2:
        raise ValueError(f"Z must be 2-D (n_samples, n_features), got shape {Z.shape}")
    if not np.issubdtype(Z.dtype, np.number):
        raise ValueError(f"Z must be numeric, got dtype {Z.dtype}")
    Z = Z.astype(np.float64)
    if not np.all(np.isfinite(Z)):
        raise ValueError("Z contains NaN" if np.isnan(Z).any() else "Z contains infinity")
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != len(Z):
        raise ValueError(f"y must be 1-D with one label per row of Z ({len(Z)}), got shape {y.shape}")
    classes, y_index, counts = np.unique(y, return_inverse=True, return_counts=True)
    if len(classes) < n_way:
        raise ValueError(f"n_way={n_way} but y has only {len(classes)} classes")
    per_class = k_shot + n_query
    if counts.min() < per_class:
        small = classes[counts < per_class]
        raise ValueError(f"k_shot + n_query = {per_class} samples are needed from each class, but class "
                         f"{small[0].tolist()!r} has {counts[counts < per_class][0]} ({len(small)} classes have too few)")
    if metric == "normalized_euclidean":
        Z = Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12)
    rng = random_state if isinstance(random_state, np.random.Generator) else \
        np.random.default_rng(check_random_state(random_state).randint(2**31 - 1))
    # members[c, :counts[c]]: the rows of class c; the padding is never drawn.
    members = np.zeros((len(classes), counts.max()), dtype=np.intp)
    order = np.argsort(y_index, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.arange(len(y)) - np.repeat(starts, counts)
    members[y_index[order], slot] = order
    accuracies = np.empty(n_episodes)
    chunk = max(1, _EPISODE_CHUNK // (n_way * counts.max()))
    targets = np.repeat(np.arange(n_way), n_query)
    for start in range(0, n_episodes, chunk):
        e = min(chunk, n_episodes - start)
        ways = rng.random((e, len(classes))).argsort(axis=1)[:, :n_way]  # n_way distinct classes
        # k_shot + n_query distinct members of each: the smallest of random keys, padding excluded
        keys = rng.random((e, n_way, counts.max()))
        keys[np.arange(counts.max()) >= counts[ways][..., None]] = np.inf
        picked = np.take_along_axis(members[ways], np.argsort(keys, axis=2)[..., :per_class], axis=2)
        samples = Z[picked]  # (e, n_way, k_shot + n_query, d)
        prototypes = samples[:, :, :k_shot].mean(axis=2)
        queries = samples[:, :, k_shot:].reshape(e, n_way * n_query, -1)
        distances = (np.einsum("eqd,eqd->eq", queries, queries)[..., None]
                     - 2 * np.einsum("eqd,ewd->eqw", queries, prototypes)
                     + np.einsum("ewd,ewd->ew", prototypes, prototypes)[:, None, :])
        # Prototypes within rounding of the nearest tie; one of them is chosen at random.
        nearest = distances <= distances.min(axis=2, keepdims=True) + 1e-9 * (1 + np.abs(distances).max(axis=2, keepdims=True))
        predicted = np.where(nearest, rng.random(distances.shape), -1.0).argmax(axis=2)
        accuracies[start:start + e] = (predicted == targets).mean(axis=1)
    mean = float(accuracies.mean())
    return FewShotResult(mean=mean, ci95=float(1.96 * accuracies.std() / np.sqrt(n_episodes)), accuracies=accuracies)
