"""DeepCluster: alternate k-means on the features and learning to predict the clusters."""

import functools
import warnings
from numbers import Integral

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import normalized_mutual_info_score
from sklearn.utils._param_validation import Interval
from torch import nn

from ..augment import Augment
from ..base import BaseSSL
from .._distributed import weighted_mean
from ..heads import mlp


def split_empty_clusters(features, labels, n_clusters, rng):
    """Give every empty cluster half of the currently largest cluster (in place).

    As in Caron et al.: the largest cluster is split in two along a random
    direction through its centroid (halves by rank, so duplicates split too)
    and one half becomes the empty cluster. Needs ``n_clusters <= n_samples``.
    """
    counts = np.bincount(labels, minlength=n_clusters)
    for empty in np.flatnonzero(counts == 0):
        largest = int(np.argmax(counts))
        members = np.flatnonzero(labels == largest)
        projection = (features[members] - features[members].mean(0)) @ rng.standard_normal(features.shape[1])
        moved = members[np.argsort(projection, kind="stable")[: len(members) // 2]]
        labels[moved] = empty
        counts[largest] -= len(moved)
        counts[empty] = len(moved)
    return labels


_SOBEL = ((1.0, 0.0, -1.0), (2.0, 0.0, -2.0), (1.0, 0.0, -1.0))


def sobel(x):
    """The fixed Sobel filter of DeepCluster: ``(n, c, h, w)`` -> ``(n, 2, h, w)`` gradients.

    The channel mean (DeepCluster's 1x1 "grayscale" convolution with weights
    1/3) goes through the horizontal and vertical 3x3 Sobel kernels. Borders
    are replicate-padded (the official code pads with zeros, which puts
    false edges along the border of every image).
    """
    return F.conv2d(F.pad(x.mean(1, keepdim=True), (1, 1, 1, 1), mode="replicate"), _sobel_weight(x.dtype, x.device))


@functools.lru_cache(maxsize=4)
def _sobel_weight(dtype, device):
    """The ``(2, 1, 3, 3)`` kernels, made once per dtype and device (no host copy per step on CUDA)."""
    kernel = torch.tensor(_SOBEL, dtype=dtype, device=device)
    return torch.stack([kernel, kernel.T])[:, None]


def whiten_normalize(features, n_components):
    """PCA-whitening to ``n_components`` dims, then L2 normalisation of each row.

    Whitening divides by the component standard deviations with a floor, so
    degenerate (constant) features give zeros instead of infinities.
    """
    with np.errstate(invalid="ignore", divide="ignore"):  # zero total variance: ratios only
        pca = PCA(n_components=n_components, svd_solver="full").fit(features)
    z = pca.transform(features) / np.sqrt(np.maximum(pca.explained_variance_, 1e-8 * pca.explained_variance_.max() + 1e-12))
    return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)


class ClusterClassifier(nn.Module):
    """MLP predicting cluster assignments; keeps assignments and sample weights as buffers."""

    def __init__(self, feature_dim, n_clusters, n_samples):
        super().__init__()
        self.mlp = mlp(feature_dim, feature_dim, n_clusters)
        self.register_buffer("assignments", torch.zeros(n_samples, dtype=torch.long))
        self.register_buffer("weights", torch.ones(n_samples))

    def forward(self, features):
        return self.mlp(features)


class DeepClusterSSL(BaseSSL):
    """DeepCluster: learn features by predicting their own k-means clusters.

    Follows Caron, Bojanowski, Joulin & Douze, "Deep Clustering for
    Unsupervised Learning of Visual Features" (ECCV 2018). Before every epoch
    the backbone embeds all training images (eval mode, no augmentation), the
    features are PCA-whitened to at most ``pca_dim`` dimensions,
    L2-normalised and clustered by k-means (seeded from the fit); empty
    clusters take half of the largest one; the classifier's last layer is
    re-initialised. The epoch then trains backbone and classifier to predict
    each augmented image's cluster. The paper samples images uniformly over
    clusters so that big clusters do not dominate; here each image's cross
    entropy is weighted by the inverse size of its cluster, which is the same
    objective in expectation. The optimiser's running moments for the
    re-initialised layer are kept, not reset (the paper uses SGD, whose
    momentum buffer it does not discuss). ``transform`` returns the backbone
    features that are clustered.

    Parameters
    ----------
    n_clusters : int, default=100
        Number of k-means clusters (capped at the number of training images).
    pca_dim : int, default=64
        Dimensions kept by the PCA whitening (capped by samples and features).
    sobel : bool, default=True
        Feed the backbone the fixed Sobel gradients of the (standardised)
        image's channel mean instead of the image (:func:`sobel`; 2 input
        channels, so a custom ``backbone`` module must take 2), so that
        clusters cannot form on colour: the paper's setting (official
        ``--sobel``). On for grayscale images too, where it measured better
        (10-label digits probe 0.836 against 0.826, mean of two seeds; 1
        label 0.521 against 0.488; Fashion-MNIST linear probe after 3 epochs
        on 4,000 images 0.811 against 0.783): k-means on raw intensities
        groups by ink or brightness, Sobel gradients by shape.
    augment : skssl.augment.Augment or None, default=None
        ``None`` uses a random crop (scale 0.4-1) and horizontal flip.
    {common_parameters}

    Attributes
    ----------
    labels_ : ndarray of shape (n_samples,)
        Cluster of each training image in the last epoch.
    {common_attributes}
        DeepClusterSSL adds ``nmi_next``: the NMI between the assignments an
        epoch trained on and the re-clustering after it (all but the last).

    Examples
    --------
    >>> from skssl.pretext.deepcluster import DeepClusterSSL
    >>> from skssl.datasets import load_digits_images
    >>> X, y = load_digits_images(return_X_y=True)
    >>> est = DeepClusterSSL(n_clusters=20, max_epochs=1, random_state=0).fit(X[:100])
    >>> est.transform(X[:100]).shape, est.labels_.shape
    ((100, 128), (100,))
    """

    _params = {"n_clusters": 100, "pca_dim": 64, "sobel": True, "augment": None, "max_epochs": 20, "lr": 2e-3}
    _parameter_constraints = {
        **BaseSSL._parameter_constraints,
        "n_clusters": [Interval(Integral, 1, None, closed="left")],
        "pca_dim": [Interval(Integral, 1, None, closed="left")],
        "sobel": ["boolean"],
        "augment": [Augment, None],
    }

    @property
    def labels_(self):
        return self.networks_["head"].assignments.cpu().numpy()

    def _default_augment(self, image_size, channels):
        return Augment(crop_scale=(0.4, 1.0), flip_p=0.5, jitter_p=0.0, grayscale_p=0.0)

    def _build_networks(self):
        if not self.sobel:
            return super()._build_networks()
        shape = self.image_shape_
        self.image_shape_ = (*shape[:2], 2)  # the backbone sees the two Sobel gradients
        try:
            super()._build_networks()
        finally:
            self.image_shape_ = shape

    def _encode(self, x, stage=-1):
        x = self._standardize(x)
        return self.backbone_(sobel(x) if self.sobel else x, stage)

    def _build_heads(self, feature_dim):
        return {"head": ClusterClassifier(feature_dim, min(self.n_clusters, self._n_train), self._n_train)}

    def _before_epoch(self, images, epoch):
        head = self.networks_["head"]
        n_clusters = head.mlp[-1].out_features
        if len(images) < n_clusters:
            raise ValueError(f"warm_start with {len(images)} images but the model has {n_clusters} clusters.")
        features = self._map_images(images, self._encode).astype(np.float64)
        n_components = max(1, min(self.pca_dim, features.shape[1], len(images) - 1))
        z = whiten_normalize(features, n_components)
        seed = int(torch.randint(2**31 - 1, (1,), generator=self._shared_generator, device=self._shared_generator.device))
        with warnings.catch_warnings():  # fewer distinct points than clusters: handled below
            warnings.simplefilter("ignore", ConvergenceWarning)
            labels = KMeans(n_clusters, n_init=1, random_state=seed).fit_predict(z)
        labels = split_empty_clusters(z, labels.astype(np.int64), n_clusters, np.random.default_rng(seed))
        counts = np.bincount(labels, minlength=n_clusters)
        # weights 1 / (k * |cluster|): every cluster carries the same total weight
        weights = 1.0 / (n_clusters * counts[labels])
        device = head.assignments.device
        if self.history_ and len(head.assignments) == len(labels):
            # How much the epoch just finished moved the clusters (the paper's
            # NMI between consecutive assignments). The base writes an epoch's
            # record after it, so this lands on the previous epoch's record.
            self.history_[-1]["nmi_next"] = normalized_mutual_info_score(head.assignments.cpu().numpy(), labels)
        head.assignments = torch.as_tensor(labels, device=device)
        head.weights = torch.as_tensor(weights, dtype=torch.float32, device=device)
        head.mlp[-1].reset_parameters()

    def _loss(self, x):
        head = self.networks_["head"]
        logits = head(self._encode(self._augment(x)))
        index = self._batch_index
        weights = head.weights[index]
        losses = F.cross_entropy(logits.float(), head.assignments[index], reduction="none")
        return weighted_mean(losses, weights)  # normalised by the global batch's weight sum
