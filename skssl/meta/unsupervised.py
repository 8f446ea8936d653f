"""Unsupervised meta-learning: UMTRA episodes, or CACTUs-style k-means pseudo-classes."""

import warnings
from numbers import Integral

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval, StrOptions

from ..base import BaseSSL
from ..contrastive._multiview import MultiViewSSL
from ..pretext.deepcluster import split_empty_clusters, whiten_normalize
from ._episodes import ClusterEpisodeSampler, PseudoLabels, prototypical_loss


class UnsupervisedMetaSSL(MultiViewSSL):
    """Meta-learning from unlabelled images: prototypical networks on self-made episodes.

    ``pseudo_labels="augmentation"`` is UMTRA (Khodadadeh, Bölöni & Shah,
    NeurIPS 2019): an episode takes ``n_way`` images of the batch and
    treats each as its own class; ``k_shot`` random augmentations of each
    image are its support and ``n_query`` further augmentations its
    queries (random classes of a large unlabelled set rarely coincide).
    ``pseudo_labels="clusters"`` is CACTUs-style (Hsu, Levine & Finn, ICLR
    2019): k-means on the current embedding (PCA-whitened and
    L2-normalised, as :class:`skssl.DeepClusterSSL` clusters) gives every
    training image a pseudo-class, and an episode draws ``n_way`` distinct
    pseudo-classes with ``k_shot + n_query`` distinct images each (one
    augmentation per image), from the whole training set; the batch of the
    training loop then only sets the number of steps. Pseudo-classes with
    fewer members take no part; while none are ready (``cluster_warmup``)
    or fewer than two qualify, a step uses augmentation episodes.

    Either way the loss is the prototypical networks' (Snell, Swersky &
    Zemel 2017) on the backbone features themselves: each class's prototype
    is the mean of its support, a query's logits are its negative squared
    Euclidean distances to the prototypes, and the loss is their cross
    entropy. ``transform`` returns those backbone features; score them on new
    classes with :func:`skssl.evaluation.few_shot_score`. The default
    augmentation is SimCLR's recipe (see :class:`skssl.SimCLR`), the kind of
    augmentation UMTRA found needed on natural images.

    Parameters
    ----------
    {view_parameters}
    pseudo_labels : {"augmentation", "clusters"}, default="augmentation"
        Where an episode's classes come from: single images (UMTRA) or
        k-means pseudo-classes (CACTUs).
    n_way : int, default=5
        Classes per training episode (fewer when the batch, or the set of
        eligible pseudo-classes, is smaller).
    k_shot : int, default=1
        Support samples per class, averaged into its prototype.
    n_query : int, default=1
        Query samples per class. UMTRA's default: one augmentation.
    episodes_per_batch : int or "auto", default="auto"
        Episodes per optimisation step. ``"auto"``: with augmentation
        episodes, the batch split into ``batch_size // n_way`` episodes
        (every image used once); with clusters, ``batch_size // (n_way *
        (k_shot + n_query))`` episodes, as many images as a batch (at least
        one). An int draws that many episodes, each from ``n_way`` random
        images of the batch (augmentation) or from the pseudo-classes.
    n_clusters : int, default=100
        Number of k-means clusters (capped at the number of training images); only
        with ``pseudo_labels="clusters"``.
    pca_dim : int, default=64
        Dimensions kept by the PCA whitening before k-means.
    cluster_warmup : int, default=1
        Epochs of augmentation episodes before the first clustering, so that
        the first clusters come from a trained embedding, not a random one.
    cluster_update_every : int, default=5
        Epochs between re-clusterings of the training set.
    {common_parameters}

    Attributes
    ----------
    labels_ : ndarray of shape (n_samples,)
        With ``pseudo_labels="clusters"``: the last pseudo-class of every
        training image (-1 before the first clustering).
    {common_attributes}

    Examples
    --------
    >>> from skssl import UnsupervisedMetaSSL
    >>> from skssl.datasets import load_digits_images
    >>> from skssl.evaluation import few_shot_score
    >>> X, y = load_digits_images(return_X_y=True)
    >>> est = UnsupervisedMetaSSL(max_epochs=1, random_state=0).fit(X[:200])
    >>> result = few_shot_score(est.transform(X[200:]), y[200:], n_episodes=50, random_state=0)
    >>> 0.0 <= result.mean <= 1.0
    True
    """

    _recipe = "simclr"
    _pretext_score_is_accuracy = True
    _params = {"pseudo_labels": "augmentation", "n_way": 5, "k_shot": 1, "n_query": 1, "episodes_per_batch": "auto",
               "n_clusters": 100, "pca_dim": 64, "cluster_warmup": 1, "cluster_update_every": 5, "max_epochs": 30}
    _parameter_constraints = {
        **MultiViewSSL._parameter_constraints,
        "pseudo_labels": [StrOptions({"augmentation", "clusters"})],
        "n_way": [Interval(Integral, 2, None, closed="left")],
        "k_shot": [Interval(Integral, 1, None, closed="left")],
        "n_query": [Interval(Integral, 1, None, closed="left")],
        "episodes_per_batch": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "n_clusters": [Interval(Integral, 1, None, closed="left")],
        "pca_dim": [Interval(Integral, 1, None, closed="left")],
        "cluster_warmup": [Interval(Integral, 0, None, closed="left")],
        "cluster_update_every": [Interval(Integral, 1, None, closed="left")],
    }

    @property
    def labels_(self):
        if "pseudo_labels" not in getattr(self, "networks_", {}):
            raise AttributeError("labels_ exists only after a fit with pseudo_labels='clusters'.")
        return self.networks_["pseudo_labels"].labels.cpu().numpy()

    def fit(self, X, y=None):
        try:
            return super().fit(X, y)
        finally:  # the training source and the episode sampler live only during the fit
            for name in ("_episode_source", "_sampler"):
                self.__dict__.pop(name, None)

    fit.__doc__ = BaseSSL.fit.__doc__.replace("        self\n", "        self\n            The fitted estimator.\n", 1)

    def _build_heads(self, feature_dim):
        if self.pseudo_labels == "clusters":
            return {"pseudo_labels": PseudoLabels(getattr(self, "_n_train", 0))}
        return {}

    # ----------------------------------------------------------- pseudo-classes
    def _before_epoch(self, images, epoch):
        super()._before_epoch(images, epoch)
        self._sampler = None
        if self.pseudo_labels != "clusters":
            return
        device = self._generator.device
        if "pseudo_labels" not in self.networks_ or len(self.networks_["pseudo_labels"]) != len(images):
            self.networks_["pseudo_labels"] = PseudoLabels(len(images)).to(device)  # new data: no classes yet
        if epoch >= self.cluster_warmup and (epoch - self.cluster_warmup) % self.cluster_update_every == 0:
            self.networks_["pseudo_labels"].labels.copy_(torch.from_numpy(self._cluster(images)))
        labels = self.networks_["pseudo_labels"].labels
        seed = int(torch.randint(2**31 - 1, (1,), generator=self._generator, device=device))
        self._sampler = ClusterEpisodeSampler(labels, self.k_shot + self.n_query, seed)
        self._episode_source = images
        self._epoch_metrics["pseudo_classes"] = len(self._sampler.classes)

    def _cluster(self, images):
        """k-means pseudo-classes of the training images on the current embedding (all ranks agree)."""
        features = self._map_images(images, self._encode).astype(np.float64)
        n_clusters = min(self.n_clusters, len(images))
        z = whiten_normalize(features, max(1, min(self.pca_dim, features.shape[1], len(images) - 1)))
        seed = int(torch.randint(2**31 - 1, (1,), generator=self._shared_generator, device=self._shared_generator.device))
        with warnings.catch_warnings():  # fewer distinct points than clusters: split below
            warnings.simplefilter("ignore", ConvergenceWarning)
            labels = KMeans(n_clusters, n_init=1, random_state=seed).fit_predict(z)
        return split_empty_clusters(z, labels.astype(np.int64), n_clusters, np.random.default_rng(seed))

    # ----------------------------------------------------------------- episodes
    def _episode_views(self, images, index, n_views):
        """``n_views`` augmentations of ``images`` (training-set ``index``: their crop boxes) in one tensor."""
        saved = getattr(self, "_batch_index", None)
        self._batch_index = index
        try:
            return torch.cat(self._views(images, n_views))
        finally:
            self._batch_index = saved

    def _loss(self, x):
        k, per_class = self.k_shot, self.k_shot + self.n_query
        auto = self.episodes_per_batch == "auto"
        if self.pseudo_labels == "clusters" and not hasattr(self, "_batch_index"):
            # Outside a fit (skssl.diagnostics.pretext_loss): pseudo-classes exist for training images only.
            raise AttributeError("pseudo-classes belong to the training images", name="_batch_index")
        sampler = getattr(self, "_sampler", None)
        picked = None
        if sampler is not None and len(sampler.classes) >= 2:
            w = min(self.n_way, len(sampler.classes))
            picked = sampler.sample(max(1, len(x) // (w * per_class)) if auto else self.episodes_per_batch, w)
        if picked is not None:  # CACTUs: distinct images of distinct pseudo-classes, one view each
            e, w = picked.shape[:2]
            index = picked.flatten().to(x.device)
            images = self._prepare(self._episode_source.batch(index.to(self._episode_source_device())), x.device)
            features = self._encode(self._episode_views(images, index, 1)).view(e, w, per_class, -1)
        else:  # UMTRA: every image its own class, its augmentations the samples
            features, (e, w) = self._umtra_features(x, getattr(self, "_batch_index", None), self._generator)
        with torch.autocast(x.device.type, enabled=False):
            loss, _ = prototypical_loss(features[:, :, :k], features[:, :, k:])
        return loss

    def _episode_source_device(self):
        images = getattr(self._episode_source, "images", None)
        return images.device if images is not None else torch.device("cpu")

    def _umtra_features(self, x, index, generator):
        """Features ``(episodes, n_way, k_shot + n_query, d)`` of augmentation episodes from the batch ``x``."""
        b, w = len(x), min(self.n_way, len(x))
        if self.episodes_per_batch == "auto":
            pick = torch.arange(b // w * w, device=x.device).view(-1, w)
        else:
            pick = torch.rand(self.episodes_per_batch, b, generator=generator, device=x.device).argsort(1)[:, :w]
        flat = pick.flatten()
        views = self._episode_views(x[flat], None if index is None else index[flat], self.k_shot + self.n_query)
        features = self._encode(views).view(self.k_shot + self.n_query, *pick.shape, -1)
        return features.permute(1, 2, 0, 3), pick.shape

    def pretext_score(self, X):
        """UMTRA episode accuracy on ``X``: each image a class, its augmentations support and queries.

        Consecutive groups of ``n_way`` images of ``X`` form the episodes
        (a last group of fewer is left out), with ``k_shot`` support and
        ``n_query`` query augmentations of each image; augmentations are
        drawn from a generator seeded with 0, so the score is repeatable.

        Parameters
        ----------
        X : array-like of shape (n, h*w*c), (n, h, w) or (n, h, w, c)
            At least ``n_way`` images, read as in ``fit``.

        Returns
        -------
        float
            Accuracy of the nearest prototype over all queries (chance:
            ``1 / n_way``).

        Examples
        --------
        >>> from skssl import UnsupervisedMetaSSL
        >>> from skssl.datasets import load_digits_images
        >>> X = load_digits_images(return_X_y=True)[0]
        >>> est = UnsupervisedMetaSSL(max_epochs=1, random_state=0).fit(X[:100])
        >>> 0.0 <= est.pretext_score(X[100:200]) <= 1.0
        True
        """
        X = self._check_input(X, reset=False)
        if len(X) < self.n_way:
            raise ValueError(f"pretext_score needs at least n_way={self.n_way} images; got {len(X)}.")
        device = self._device()
        self._generator = torch.Generator(device=device).manual_seed(0)
        k = self.k_shot

        def correct(x):
            if len(x) < self.n_way:
                return torch.empty(0, device=x.device)
            features, _ = self._umtra_features(x[: len(x) // self.n_way * self.n_way], None, self._generator)
            _, accuracy = prototypical_loss(features[:, :, :k], features[:, :, k:])
            return accuracy.expand(len(x) // self.n_way)  # one entry per episode

        try:
            return float(np.mean(self._map_batches(X, correct, batch_size=max(self.n_way, self.batch_size // self.n_way * self.n_way))))
        finally:
            self.__dict__.pop("_generator", None)
