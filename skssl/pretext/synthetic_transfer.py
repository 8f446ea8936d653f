"""Synthetic-to-real multi-task learning: dense properties of rendered scenes, domain-adversarial features."""

import math
from numbers import Integral, Real

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from torch import nn

from .. import _distributed
from .._scenes import make_synthetic_scenes
from ..backbones import pool
from ..base import BaseSSL
from ._decoder import Decoder, feature_map_shape
from .gan import frozen_call

TASKS = {"depth": 1, "normals": 3, "edges": 1}  # output channels of each dense head


class _ReverseGradient(torch.autograd.Function):
    """Identity forward; multiplies the gradient by ``-weight`` backward (Ganin & Lempitsky, 2015)."""

    @staticmethod
    def forward(ctx, x, weight):
        ctx.weight = weight
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.weight * grad, None


def dann_ramp(progress):
    """DANN's schedule of the adversarial weight: 0 at the start, towards 1 at the end of training."""
    return 2.0 / (1.0 + math.exp(-10.0 * progress)) - 1.0


def balanced_edge_loss(logits, edges):
    """HED's class-balanced BCE: edge pixels weighted by the fraction of non-edge pixels, and vice versa."""
    beta = 1.0 - edges.mean()
    weight = torch.where(edges > 0.5, beta, 1.0 - beta)
    bce = F.binary_cross_entropy_with_logits(logits, edges, reduction="none")
    return (weight * bce).sum() / weight.sum().clamp_min(1e-12)


def _as_channels(images, c):
    """``(n, sc, h, w)`` unit-range images -> ``c`` channels (luminance, repeated, where they differ)."""
    if images.shape[1] == c:
        return images
    if images.shape[1] == 3:
        images = (images * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    if images.shape[1] != 1:
        raise ValueError(f"synthetic images have {images.shape[1]} channels; the real images have {c} "
                         "(synthetic images need 1, 3 or the real images' channels).")
    return images.expand(-1, c, -1, -1)


class SyntheticTransferSSL(BaseSSL):
    """Dense properties of synthetic scenes, with features aligned to the real images.

    Follows Ren & Lee, "Cross-Domain Self-supervised Multi-task Feature
    Learning using Synthetic Imagery" (CVPR 2018): one weight-shared backbone
    sees synthetic images, whose depth, surface normals and instance contours
    are known exactly, and the real images of ``fit``. A small upsampling
    decoder per task (at most 32 channels wide) predicts the synthetic
    images' properties from the backbone's last feature map (depth: L1 on
    depth standardised over the synthetic set; normals: one minus the cosine
    to the true unit normal; edges: HED's class-balanced binary
    cross-entropy). A domain discriminator (an MLP on the pooled features of
    stage ``stage``, the embedding ``transform`` returns) learns to tell
    synthetic from real images, and the backbone learns to fool it with a
    weight that ramps from 0 to ``adversarial_weight`` as in DANN
    (``2 / (1 + exp(-10 p)) - 1`` at progress ``p``). The paper alternates
    GAN-style updates of the discriminator and the network; here both are
    updated from one backward pass (the shared loop's one optimiser step per
    batch), by one of two objectives:

    - ``"confusion"`` (default; Tzeng et al., 2015): the discriminator
      learns on detached features, and the backbone is trained, through a
      copy of the discriminator with detached parameters, towards features
      it can only call 50:50. Features that merely swap the domains score as
      badly as separated ones.
    - ``"reversal"`` (DANN, Ganin & Lempitsky, 2015): the discriminator's
      gradient reaches the backbone through a gradient reversal layer. On
      Fashion-MNIST it flipped the discriminator (held-out accuracy 0.02)
      instead of aligning the domains; see docs/synthetic.md.

    Each step passes a batch of real images and as many synthetic ones
    together through the backbone, so BatchNorm sees both domains as
    ``transform`` later does. With ``adversarial_weight=0`` the
    discriminator still trains (its accuracy is then a measure of the domain
    gap) but the backbone gets no gradient from it.

    Unless ``synthetic`` holds your own arrays, the synthetic set is
    rendered at fit time by :func:`skssl.datasets.make_synthetic_scenes` at
    the size the network sees and with the real images' channels
    (grayscale renders for grayscale images), seeded from ``random_state``.

    Parameters
    ----------
    synthetic : int, dict or None, default=None
        The synthetic set. ``None``: as many rendered scenes as real images,
        at least 256 and at most 10,000; an int: that many. A dict (such as
        the Bunch of :func:`skssl.datasets.make_synthetic_scenes`) holds
        ``images`` (n, h, w) or (n, h, w, c), uint8 or floats in [0, 1], and
        the maps of every task in ``tasks``: ``depth`` (n, h, w), ``normals``
        (n, h, w, 3), ``edges`` (n, h, w); they are resized to the size the
        network sees, and colour images are read by their luminance for
        grayscale real images.
    tasks : tuple of {"depth", "normals", "edges"}, default=("depth", "normals", "edges")
        The properties predicted, one decoder each; their losses are summed.
    adversarial_weight : float, default=1.0
        Final weight of the domain objective on the backbone; 0 trains
        without domain alignment.
    domain_loss : {"confusion", "reversal"}, default="confusion"
        How the backbone learns to fool the discriminator: the domain
        confusion loss, or gradient reversal (see above).
    discriminator_width : int, default=256
        Width of the discriminator's two hidden layers.
    {common_parameters}

    Attributes
    ----------
    depth_scale_ : tuple (mean, std)
        Mean and standard deviation of the synthetic set's depth, in which
        the depth head predicts standardised depth.
    {common_attributes}

    See Also
    --------
    skssl.datasets.make_synthetic_scenes : The renderer of the synthetic set.

    Examples
    --------
    >>> from skssl.pretext.synthetic_transfer import SyntheticTransferSSL
    >>> from skssl.datasets import load_digits_images
    >>> X, y = load_digits_images(return_X_y=True)
    >>> model = SyntheticTransferSSL(max_epochs=1, random_state=0).fit(X[:200])
    >>> model.transform(X[:5]).shape
    (5, 128)
    >>> model.predict_maps(X[:5])["depth"].shape
    (5, 8, 8)
    """

    _params = {"synthetic": None, "tasks": ("depth", "normals", "edges"), "adversarial_weight": 1.0,
               "domain_loss": "confusion", "discriminator_width": 256, "max_epochs": 20, "batch_size": 64}
    _parameter_constraints = {
        **BaseSSL._parameter_constraints,
        "synthetic": [None, Interval(Integral, 2, None, closed="left"), dict],
        "tasks": [tuple, list],
        "adversarial_weight": [Interval(Real, 0, None, closed="left")],
        "domain_loss": [StrOptions({"confusion", "reversal"})],
        "discriminator_width": [Interval(Integral, 1, None, closed="left")],
    }

    def _tasks(self):
        tasks = tuple(self.tasks)
        if not tasks or len(set(tasks)) != len(tasks) or not set(tasks) <= set(TASKS):
            raise ValueError(f"tasks must be distinct names among {tuple(TASKS)}, at least one; got {self.tasks!r}.")
        return tasks

    def _build_networks(self):
        super()._build_networks()
        c, size = self.image_shape_[2], self._working_size()
        map_channels, map_size = feature_map_shape(self.backbone_, c, size)
        for task in self._tasks():
            # at most 32 channels: three full-width decoders cost twice the small CNN's own compute
            self.networks_[task] = Decoder(map_channels, TASKS[task], map_size, size, max_width=32)
        width = self.discriminator_width
        self.networks_["domain_discriminator"] = nn.Sequential(
            nn.Linear(self.embedding_dim_, width), nn.ReLU(inplace=True),
            nn.Linear(width, width), nn.ReLU(inplace=True), nn.Linear(width, 1))

    def fit(self, X, y=None):
        """Train the backbone on the synthetic set's properties and the domain game against ``X``.

        The synthetic set is rendered (or read from ``synthetic``) at the
        start and dropped at the end, so the fitted estimator holds only its
        networks. Checkpoints, ``max_time``, Ctrl-C and ``warm_start`` work
        as for every other method (see :meth:`skssl.BaseSSL.fit`).

        Parameters
        ----------
        X : array-like of shape (n, h*w*c), (n, h, w) or (n, h, w, c), or a torch Dataset
            The real training images, uint8 or float.
        y : ignored
            Present for Pipeline compatibility; no labels are used.

        Returns
        -------
        SyntheticTransferSSL
            The fitted estimator.

        Examples
        --------
        >>> from skssl import SyntheticTransferSSL, load_digits_images
        >>> X, y = load_digits_images(return_X_y=True)
        >>> SyntheticTransferSSL(max_epochs=1, random_state=0).fit(X[:100]).embedding_dim_
        128
        """
        if not (self.warm_start and hasattr(self, "networks_")):
            self.__dict__.pop("depth_scale_", None)  # a fresh fit standardises depth anew
        try:
            return super().fit(X, y)
        finally:
            self.__dict__.pop("_synthetic", None)  # fit-time data, never pickled

    # ------------------------------------------------------------ the synthetic set
    def _render(self, n, random_state):
        c = self.image_shape_[2]
        return make_synthetic_scenes(n, self._working_size(), random_state=random_state, channels=3 if c == 3 else 1)

    def _synthetic_set(self, device):
        """The synthetic images and maps of this fit on ``device`` (rendered or read once, then kept)."""
        if getattr(self, "_synthetic", None) is not None:
            return self._synthetic
        self._tasks()
        if isinstance(self.synthetic, dict):
            data = self.synthetic
        else:
            n = self.synthetic or min(max(self._n_train, 256), 10_000)
            # rank 0's seed on every process, also for random_state=None: the ranks train on one set
            seed = _distributed.broadcast_object(int(check_random_state(self.random_state).randint(2**31 - 1)))
            data = self._render(n, seed ^ 0x5EED)
        maps = self._read_synthetic(data)
        if not hasattr(self, "depth_scale_"):
            depth = maps.get("depth")
            self.depth_scale_ = ((float(depth.mean()), float(depth.std().clamp_min(1e-6))) if depth is not None
                                 else (0.0, 1.0))
        # uint8 images and half-precision maps keep 10,000 scenes of 32 pixels near 120 MB
        self._synthetic = {k: v.to(device, torch.uint8 if k == "images" else torch.bool if k == "edges" else torch.float16)
                           for k, v in maps.items()}
        return self._synthetic

    def _read_synthetic(self, data):
        """Validate a dict of synthetic arrays -> float CPU tensors ``(n, k, h, w)`` at working size."""
        missing = [k for k in ("images", *self._tasks()) if k not in data]
        if missing:
            raise ValueError(f"synthetic is missing {missing}: it needs 'images' and a map for every task in {self._tasks()}.")
        images = np.asarray(data["images"])
        n = len(images)
        if images.ndim not in (3, 4) or n < 2 or images.dtype.kind not in "uifb":
            raise ValueError(f"synthetic['images'] must be numeric images (n, h, w) or (n, h, w, c) with n >= 2; "
                             f"got shape {images.shape} and dtype {images.dtype}.")
        h, w = images.shape[1:3]
        expected = {"depth": (n, h, w), "normals": (n, h, w, 3), "edges": (n, h, w)}
        out = {}
        for task in self._tasks():
            array = np.asarray(data[task], dtype=np.float32)
            if array.shape != expected[task]:
                raise ValueError(f"synthetic[{task!r}] must have shape {expected[task]} to match images {images.shape}; "
                                 f"got {array.shape}.")
            if not np.isfinite(array).all():
                raise ValueError(f"synthetic[{task!r}] contains NaN or infinity.")
            out[task] = torch.from_numpy(array).reshape(n, h, w, -1).permute(0, 3, 1, 2)
        pixels = images.astype(np.float32) / (255.0 if images.dtype == np.uint8 else 1.0)
        if not np.isfinite(pixels).all() or pixels.min() < 0 or pixels.max() > 1:
            raise ValueError("synthetic['images'] must be uint8 or floats in [0, 1] (finite).")
        images = torch.from_numpy(pixels).reshape(n, h, w, -1).permute(0, 3, 1, 2)
        out["images"] = (_as_channels(images, self.image_shape_[2]) * 255).round()
        size = self._working_size()
        if (h, w) != size:
            for k, v in out.items():
                out[k] = F.interpolate(v, size=size, mode="bilinear", align_corners=False, antialias=h > size[0])
            if "normals" in out:
                out["normals"] = F.normalize(out["normals"], dim=1)
            if "edges" in out:
                out["edges"] = out["edges"] > 0.25  # a thin contour keeps its pixels when shrunk
        return out

    def _synthetic_batch(self, n, device):
        data = self._synthetic_set(device)
        index = torch.randint(len(data["images"]), (n,), generator=self._generator, device=device)
        return {k: v[index].float() / (255.0 if k == "images" else 1.0) for k, v in data.items()}

    # ------------------------------------------------------------ the method
    def _features(self, x):
        """Pooled features of stage ``stage`` and the last unpooled map of standardised images ``x``."""
        stages = self.backbone_.stages
        want = self.stage % len(stages)
        for i, module in enumerate(stages):
            x = module(x)
            if i == want:
                embedding = pool(x)
        return embedding, x

    def _dense_losses(self, maps, target):
        losses = {}
        with torch.autocast(maps.device.type, enabled=False):
            for task in self._tasks():
                pred = self.networks_[task](maps).float()
                if task == "depth":
                    mean, std = self.depth_scale_
                    losses[task] = F.l1_loss(pred, (target["depth"] - mean) / std)
                elif task == "normals":
                    losses[task] = (1 - F.cosine_similarity(pred, target["normals"], dim=1, eps=1e-6)).mean()
                else:
                    losses[task] = balanced_edge_loss(pred, target["edges"])
        return losses

    def _adversarial_factor(self):
        progress = getattr(self, "_step", 0) / max(getattr(self, "_total_steps", 1), 1)
        return self.adversarial_weight * dann_ramp(min(progress, 1.0))

    def _loss(self, x):
        n = x.shape[0]
        synthetic = self._synthetic_batch(n, x.device)
        embedding, maps = self._features(self._standardize(torch.cat([x, synthetic["images"]])))
        loss = sum(self._dense_losses(maps[n:], synthetic).values())
        discriminator, factor = self.networks_["domain_discriminator"], self._adversarial_factor()
        domain = torch.cat([torch.zeros(n, device=x.device), torch.ones(n, device=x.device)])
        bce = lambda logits, target: F.binary_cross_entropy_with_logits(logits.float().squeeze(1), target)  # noqa: E731
        with torch.autocast(x.device.type, enabled=False):
            embedding = embedding.float()
            if self.domain_loss == "reversal":
                return loss + bce(discriminator(_ReverseGradient.apply(embedding, factor)), domain)
            # The discriminator learns on detached features; the backbone, through a copy with
            # detached parameters, is pushed towards features it can only call 50:50.
            confusion = bce(frozen_call(discriminator, embedding), torch.full_like(domain, 0.5))
            return loss + bce(discriminator(embedding.detach()), domain) + factor * confusion

    # ------------------------------------------------------------ inspection
    def predict_maps(self, X):
        """Predict depth, normals and edges of images with the trained dense heads.

        The heads were trained on synthetic scenes only: on real images
        their maps show what the network transfers, not ground truth.

        Parameters
        ----------
        X : array-like of shape (n, h*w*c), (n, h, w) or (n, h, w, c), or a torch Dataset
            Images like the training images (synthetic renders of their size
            and channels, say).

        Returns
        -------
        dict of ndarray
            One entry per task, at the images' size: ``depth`` (n, h, w) in
            the synthetic set's units, ``normals`` (n, h, w, 3) unit vectors,
            ``edges`` (n, h, w) edge probabilities; float32.

        Examples
        --------
        >>> from skssl import SyntheticTransferSSL
        >>> from skssl.datasets import make_synthetic_scenes
        >>> scenes = make_synthetic_scenes(64, 16, channels=1, random_state=0)
        >>> model = SyntheticTransferSSL(synthetic=dict(scenes), max_epochs=1, random_state=0).fit(scenes.images)
        >>> model.predict_maps(scenes.images[:2])["normals"].shape
        (2, 16, 16, 3)
        """
        check_is_fitted(self, "networks_")
        X = self._check_input(X, reset=False)
        tasks = self._tasks()
        h, w = self.image_shape_[:2]
        mean, std = self.depth_scale_

        def dense(x):
            _, maps = self._features(self._standardize(x))
            out = []
            for task in tasks:
                pred = self.networks_[task](maps).float()
                pred = (pred * std + mean if task == "depth" else F.normalize(pred, dim=1) if task == "normals"
                        else torch.sigmoid(pred))
                out.append(F.interpolate(pred, size=(h, w), mode="bilinear", align_corners=False)
                           if tuple(pred.shape[-2:]) != (h, w) else pred)
            return torch.cat(out, 1)

        stacked = self._map_batches(X, dense).transpose(0, 2, 3, 1)
        bounds = np.cumsum([0] + [TASKS[t] for t in tasks])
        result = {t: stacked[..., a:b] for t, a, b in zip(tasks, bounds[:-1], bounds[1:])}
        if "normals" in result:
            result["normals"] /= np.linalg.norm(result["normals"], axis=-1, keepdims=True).clip(1e-12)
        return {t: (v if t == "normals" else v[..., 0]).astype(np.float32) for t, v in result.items()}

    def domain_score(self, X, synthetic=None, random_state=0):
        """Balanced accuracy of the domain discriminator: real ``X`` against synthetic images.

        0.5 is chance: features the discriminator cannot tell apart. It
        scores the discriminator trained alongside the backbone, which the
        backbone learned to fool; whether the domains are aligned is a
        different question, answered by a classifier trained afresh on the
        embeddings (``transform``) of both. On Fashion-MNIST this
        discriminator ended near chance (0.48 to 0.59 over three seeds)
        while a fresh logistic regression still separated the embeddings at
        0.9995 (docs/synthetic.md).

        Parameters
        ----------
        X : array-like of shape (n, h*w*c), (n, h, w) or (n, h, w, c)
            Real images, held out from training for an unbiased score.
        synthetic : array-like of images or None, default=None
            Synthetic images of the real images' shape; ``None`` renders
            ``len(X)`` fresh scenes from ``random_state``.
        random_state : int, RandomState or None, default=0
            Seeds the fresh scenes.

        Returns
        -------
        float
            Mean of the accuracies on the real and on the synthetic images.

        Examples
        --------
        >>> from skssl import SyntheticTransferSSL, load_digits_images
        >>> X, y = load_digits_images(return_X_y=True)
        >>> model = SyntheticTransferSSL(max_epochs=1, random_state=0).fit(X[:100])
        >>> 0 <= model.domain_score(X[100:200]) <= 1
        True
        """
        check_is_fitted(self, "networks_")
        X = self._check_input(X, reset=False)

        def says_synthetic(x):
            embedding, _ = self._features(self._standardize(x))
            return self.networks_["domain_discriminator"](embedding)[:, 0] > 0

        real = self._map_batches(X, says_synthetic)
        if synthetic is None:
            images = self._render(len(real), random_state).images
            unit = torch.from_numpy(images).reshape(*images.shape[:3], -1).permute(0, 3, 1, 2).float() / 255
            fake = self._map_images(_as_channels(unit, self.image_shape_[2]).contiguous(), says_synthetic)
        else:
            fake = self._map_batches(self._check_input(synthetic, reset=False), says_synthetic)
        return float((np.mean(real < 0.5) + np.mean(fake > 0.5)) / 2)
