"""Figures for choosing a pretext: few-label curves, embedding maps, training curves, augmented views, pretext inputs.

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

__all__ = ["plot_comparison", "plot_embedding", "plot_history", "plot_augmentations", "plot_pretext"]


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

    Examples
    --------
    >>> from skssl import load_digits_images
    >>> from skssl.plotting import plot_embedding
    >>> X, y = load_digits_images(return_X_y=True)
    >>> fig = plot_embedding(None, X[:200], y[:200], method="pca")  # the raw pixels
    >>> fig.axes[0].get_title()
    'raw pixels: PCA'
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

    Examples
    --------
    >>> from skssl import RotationSSL, load_digits_images
    >>> from skssl.plotting import plot_history
    >>> X, _ = load_digits_images(return_X_y=True)
    >>> fig = plot_history(RotationSSL(max_epochs=2, random_state=0).fit(X[:100]))
    >>> fig.axes[0].get_ylabel()
    'loss'
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
    from ._images import SampleLayout, fit_scale, resize_to, to_image_tensor, unit_range

    if hasattr(source, "networks_"):
        stored = source._check_input(X, reset=False)
        return source._prepare(stored.batch(torch.arange(len(stored))), torch.device("cpu"))
    X = np.asarray(X)
    layout = SampleLayout("plot_augmentations", image_shape)
    rows = X.reshape(X.shape[0], math.prod(X.shape[1:])) if X.ndim > 2 else X
    shape = layout.in_array(X.shape) or layout.of_rows(rows.shape[1])
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

    Examples
    --------
    >>> from skssl import load_digits_images
    >>> from skssl.augment import Augment
    >>> from skssl.plotting import plot_augmentations
    >>> X, _ = load_digits_images(return_X_y=True)
    >>> fig = plot_augmentations(Augment(flip_p=0.0, degrees=10), X[:3], n_views=4)
    >>> len(fig.axes)
    15
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


class _FirstStepSeen(Exception):
    """Raised after the first training step has been recorded, to end the fit there."""


def _record_first_step(estimator, X, n_show):
    """Run ``estimator.fit(X)`` up to its first loss and return what that step fed its networks.

    Returns the batch (unit-range images or clips) and a list of the image
    batches that reached a backbone's ``feature_maps`` (standardised, as the
    network sees them) or, for methods that bypass it (MAE's ViT parts), the
    unit-range images passed to ``_standardize``.
    """
    from .backbones import Backbone

    seen = {"batch": None, "backbone": [], "standardize": []}

    def keep(where, x):
        if isinstance(x, torch.Tensor) and x.dim() == 4:
            where.append(x[:n_show].detach().float().cpu().clone())

    original_standardize = estimator._standardize

    def standardize(x):
        keep(seen["standardize"], x)
        return original_standardize(x)

    def loss(x):
        seen["batch"] = x[:n_show].detach().float().cpu().clone()
        for module in estimator.networks_.modules():
            if isinstance(module, Backbone):
                feature_maps = module.feature_maps

                def recorded(x, stage=-1, _feature_maps=feature_maps):
                    keep(seen["backbone"], x)
                    return _feature_maps(x, stage)

                module.feature_maps = recorded
        estimator._standardize = standardize
        type(estimator)._loss(estimator, x)
        raise _FirstStepSeen

    estimator._loss = loss
    try:
        estimator.fit(X)
    except _FirstStepSeen:
        pass
    finally:
        for name in ("_loss", "_standardize"):
            estimator.__dict__.pop(name, None)
    if seen["batch"] is None:
        raise ValueError(f"{type(estimator).__name__} never reached a training step on these images.")
    return seen["batch"], seen["backbone"] or seen["standardize"], bool(seen["backbone"])


def _strip(images):
    """A row of (c, h, w) tensors as one (h, n * (w + 1) - 1, 3) image, each scaled to its own range.

    Standardised inputs have no fixed range; one image per row keeps the figure to a few Axes.
    """
    images = images.float()
    low = images.flatten(1).min(1).values.view(-1, 1, 1, 1)
    high = images.flatten(1).max(1).values.view(-1, 1, 1, 1)
    images = torch.where(high > low, (images - low) / (high - low).clamp_min(1e-12), torch.zeros_like(images))
    images = images[:, :3] if images.shape[1] >= 3 else images[:, :1].expand(-1, 3, -1, -1)
    gap = torch.ones(images.shape[0], 3, images.shape[2], 1)
    row = torch.cat([images, gap], dim=3).permute(2, 0, 3, 1).flatten(1, 2)[:, :-1]
    return row.numpy()


def plot_pretext(estimator, X, *, n_show=12, max_rows=5, batch_size=8, random_state=0):
    """What a method's training step shows its networks: one step of ``fit`` on ``X``, recorded.

    A clone of ``estimator`` starts fitting on ``X`` and is stopped after its
    first training step. The figure shows that step's batch (first row) and
    every image batch that reached a backbone during the step, in the order
    the method fed them: the four rotations of RotNet, the shuffled tiles of
    Jigsaw, the two views of SimCLR, the global and local crops of DINO, the
    lightness channel a colorization network sees, the masked context of an
    inpainting network, the fakes a GAN's discriminator judges. Methods whose
    network bypasses the backbone's ``feature_maps`` (MAE's ViT, which hides
    patches inside the transformer) show the images they standardise
    instead. Nothing is special-cased per method, so a new method gets its
    figure from its ``_loss`` alone.

    Parameters
    ----------
    estimator : skssl estimator
        The method, fitted or not; it is cloned (with ``max_epochs=1``,
        ``batch_size=batch_size`` and ``random_state``), never changed.
    X : array-like of images or clips
        Training images as ``fit`` takes them; methods that need a minimum
        number of images (DeepCluster's clusters) need that many.
    n_show : int, default=12
        Images shown per row (the first of each batch the step made).
    max_rows : int, default=5
        Rows of network inputs shown at most, after the batch itself.
    batch_size : int, default=8
        Batch size of the recorded step.
    random_state : int, default=0
        Seeds the clone, hence the batch and its augmentations.

    Returns
    -------
    matplotlib.figure.Figure
        One row (one Axes) per batch, its first ``n_show`` images side by side.

    Examples
    --------
    >>> from skssl import RotationSSL, load_digits_images
    >>> from skssl.plotting import plot_pretext
    >>> X, _ = load_digits_images(return_X_y=True)
    >>> fig = plot_pretext(RotationSSL(), X[:64])
    >>> len(fig.axes)  # the batch, then the four rotations in one backbone call
    2
    """
    from sklearn.base import clone

    plt = _pyplot()
    if not hasattr(estimator, "_loss"):
        raise TypeError(f"plot_pretext needs an skssl estimator, got {type(estimator).__name__}")
    if not isinstance(n_show, int) or n_show < 1 or not isinstance(max_rows, int) or max_rows < 1:
        raise ValueError(f"n_show and max_rows must be positive ints; got {n_show!r} and {max_rows!r}")
    model = clone(estimator).set_params(max_epochs=1, batch_size=batch_size, random_state=random_state,
                                        verbose=False, checkpoint_dir=None, max_time=None)
    batch, inputs, at_backbone = _record_first_step(model, X, n_show)
    if batch.dim() == 5:  # clips (n, t, c, h, w): the first clip's frames
        batch = batch[0]
    rows = [("batch", batch)] + [(f"input {i + 1}", x) for i, x in enumerate(inputs[:max_rows])]
    widths = [len(x) * (x.shape[-1] + 1) for _, x in rows]
    heights = [x.shape[-2] for _, x in rows]
    fig, axes = plt.subplots(len(rows), 1, figsize=(0.75 * max(len(x) for _, x in rows) + 1.2, 0.9 * len(rows) + 0.7),
                             squeeze=False, layout="constrained", gridspec_kw={"height_ratios": heights})
    for (label, images), ax, width in zip(rows, axes[:, 0], widths):
        ax.imshow(_strip(images), interpolation="nearest", extent=(0, width, images.shape[-2], 0))
        ax.set_xlim(0, max(widths))
        ax.set_xticks([]), ax.set_yticks([])
        for side in ax.spines.values():
            side.set_visible(False)
        c, h, w = images.shape[1:]
        ax.set_ylabel(f"{label}\n{len(images)} of {c}x{h}x{w}", fontsize="small", rotation=0, ha="right", va="center")
    cols = max(len(x) for _, x in rows)
    where = "the backbone" if at_backbone else "standardisation"
    fig.suptitle(f"{type(estimator).__name__}: one training step, first {cols} images of each batch sent to {where}",
                 fontsize="medium")
    return fig
