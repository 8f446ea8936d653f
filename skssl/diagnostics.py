"""What did the pretext learn? Diagnostics of embeddings and pretext tasks.

Wallace & Hariharan ("Extending and Analyzing Self-Supervised Learning Across
Domains", ECCV 2020) diagnose pretext tasks with three experiments, all here:

- :func:`pretext_generalization`: the pretext's own loss (and accuracy, for
  classification pretexts) on training images against held-out images. A
  pretext that the network solves on its training images only has been
  memorised, not understood.
- :func:`random_label_baseline`: the same estimator trained on random pretext
  targets (``shuffle_pretext_targets=True``). What its embedding still
  achieves comes from the induced data distribution (rotated copies, shuffled
  tiles), not from the pretext's meaning.
- :func:`implicit_dimensionality`: how many principal components carry 90% of
  an embedding's variance, next to :func:`effective_rank`.

:func:`alignment_uniformity` adds Wang & Isola's (ICML 2020) two measures on
augmented pairs, and :func:`compare_pretexts` puts several estimators in one
table of few-label accuracy, kNN, linear probe, effective rank, implicit
dimensionality and fitting time. Figures are in :mod:`skssl.plotting`.
"""

import math
import time
from numbers import Integral

import numpy as np
import torch
from sklearn.base import clone
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from ._sources import resolve_num_workers
from .augment import Augment
from .evaluation import _embed, embedding_diagnostics, few_label_score, knn_score, linear_probe_score

__all__ = [
    "implicit_dimensionality", "effective_rank", "alignment", "uniformity", "alignment_uniformity",
    "pretext_loss", "pretext_generalization", "random_label_baseline", "compare_pretexts", "PretextComparison",
]


# ----------------------------------------------------------------- embeddings
def _matrix(Z):
    Z = np.asarray(Z, dtype=np.float64)
    if Z.ndim != 2:
        raise ValueError(f"Z must be 2-D (n_samples, n_features), got shape {Z.shape}")
    if not np.all(np.isfinite(Z)):
        raise ValueError("Z contains NaN or inf")
    return Z


def implicit_dimensionality(Z, threshold=0.9):
    """Number of principal components that explain ``threshold`` of the variance of ``Z``.

    Wallace & Hariharan's implicit dimensionality: PCA of the (centred)
    embedding, then the smallest number of components whose explained
    variance reaches ``threshold`` of the total. A collapsed embedding (every
    row on one line) has 1; a constant one, with no variance at all, 0.

    Parameters
    ----------
    Z : array-like of shape (n_samples, n_features)
        The embeddings, one row per image.
    threshold : float in (0, 1], default=0.9
        Fraction of the total variance the components must explain.

    Returns
    -------
    int

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> Z = rng.normal(size=(500, 3)) @ rng.normal(size=(3, 32))  # rank 3
    >>> implicit_dimensionality(Z, threshold=0.999) <= 3
    True
    >>> implicit_dimensionality(np.outer(np.arange(10.0), np.ones(8)))  # one line
    1
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
    Z = _matrix(Z)
    s = np.linalg.svd(Z - Z.mean(axis=0), compute_uv=False)
    variance = s**2
    total = variance.sum()
    if total <= 1e-12 * max(1.0, float(np.abs(Z).max()) ** 2) * Z.size:
        return 0
    explained = np.cumsum(variance) / total
    return int(np.searchsorted(explained, threshold - 1e-12) + 1)


def effective_rank(Z):
    """Effective rank of ``Z`` (Roy & Vetterli 2007): exp of the entropy of its normalised singular values.

    The value in :func:`skssl.evaluation.embedding_diagnostics`: between 1
    and ``min(Z.shape)``, the rank itself when the non-zero singular values
    are equal, 0 for an all-zero ``Z``. ``Z`` is not centred (unlike
    :func:`implicit_dimensionality`), so a large common mean counts as one
    strong direction.

    Parameters
    ----------
    Z : array-like of shape (n_samples, n_features)
        The embeddings, one row per image.

    Returns
    -------
    float
        The effective rank.

    Examples
    --------
    >>> round(effective_rank(np.eye(4)), 6)
    4.0
    """
    return embedding_diagnostics(_matrix(Z))["effective_rank"]


def _unit_rows(Z):
    Z = _matrix(Z)
    return Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12)


def alignment(Z1, Z2, alpha=2):
    """Wang & Isola's alignment: mean ``||z1 - z2||^alpha`` of L2-normalised positive pairs (0 is perfect).

    Rows ``i`` of ``Z1`` and ``Z2`` are the embeddings of two views of one
    image; both are normalised to unit length first, so the value lies in
    ``[0, 2**alpha]``.

    Parameters
    ----------
    Z1, Z2 : array-like of shape (n_samples, n_features)
        Embeddings of the first and the second view of each image.
    alpha : float, default=2
        Exponent of the distance.

    Returns
    -------
    float
        The alignment.

    Examples
    --------
    >>> Z = np.random.default_rng(0).normal(size=(5, 3))
    >>> alignment(Z, Z), alignment(Z, -Z)
    (0.0, 4.0)
    """
    Z1, Z2 = _unit_rows(Z1), _unit_rows(Z2)
    if Z1.shape != Z2.shape:
        raise ValueError(f"Z1 and Z2 must have the same shape, got {Z1.shape} and {Z2.shape}")
    return float(np.mean(np.linalg.norm(Z1 - Z2, axis=1) ** alpha))


def uniformity(Z, t=2):
    """Wang & Isola's uniformity: ``log mean exp(-t ||z_i - z_j||^2)`` over all pairs ``i < j`` of L2-normalised rows.

    0 for a collapsed embedding (every row the same direction); more negative
    is more uniform on the sphere (with ``t=2``, about -3.8 for many points
    spread uniformly over the sphere in 40 dimensions, tending to -4 as the
    dimension grows).

    Parameters
    ----------
    Z : array-like of shape (n_samples, n_features)
        The embeddings, one row per image (at least 2).
    t : float, default=2
        Scale of the Gaussian potential.

    Returns
    -------
    float
        The uniformity.

    Examples
    --------
    >>> uniformity(np.ones((4, 3)))
    0.0
    >>> uniformity([[1.0, 0.0], [-1.0, 0.0]])  # two antipodal points: -t * 4
    -8.0
    """
    Z = _unit_rows(Z)
    if len(Z) < 2:
        raise ValueError("uniformity needs at least 2 rows")
    # ||a - b||^2 = 2 - 2 a.b for unit rows; log-sum-exp over the upper triangle.
    exponents = -t * np.maximum(2.0 - 2.0 * (Z @ Z.T), 0.0)[np.triu_indices(len(Z), k=1)]
    top = exponents.max()
    return float(top + np.log(np.mean(np.exp(exponents - top))))


def _subsample(X, n, random_state):
    """At most ``n`` rows of ``X``, chosen without replacement from ``random_state`` (kept in order)."""
    if n is None or len(X) <= n:
        return X
    index = np.sort(check_random_state(random_state).choice(len(X), n, replace=False))
    if isinstance(X, torch.utils.data.Dataset):
        return torch.utils.data.Subset(X, index.tolist())
    return X[index]


def _seed(random_state):
    return int(check_random_state(random_state).randint(2**31 - 1))


def alignment_uniformity(estimator, X, *, augment=None, alpha=2, t=2, max_samples=2000, random_state=0):
    """Alignment and uniformity (Wang & Isola 2020) of a fitted estimator's embedding of augmented pairs.

    Every image of ``X`` is augmented twice (seeded, without touching global
    RNG state) and both views are embedded as ``transform`` does (backbone
    features of stage ``stage``, eval mode), then L2-normalised. Alignment is
    the mean ``||f(x) - f(x')||^alpha`` over the pairs (0: views embed
    identically); uniformity is ``log mean exp(-t ||f(x) - f(y)||^2)`` over
    all pairs of images, averaged over the two views (0: collapsed; more
    negative: spread over the sphere).

    Parameters
    ----------
    estimator : fitted skssl estimator
        The estimator whose embedding is measured.
    X : array-like of images, as ``transform`` takes them
        Images; each is augmented twice.
    augment : skssl.augment.Augment, tuple of Augment or None, default=None
        The views' augmentation; ``None`` uses the one the estimator trained
        with (``augment_``; a tuple gives view ``i`` its ``i``-th pipeline).
        Methods that train without augmentation (autoencoders, the random
        initialisation) have ``Augment.none()`` and so alignment 0: pass the
        augmentation whose invariance you want to measure.
    alpha, t : float, default=2
        Exponents of the two measures, as in the paper.
    max_samples : int or None, default=2000
        Images used at most (a seeded subsample); uniformity compares all pairs.
    random_state : int, RandomState or None, default=0
        Seeds the subsample and the augmentations.

    Returns
    -------
    dict
        ``{"alignment": float, "uniformity": float}``.

    Examples
    --------
    >>> from skssl import SimCLR, load_digits_images
    >>> X, _ = load_digits_images(return_X_y=True)
    >>> est = SimCLR(max_epochs=1, random_state=0).fit(X[:256])
    >>> au = alignment_uniformity(est, X[:256])
    >>> sorted(au), au["alignment"] >= 0 >= au["uniformity"]
    (['alignment', 'uniformity'], True)
    """
    check_is_fitted(estimator, "networks_")
    X = estimator._check_input(_subsample(X, max_samples, random_state), reset=False)
    augments = augment if augment is not None else estimator.augment_
    augments = augments if isinstance(augments, tuple) else (augments,)
    if not all(isinstance(a, Augment) for a in augments):
        raise TypeError(f"augment must be an Augment, a tuple of Augment or None; got {augment!r}")
    generator = torch.Generator(device=estimator._device()).manual_seed(_seed(random_state))

    def two_views(x):
        with torch.autocast(x.device.type, enabled=False):  # augmentation in fp32, as in training
            views = [augments[i % len(augments)](x.float(), generator) for i in range(2)]
        return torch.cat([estimator._encode(v, estimator.stage).float() for v in views], dim=1)

    Z = estimator._map_batches(X, two_views).astype(np.float64)
    Z1, Z2 = np.split(Z, 2, axis=1)
    return {"alignment": alignment(Z1, Z2, alpha),
            "uniformity": (uniformity(Z1, t) + uniformity(Z2, t)) / 2}


# ------------------------------------------------------------ pretext losses
_FIT_TIME = ("_generator", "_shared_generator", "_step", "_total_steps", "_epoch_metrics", "_rank", "_world")


def pretext_loss(estimator, X, *, batch_size=None, random_state=0):
    """The pretext task's own training loss on images ``X``, without changing the estimator.

    The method's loss runs as in training (its augmentations, its random
    tiles or masks, drawn from ``random_state``) but in eval mode, without
    gradients and without any update: weights, BatchNorm statistics, memory
    banks and the global RNG are left as they were. Batches have the
    training ``batch_size`` (a last partial batch is dropped, as in training,
    unless it is the only one), so that losses that compare the samples of a
    batch (contrastive ones) are on the training scale.

    Parameters
    ----------
    estimator : fitted skssl estimator
        The estimator whose pretext loss is measured.
    X : array-like of images
        Images as ``transform`` takes them.
    batch_size : int, default=None
        ``None``: the estimator's ``batch_size``.
    random_state : int, RandomState or None, default=0
        Seeds the views, tiles or masks of the pretext.

    Returns
    -------
    float
        The mean loss over the batches.

    Raises
    ------
    ValueError
        For a method whose loss reads state kept per training image (a memory
        bank, cluster assignments, MoCo's queue of training keys, random
        pretext targets): that loss is not defined on other images. Also for
        an estimator that trains nothing (``RandomInit``). A method counts as
        such when its loss reads the training-set indices of the batch
        (``_batch_index``), which do not exist for other images.

    Examples
    --------
    >>> from skssl import RotationSSL, load_digits_images
    >>> from skssl.diagnostics import pretext_loss
    >>> X, _ = load_digits_images(return_X_y=True)
    >>> model = RotationSSL(max_epochs=1, random_state=0).fit(X[:100])
    >>> pretext_loss(model, X[100:200]) > 0
    True
    """
    check_is_fitted(estimator, "networks_")
    name = type(estimator).__name__
    if not getattr(estimator, "_trains", True):
        raise ValueError(f"{name} trains no pretext task, so it has no pretext loss.")
    if getattr(estimator, "shuffle_pretext_targets", False):
        raise ValueError(f"{name} trained on random targets, one per training image "
                         "(shuffle_pretext_targets=True), so its pretext loss is not defined on other images.")
    source = estimator._check_input(X, reset=False)
    device = estimator._device()
    n = len(source)
    batch_size = min(batch_size or estimator.batch_size, n)
    batches = [torch.arange(i, i + batch_size) for i in range(0, n - batch_size + 1, batch_size)]
    seed = _seed(random_state)
    nets = estimator.networks_.to(device).eval()
    added = [k for k in _FIT_TIME if k not in vars(estimator)]
    before = set(vars(estimator))
    generator = torch.Generator(device=device).manual_seed(seed)
    defaults = {"_generator": generator, "_shared_generator": generator, "_step": len(batches),
                "_total_steps": len(batches), "_epoch_metrics": {}, "_rank": 0, "_world": 1}
    for key in added:
        setattr(estimator, key, defaults[key])
    total = 0.0
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.default_generator.manual_seed(seed)  # torch.manual_seed would reseed every GPU
            if device.type == "cuda":
                torch.cuda.manual_seed(seed)
            with torch.no_grad():
                for _, stored in source.batches(batches, resolve_num_workers(estimator.num_workers, source)):
                    x = estimator._prepare(stored, device)
                    with estimator._autocast(device):
                        total += float(estimator._loss(x).float()) * len(x)
    except AttributeError as exc:
        if getattr(exc, "name", None) == "_batch_index":
            raise ValueError(
                f"{name}'s pretext loss reads state kept per training image (a memory bank, cluster "
                "assignments or a queue of training keys), so it is not defined on other images."
            ) from None
        raise
    except NotImplementedError:
        raise ValueError(f"{name} has no pretext loss.") from None
    finally:
        # Side results a loss leaves for _after_step (keys to enqueue, bank updates) and the fit-time state.
        for key in set(vars(estimator)) - before:
            del estimator.__dict__[key]
        nets.eval()
    return total / (len(batches) * batch_size)


def _pretext_score_description(estimator):
    doc = (type(estimator).pretext_score.__doc__ or "").strip()
    return doc.split("\n")[0].strip() if doc else "pretext_score"


def pretext_generalization(estimator, X_train, X_test, *, max_samples=2000, random_state=0):
    """The pretext's own loss and score on training images against held-out images.

    Wallace & Hariharan's pretext generalisation: a pretext that the network
    solves on its training images but not on new ones was memorised, and its
    features are unlikely to transfer. Both sets are subsampled to the same
    size (seeded), so losses that depend on the batch compare fairly.

    Parameters
    ----------
    estimator : fitted skssl estimator
        Fitted on (a superset of) ``X_train``.
    X_train, X_test : array-like of images
        Training images and images the estimator has never seen.
    max_samples : int or None, default=2000
        Images used at most from each set.
    random_state : int, RandomState or None, default=0
        Seeds the subsamples and the pretext's random draws.

    Returns
    -------
    dict
        ``method``; ``train_loss`` and ``test_loss`` (:func:`pretext_loss`);
        ``train_accuracy`` and ``test_accuracy`` for classification pretexts
        (their ``pretext_score``: rotations, jigsaw permutations, tile
        positions); ``train_score``, ``test_score`` and ``score`` (what it
        measures) for other methods with a ``pretext_score`` (reconstruction
        errors, PSNR, discriminator or token accuracy); every entry that a
        method has not is ``None``, and ``note`` says why (for instance, a
        memory bank has no loss on held-out images).

    Examples
    --------
    >>> from skssl import RotationSSL, load_digits_images
    >>> X, _ = load_digits_images(return_X_y=True)
    >>> est = RotationSSL(max_epochs=1, random_state=0).fit(X[:300])
    >>> g = pretext_generalization(est, X[:300], X[300:600])
    >>> g["train_accuracy"] is not None and g["test_loss"] is not None
    True
    """
    check_is_fitted(estimator, "networks_")
    n = min(len(X_train), len(X_test), max_samples or math.inf)
    X_train, X_test = _subsample(X_train, n, random_state), _subsample(X_test, n, random_state)
    result = {"method": type(estimator).__name__, "train_loss": None, "test_loss": None,
              "train_accuracy": None, "test_accuracy": None, "train_score": None, "test_score": None,
              "score": None, "note": None}
    notes = []
    try:
        result["train_loss"] = pretext_loss(estimator, X_train, random_state=random_state)
        result["test_loss"] = pretext_loss(estimator, X_test, random_state=random_state)
    except ValueError as exc:
        notes.append(str(exc))
    if hasattr(estimator, "pretext_score") and not getattr(estimator, "shuffle_pretext_targets", False):
        train, test = estimator.pretext_score(X_train), estimator.pretext_score(X_test)
        if estimator._pretext_score_is_accuracy:
            result.update(train_accuracy=train, test_accuracy=test, score="accuracy")
        else:
            result.update(train_score=train, test_score=test, score=_pretext_score_description(estimator))
    elif hasattr(estimator, "pretext_score"):
        notes.append("trained on random pretext targets: its pretext_score measures the real task, not what it fitted.")
    else:
        notes.append(f"{type(estimator).__name__} has no pretext_score (no pretext accuracy).")
    result["note"] = " ".join(notes) or None
    return result


# ---------------------------------------------------------------- baselines
def _probe(model, X, y, probe, X_test, y_test, cv, n_per_class, random_state):
    if probe == "linear":
        return linear_probe_score(model, X, y, X_test=X_test, y_test=y_test, cv=cv, random_state=random_state)
    if probe == "knn":
        return knn_score(model, X, y, X_test=X_test, y_test=y_test, cv=cv, random_state=random_state)
    if probe == "few_label":
        return few_label_score(model, X, y, n_per_class, random_state=random_state)
    raise ValueError(f"probe must be 'linear', 'knn' or 'few_label', got {probe!r}")


def _fitted(estimator):
    return "networks_" in vars(estimator)


def random_label_baseline(estimator, X, y, *, probe="linear", X_test=None, y_test=None, cv=5,
                          n_per_class=10, random_state=0):
    """Probe accuracy of a pretext next to the same pretext trained on random targets.

    Wallace & Hariharan's random labelling: a clone of ``estimator`` with
    ``shuffle_pretext_targets=True`` trains on the same induced images
    (rotated copies, shuffled tiles, tile pairs) with random, per-image
    targets. Whatever its embedding achieves comes from those images alone,
    not from the pretext's meaning; the gap to the real pretext is what the
    meaning adds. ``y`` is only used by the probes.

    Parameters
    ----------
    estimator : RotationSSL, JigsawSSL or RelativePositionSSL (fitted or not)
        Any estimator with a ``shuffle_pretext_targets`` parameter. An
        unfitted one is cloned and fitted on ``X``; a fitted one is used as it is.
    X : array-like of images
        Training images of the random-label clone and of the probes.
    y : array-like of shape (n_samples,)
        Labels of ``X`` for the probe (never seen by the pretext).
    probe : {"linear", "knn", "few_label"}, default="linear"
        :func:`~skssl.evaluation.linear_probe_score`,
        :func:`~skssl.evaluation.knn_score` (both cross-validated on ``X``
        unless ``X_test`` and ``y_test`` are given) or
        :func:`~skssl.evaluation.few_label_score` with ``n_per_class``.
    X_test, y_test, cv, n_per_class, random_state
        Passed to the probe.

    Returns
    -------
    dict
        ``accuracy`` and ``random_label_accuracy`` (the probe on each
        embedding), ``pretext_accuracy`` and ``random_label_pretext_accuracy``
        (each model's accuracy on the real pretext task over ``X``: the
        random-label model should sit near chance), and the two fitted
        models as ``estimator`` and ``random_label_estimator``.

    Examples
    --------
    >>> from skssl import RotationSSL, load_digits_images
    >>> X, y = load_digits_images(return_X_y=True)
    >>> r = random_label_baseline(RotationSSL(max_epochs=1, random_state=0), X[:400], y[:400], cv=2)
    >>> r["random_label_estimator"].shuffle_pretext_targets
    True
    """
    if "shuffle_pretext_targets" not in estimator.get_params():
        raise ValueError(
            f"{type(estimator).__name__} has no shuffle_pretext_targets parameter; the random-label baseline "
            "is for the classification pretexts RotationSSL, JigsawSSL and RelativePositionSSL."
        )
    real = estimator if _fitted(estimator) else clone(estimator).fit(X)
    shuffled = clone(estimator).set_params(shuffle_pretext_targets=True).fit(X)
    return {
        "accuracy": _probe(real, X, y, probe, X_test, y_test, cv, n_per_class, random_state),
        "random_label_accuracy": _probe(shuffled, X, y, probe, X_test, y_test, cv, n_per_class, random_state),
        "pretext_accuracy": real.pretext_score(X) if not real.shuffle_pretext_targets else None,
        "random_label_pretext_accuracy": shuffled.pretext_score(X),
        "estimator": real,
        "random_label_estimator": shuffled,
    }


# --------------------------------------------------------------- comparison
_HEADERS = {"method": "method", "knn": "kNN", "linear_probe": "linear probe", "effective_rank": "effective rank",
            "implicit_dim": "implicit dim", "fit_seconds": "fit s"}


class PretextComparison:
    """The table :func:`compare_pretexts` returns.

    Parameters
    ----------
    columns : dict of str to list
        The table's columns (see Attributes).
    curves : dict of str to dict
        The few-label curves (see Attributes).
    estimators : dict of str to estimator
        The fitted models (see Attributes).

    Attributes
    ----------
    columns : dict of str to list
        One list per column, one entry per compared model, in order:
        ``method``, ``few_label_<n>`` for every ``n`` labels per class, ``knn``,
        ``linear_probe``, ``effective_rank``, ``implicit_dim``, ``fit_seconds``.
        ``pandas.DataFrame(comparison.columns)`` is the table as a data frame.
    curves : dict of str to dict
        ``{method: {n: (mean, std)}}``: the few-label accuracies with their
        standard deviation over the draws (what
        :func:`skssl.plotting.plot_comparison` draws).
    estimators : dict of str to estimator
        The fitted models by method name (``None`` for raw pixels).

    Examples
    --------
    >>> from skssl.diagnostics import PretextComparison
    >>> table = PretextComparison({"method": ["raw pixels"], "knn": [0.9]}, {}, {"raw pixels": None})
    >>> len(table)
    1
    """

    def __init__(self, columns, curves, estimators):
        self.columns = columns
        self.curves = curves
        self.estimators = estimators

    def __len__(self):
        return len(self.columns["method"])

    def to_markdown(self, digits=3):
        """The table as GitHub markdown, accuracies with ``digits`` decimals.

        Parameters
        ----------
        digits : int, default=3
            Decimals of the accuracies.

        Returns
        -------
        str
            The markdown table.
        """
        names = list(self.columns)
        header = [_HEADERS.get(k, k.replace("few_label_", "") + " labels/class" if k.startswith("few_label_") else k)
                  for k in names]

        def cell(key, value):
            if value is None:
                return ""
            if key == "method":
                return str(value)
            if key == "implicit_dim":
                return str(int(value))
            if key in ("effective_rank", "fit_seconds"):
                return f"{value:.1f}"
            return f"{value:.{digits}f}"

        lines = ["| " + " | ".join(header) + " |",
                 "|" + "|".join(":---" if k == "method" else "---:" for k in names) + "|"]
        for i in range(len(self)):
            lines.append("| " + " | ".join(cell(k, self.columns[k][i]) for k in names) + " |")
        return "\n".join(lines)

    def __repr__(self):
        return self.to_markdown()

    _repr_markdown_ = to_markdown


def _named(estimators):
    if isinstance(estimators, dict):
        return dict(estimators)
    named, counts = {}, {}
    for est in estimators:
        base = "raw pixels" if est is None else type(est).__name__
        counts[base] = counts.get(base, 0) + 1
        named[base if counts[base] == 1 else f"{base} ({counts[base]})"] = est
    return named


def compare_pretexts(estimators, X, y, *, X_test=None, y_test=None, n_per_class=(1, 5, 10), n_repeats=5,
                     cv=5, random_labels=False, fit=True, random_state=0, verbose=False):
    """Fit several self-supervised estimators on ``X`` and compare their embeddings in one table.

    Each estimator is cloned and fitted on ``X`` without labels (timed), then
    embeds ``X`` once; on that embedding the table gives few-label accuracy
    (linear probe on ``n_per_class`` labels per class, tested on the other
    images, mean of ``n_repeats`` draws), cosine kNN and linear-probe
    accuracy (cross-validated on ``X``, or trained on ``X`` and tested on
    ``X_test``), effective rank and implicit dimensionality.

    Parameters
    ----------
    estimators : dict of name to estimator, or list of estimators
        ``None`` in place of an estimator is the raw-pixel baseline. Names of
        a list are the class names.
    X : array-like of images
        Images the estimators are fitted on and that the probes read (with ``y``).
    y : array-like of shape (n_samples,)
        Labels, used by the probes only.
    X_test, y_test : optional
        Held-out images and labels for the kNN and linear-probe columns.
    n_per_class : int or sequence of int, default=(1, 5, 10)
        Labelled images per class of the few-label columns.
    n_repeats : int, default=5
        Labelled subsets drawn per few-label column.
    cv : int, default=5
        Folds of the kNN and linear-probe columns without ``X_test``.
    random_labels : bool, default=False
        Add, after every estimator with a ``shuffle_pretext_targets``
        parameter, its random-label baseline (see
        :func:`random_label_baseline`) as "<name> (random labels)".
    fit : bool, default=True
        ``False`` compares already fitted estimators as they are (no cloning,
        no fit; ``fit_seconds`` is then ``None``).
    random_state : int, default=0
        Seeds the probes' draws and folds (not the estimators).
    verbose : bool, default=False
        Print each row as it is done.

    Returns
    -------
    PretextComparison
        ``.columns`` (a dict of lists, for ``pandas.DataFrame``), ``.curves``,
        ``.estimators`` and ``.to_markdown()``.

    Examples
    --------
    >>> from skssl import RotationSSL, SimCLR, load_digits_images
    >>> X, y = load_digits_images(return_X_y=True)
    >>> table = compare_pretexts({"pixels": None, "rotation": RotationSSL(max_epochs=1, random_state=0),
    ...                           "simclr": SimCLR(max_epochs=1, random_state=0)}, X[:300], y[:300],
    ...                          n_per_class=(1, 5), n_repeats=2, cv=2)
    >>> table.columns["method"]
    ['pixels', 'rotation', 'simclr']
    >>> print(table.to_markdown().splitlines()[0])
    | method | 1 labels/class | 5 labels/class | kNN | linear probe | effective rank | implicit dim | fit s |
    """
    ns = [n_per_class] if isinstance(n_per_class, Integral) else [int(n) for n in n_per_class]
    models = []
    for name, est in _named(estimators).items():
        models.append((name, est, False))
        if random_labels and est is not None and "shuffle_pretext_targets" in est.get_params():
            models.append((f"{name} (random labels)", est, True))
    columns = {"method": [], **{f"few_label_{n}": [] for n in ns}, "knn": [], "linear_probe": [],
               "effective_rank": [], "implicit_dim": [], "fit_seconds": []}
    curves, fitted = {}, {}
    for name, est, shuffled in models:
        seconds = None
        if est is not None and (fit or shuffled):
            est = clone(est).set_params(shuffle_pretext_targets=True) if shuffled else clone(est)
            start = time.perf_counter()
            est.fit(X)
            seconds = time.perf_counter() - start
        Z, _ = _embed(est, X, y)
        Z_test = None if X_test is None else _embed(est, X_test, y_test, "X_test")[0]
        few = few_label_score(Z, None, y, ns, n_repeats, random_state=random_state, return_std=True)
        curves[name] = few
        fitted[name] = est
        row = {"method": name, **{f"few_label_{n}": few[n][0] for n in ns},
               "knn": knn_score(Z, None, y, X_test=Z_test, y_test=y_test, cv=cv, random_state=random_state),
               "linear_probe": linear_probe_score(Z, None, y, X_test=Z_test, y_test=y_test, cv=cv,
                                                  random_state=random_state),
               "effective_rank": effective_rank(Z), "implicit_dim": implicit_dimensionality(Z),
               "fit_seconds": seconds}
        for key, value in row.items():
            columns[key].append(value)
        if verbose:  # the header with the first row, then one line per row
            lines = PretextComparison({k: [v] for k, v in row.items()}, {}, {}).to_markdown().splitlines()
            print("\n".join(lines if len(columns["method"]) == 1 else lines[-1:]), flush=True)
    return PretextComparison(columns, curves, fitted)
