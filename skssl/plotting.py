"""Figures for choosing a pretext: few-label curves, embedding maps, training curves, augmented views.

matplotlib is an optional extra (``pip install skssl[plots]``); it is
imported when a function is called. Every function returns the matplotlib
``Figure`` (save it with ``fig.savefig(path)``); pass ``ax`` where offered to
draw into a figure of your own.
"""

import math

import numpy as np
import torch
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from .augment import Augment

__all__ = ["plot_comparison", "plot_embedding", "plot_history", "plot_augmentations"]


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("skssl.plotting needs matplotlib: pip install skssl[plots] "
                          "(or pip install matplotlib).") from exc
    return plt


def _style(i, n):
    """Colour, marker and line style of series ``i`` of ``n``, distinguishable up to 20 and beyond.

    Dashed lines are kept for random-label baselines.
    """
    import matplotlib

    colours = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    markers = "osD^v<>pPX*h"
    return {"color": colours(i % colours.N), "marker": markers[i % len(markers)],
            "linestyle": ("-", "-.", ":")[(i // colours.N) % 3]}


# The floors every comparison should show, drawn apart from the methods.
_BASELINE_STYLES = {"raw pixels": {"color": "black", "marker": "o", "linestyle": ":"},
                    "RandomInit": {"color": "0.55", "marker": "s", "linestyle": ":"}}


def plot_comparison(comparison, *, ax=None, title="Few-label accuracy", legend=True, bands="auto"):
    """Few-label accuracy against labels per class, one curve per estimator.

    Parameters
    ----------
    comparison : skssl.diagnostics.PretextComparison or dict
        What :func:`skssl.diagnostics.compare_pretexts` returns, or
        ``{name: {n: accuracy or (mean, std)}}`` (the dicts
        :func:`skssl.evaluation.few_label_score` returns for several ``n``).
        Names ending in "(random labels)" are drawn dashed in the colour of
        their pretext; "raw pixels" and "RandomInit" dotted in black and grey.
    ax : matplotlib Axes, optional
        Axes to draw into; default: a new figure.
    title : str
        Title of the axes.
    legend : bool, default=True
        A legend beside the axes (outside the data).
    bands : bool or "auto", default="auto"
        Shade one standard deviation over the draws around each curve (where
        given); ``"auto"``: only for up to 8 curves, where bands stay readable.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = plot_comparison({"pixels": {1: 0.5, 10: 0.8}, "SimCLR": {1: 0.6, 10: 0.9}})  # doctest: +SKIP
    """
    plt = _pyplot()
    curves = getattr(comparison, "curves", comparison)
    if not curves:
        raise ValueError("nothing to plot: the comparison has no few-label curves")
    many = len(curves) > 8
    fig, ax = ((ax.figure, ax) if ax is not None
               else plt.subplots(figsize=(11, 6.5) if many else (7.5, 4.8), layout="constrained"))
    bands = not many if bands == "auto" else bool(bands)
    suffix = " (random labels)"
    bases = [name for name in curves if not name.endswith(suffix) and name not in _BASELINE_STYLES]
    styles = {name: _style(i, len(bases)) for i, name in enumerate(bases)}
    styles.update(_BASELINE_STYLES)
    ns = sorted({int(n) for curve in curves.values() for n in curve})
    for i, (name, curve) in enumerate(curves.items()):
        style = dict(styles.get(name[:-len(suffix)] if name.endswith(suffix) else name, _style(i, len(curves))))
        if name.endswith(suffix):
            style.update(linestyle="--", markerfacecolor="white")
        x = sorted(curve)
        values = [curve[n] for n in x]
        mean = np.array([v[0] if isinstance(v, tuple) else v for v in values], dtype=float)
        ax.plot(x, mean, label=name, linewidth=1.6, markersize=5, **style)
        if bands and all(isinstance(v, tuple) for v in values):
            std = np.array([v[1] for v in values], dtype=float)
            ax.fill_between(x, mean - std, mean + std, color=style["color"], alpha=0.12, linewidth=0)
    if len(ns) > 2 and ns[-1] >= 10 * ns[0]:  # 1, 5, 10, 50 labels: even spacing on a log axis
        ax.set_xscale("log")
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.minorticks_off()
    ax.set(xlabel="labelled images per class", ylabel="accuracy on the other images", title=title)
    ax.grid(alpha=0.3)
    if legend:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False,
                  ncols=1 if len(curves) <= 26 else 2)
    return fig


def plot_embedding(estimator_or_embeddings, X, y, *, method="tsne", ax=None, max_samples=2000, title=None,
                   random_state=0):
    """A 2-D map of an embedding, coloured by label (t-SNE or PCA from scikit-learn).

    Parameters
    ----------
    estimator_or_embeddings : fitted transformer, None, or array of shape (n_samples, n_features)
        As in :mod:`skssl.evaluation`: embeddings are ``estimator.transform(X)``,
        ``None`` maps the raw pixels, an array is used as it is (``X`` may be None).
    X : array-like of images or None
        Images to embed (None when embeddings are given).
    y : array-like of shape (n_samples,)
        Labels that colour the points (only the colours: the map never sees them).
    method : {"tsne", "pca"}, default="tsne"
        ``TSNE(init="pca")`` on the standardised embedding, or its first two
        principal components.
    ax : matplotlib Axes, optional
        Axes to draw into; default: a new figure.
    max_samples : int or None, default=2000
        Points drawn at most (a seeded subsample; t-SNE is quadratic).
    title : str, optional
        Defaults to the estimator's class name and the method.
    random_state : int, default=0
        Seeds the subsample and the t-SNE.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from sklearn.preprocessing import StandardScaler

    from .evaluation import _embed

    if method not in ("tsne", "pca"):
        raise ValueError(f"method must be 'tsne' or 'pca', got {method!r}")
    plt = _pyplot()
    Z, y = _embed(estimator_or_embeddings, X, y)
    if max_samples is not None and len(Z) > max_samples:
        keep = np.sort(np.random.default_rng(random_state).choice(len(Z), max_samples, replace=False))
        Z, y = Z[keep], y[keep]
    Z = StandardScaler().fit_transform(Z)
    if method == "pca":
        pca = PCA(2, random_state=random_state).fit(Z)
        xy = pca.transform(Z)
        labels = [f"PC {i + 1} ({100 * r:.0f}% of the variance)" for i, r in enumerate(pca.explained_variance_ratio_)]
    else:
        xy = TSNE(2, init="pca", perplexity=min(30.0, (len(Z) - 1) / 3), random_state=random_state).fit_transform(Z)
        labels = ["t-SNE 1", "t-SNE 2"]
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6.5, 5.5), layout="constrained")
    classes = np.unique(y)
    for i, c in enumerate(classes):
        pts = xy[y == c]
        ax.scatter(pts[:, 0], pts[:, 1], s=8, alpha=0.75, linewidths=0, label=str(c), **{
            "color": _style(i, len(classes))["color"]})
    est = estimator_or_embeddings
    name = "raw pixels" if est is None else type(est).__name__ if hasattr(est, "transform") else "embedding"
    ax.set(xlabel=labels[0], ylabel=labels[1], title=title or f"{name}: {'t-SNE' if method == 'tsne' else 'PCA'}")
    ax.set_xticks([]), ax.set_yticks([])
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", markerscale=2, frameon=False,
              title="label", ncols=1 if len(classes) <= 20 else 2)
    return fig


def _history(model):
    history = getattr(model, "history_", model)
    if not isinstance(history, list):
        raise TypeError(f"expected a fitted estimator or a history_ list, got {type(model).__name__}")
    return history


def plot_history(estimator, *, metrics=None, ncols=4):
    """Training curves: the loss per epoch and the method's own metrics.

    Parameters
    ----------
    estimator : fitted estimator, a ``history_`` list, or a dict of them
        One estimator: its loss and, in panels beside it, every numeric
        metric its ``history_`` records (DeepCluster's ``nmi_next``,
        BEiT's tokenizer loss, ...). A dict ``{name: estimator}``: a grid of
        loss panels, one per estimator (losses of different methods have
        different scales).
    metrics : list of str, optional
        Metrics to draw for one estimator (default: every numeric one but
        ``epoch``, ``loss``, ``seconds`` and ``batches``).
    ncols : int, default=4
        Panels per row of the grid.

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    if isinstance(estimator, dict):
        histories = {name: _history(m) for name, m in estimator.items()}
        histories = {name: h for name, h in histories.items() if h}
        if not histories:
            raise ValueError("none of the estimators has a training history (did they train?)")
        ncols = min(ncols, len(histories))
        nrows = math.ceil(len(histories) / ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.4 * nrows), squeeze=False, layout="constrained")
        for ax, (name, h) in zip(axes.flat, histories.items()):
            ax.plot([r["epoch"] for r in h], [r["loss"] for r in h], marker="o", markersize=3, color="C0")
            ax.set_title(name, fontsize="medium")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
        for ax in axes.flat[len(histories):]:
            ax.set_visible(False)
        fig.supxlabel("epoch")
        fig.supylabel("training loss")
        return fig
    history = _history(estimator)
    if not history:
        raise ValueError("the estimator has no training history (RandomInit learns nothing)")
    skip = {"epoch", "loss", "seconds", "batches", "interrupted"}
    if metrics is None:
        metrics = sorted({k for r in history for k, v in r.items()
                          if k not in skip and isinstance(v, (int, float)) and not isinstance(v, bool)})
    fig, axes = plt.subplots(1, 1 + len(metrics), figsize=(4.2 * (1 + len(metrics)), 3.2), squeeze=False,
                             layout="constrained")
    for ax, key in zip(axes.flat, ["loss", *metrics]):
        points = [(r["epoch"], r[key]) for r in history if key in r]
        ax.plot(*zip(*points), marker="o", markersize=3, color="C0" if key == "loss" else "C1")
        ax.set(xlabel="epoch", ylabel=key.replace("_", " "))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    name = type(estimator).__name__ if hasattr(estimator, "history_") else "training"
    fig.suptitle(f"{name}: training curves" if metrics else f"{name}: training loss")
    return fig


def _unit_images(source, X, image_shape):
    """Images as ``(n, c, h, w)`` unit-range float tensors at the size the method trains on."""
    from ._images import flatten_images, fit_scale, resize_to, resolve_image_shape, to_image_tensor, unit_range

    if hasattr(source, "networks_"):
        rows = source._check_input(X, reset=False)
        return source._prepare(source._images(rows), torch.device("cpu"))
    rows, shape = flatten_images(X, image_shape, "plot_augmentations")
    rows = np.asarray(rows)
    shape = shape or resolve_image_shape(image_shape, rows.shape[1], "plot_augmentations")
    x = unit_range(to_image_tensor(rows, shape, fit_scale(rows)))
    return resize_to(x, getattr(source, "_min_image_size", 1))


def plot_augmentations(augment, X, *, n_views=7, image_shape=None, random_state=0):
    """A grid of augmented views of images: check that augmentation keeps their meaning.

    Each row is one image of ``X``: the image as the network sees it, then
    ``n_views`` random augmentations of it. If a digit's views turn into
    another digit (a flipped 2, a rotated 6), the augmentation teaches the
    wrong invariance for your data.

    Parameters
    ----------
    augment : skssl.augment.Augment, tuple of Augment, or estimator
        The augmentation; a fitted estimator uses the one it trained with
        (``augment_``, at its working size); an unfitted one its ``augment``
        parameter or, when that is ``None``, its method's default. A tuple
        (one pipeline per view, as BYOL's) alternates between its pipelines.
    X : array-like of images
        A few images, as the estimators take them: ``(n, h, w)``,
        ``(n, h, w, c)`` or flat rows (pass ``X[i:i + 1]`` for one image).
    n_views : int, default=7
        Augmented views per image.
    image_shape : tuple, optional
        How to read flat rows, as the estimators' parameter.
    random_state : int, RandomState or None, default=0
        Seeds the augmentations.

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _pyplot()
    if isinstance(augment, (Augment, tuple)):
        x = _unit_images(None, X, image_shape)
    elif hasattr(augment, "networks_"):
        check_is_fitted(augment, "networks_")
        x, augment = _unit_images(augment, X, None), augment.augment_
    elif hasattr(augment, "_default_augment"):
        x = _unit_images(augment, X, image_shape if image_shape is not None else augment.image_shape)
        augment = getattr(augment, "augment", None) or augment._default_augment(tuple(x.shape[-2:]), x.shape[1])
    else:
        raise TypeError(f"augment must be an Augment, a tuple of Augment or an skssl estimator, got {augment!r}")
    augments = augment if isinstance(augment, tuple) else (augment,)
    if not augments or not all(isinstance(a, Augment) for a in augments):
        raise TypeError(f"augment must be an Augment, a tuple of Augment or an skssl estimator, got {augment!r}")
    if len(x) > 16:
        raise ValueError(f"plot_augmentations draws a few images (at most 16); got {len(x)}")
    generator = torch.Generator().manual_seed(int(check_random_state(random_state).randint(2**31 - 1)))
    views = [augments[i % len(augments)](x, generator) for i in range(n_views)]
    grid = torch.stack([x, *views], dim=1).clamp(0, 1)  # (n, 1 + n_views, c, h, w)
    n, cols = grid.shape[:2]
    fig, axes = plt.subplots(n, cols, figsize=(1.3 * cols, 1.3 * n + 0.5), squeeze=False, layout="constrained")
    for i in range(n):
        for j in range(cols):
            image = grid[i, j].permute(1, 2, 0).numpy()
            ax = axes[i, j]
            if image.shape[2] == 1:
                ax.imshow(image[:, :, 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            else:
                ax.imshow(image[:, :, :3], interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_title("original" if j == 0 else f"view {j}", fontsize="small")
    fig.suptitle(f"{n_views} augmented views per image")
    return fig
