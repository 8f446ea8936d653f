"""BYOL: an online network predicts a slowly moving target network's projection."""

from dataclasses import replace
from numbers import Integral, Real

import torch
import torch.nn.functional as F
from sklearn.utils._param_validation import Interval

from ._momentum import cosine_momentum, ema_update_, frozen_copy
from ._multiview import MultiViewSSL
from ..augment import Augment
from ..heads import mlp
from ..losses import fp32_loss


@fp32_loss
def byol_loss(p, z):
    """BYOL's regression loss ``2 - 2 cos(p, z)``, averaged over the batch.

    Equal to the mean squared distance of the L2-normalised rows, so it lies
    in [0, 4]: 0 when ``p`` and ``z`` point the same way, 4 when opposite.
    ``z`` (the target projection) is treated as a constant: no gradient flows
    into it.

    Parameters
    ----------
    p : Tensor of shape (n, d)
        Online predictions.
    z : Tensor of shape (n, d)
        Target projections of the other view.

    Returns
    -------
    Tensor, scalar
    """
    if p.shape != z.shape or p.ndim != 2:
        raise ValueError(f"byol_loss expects two (n, d) tensors of equal shape, got {tuple(p.shape)} and {tuple(z.shape)}.")
    cos = F.cosine_similarity(p.float(), z.detach().float(), dim=1)
    return (2.0 - 2.0 * cos).mean()


class BYOL(MultiViewSSL):
    """Bootstrap your own latent: self-supervised learning without negatives.

    Follows Grill et al. (NeurIPS 2020): the online network (backbone,
    projector, predictor) predicts the target network's projection of another
    view of the same image. The target (backbone and projector) gets no
    gradient; after every optimiser step it moves towards the online network
    as an exponential moving average whose momentum rises from
    ``base_momentum`` to 1 along a cosine. The loss is symmetrised over the two
    views (their sum, as in the paper). ``transform`` returns the online
    backbone's features.

    Default augmentation (:meth:`skssl.augment.Augment.byol`, the paper's
    table 6), different for the two views: both get a random resized crop of
    scale 0.08-1, horizontal flip, colour jitter (brightness, contrast 0.4,
    saturation 0.2, hue 0.1) with p=0.8 and grayscale p=0.2; Gaussian blur
    has p=1.0 on the first view and 0.1 on the second (only above 32
    pixels), solarization p=0 and 0.2.

    The projector ends in an affine-free BatchNorm (as SimSiam's and SimCLR
    v2's), which the paper's does not. Without it, the projector's last
    linear layer turns the positive mean of the ReLU activations before it
    into one direction that every image's projection shares (mean cosine
    0.32 between the target projections of different digits, at
    initialisation and still after short runs), so the target BYOL regresses
    on is largely the same for every image. On the digits (10 labels per
    class, 30 epochs) BYOL then scored 0.716, under the random-init
    backbone's 0.833, and 0.744 with SimSiam's bottleneck predictor; with
    the output BatchNorm and MoCo v2's augmentation it scores 0.877 (the
    heads and augmentation SimSiam uses: 0.884; SimSiam itself 0.904), and
    with its default augmentation below 0.891 (Fashion-MNIST, 3 epochs on
    4,000 images: linear probe 0.783, SimSiam 0.782).
    The paper's 4096-wide heads trained for 300+ epochs learn to cancel
    that component; a few hundred AdamW steps do not.

    Parameters
    ----------
    projection_dim : int, default=128
        Output width of the projector and the predictor (paper: 256).
    hidden_dim : int, default=512
        Hidden width of the projector and the predictor (paper: 4096, sized
        for ResNet-50 features; 512 suits the small backbones used here).
    base_momentum : float, default=0.99
        Starting EMA momentum of the target network (paper: 0.996 for
        ImageNet-length runs; short runs on small data need the target to
        move faster).
    {view_parameters}
    {common_parameters}

    Attributes
    ----------
    {common_attributes}

    Notes
    -----
    ``networks_`` holds ``backbone``, ``projector`` and ``predictor`` (online,
    trained) and ``target_backbone`` and ``target_projector`` (EMA copies with
    ``requires_grad=False``). With ``warm_start=True`` the target continues
    from its fitted state and the momentum schedule restarts from
    ``base_momentum``.

    Examples
    --------
    >>> from skssl.contrastive.byol import BYOL
    >>> from skssl.datasets import load_digits_images
    >>> X, y = load_digits_images(return_X_y=True)
    >>> Z = BYOL(max_epochs=1, random_state=0).fit_transform(X[:100])
    >>> Z.shape
    (100, 128)
    """

    _recipe = "byol"
    _params = {"projection_dim": 128, "hidden_dim": 512, "base_momentum": 0.99, "max_epochs": 30}
    _parameter_constraints = {
        **MultiViewSSL._parameter_constraints,
        "projection_dim": [Interval(Integral, 1, None, closed="left")],
        "hidden_dim": [Interval(Integral, 1, None, closed="left")],
        "base_momentum": [Interval(Real, 0, 1, closed="both")],
    }

    def _default_augment(self, image_size, channels):
        views = Augment.byol(min(image_size), channels)
        if min(image_size) < 32:  # crops of 8% of a tiny image lose the object (measured above)
            views = tuple(replace(v, crop_scale=(0.2, 1.0)) for v in views)
        return views

    def _build_heads(self, feature_dim):
        return {
            "projector": mlp(feature_dim, self.hidden_dim, self.projection_dim, last_bn=True),
            "predictor": mlp(self.projection_dim, self.hidden_dim, self.projection_dim),
        }

    def _build_networks(self):
        super()._build_networks()
        # The target starts as an exact copy of the online encoder.
        self.networks_["target_backbone"] = frozen_copy(self.networks_["backbone"])
        self.networks_["target_projector"] = frozen_copy(self.networks_["projector"])

    def _loss(self, x):
        nets = self.networks_
        # Both views in one pass per branch: BatchNorm sees the whole 2n batch.
        views = torch.cat(self._views(x))
        p1, p2 = nets["predictor"](nets["projector"](self._encode(views))).chunk(2)
        with torch.no_grad():
            z1, z2 = nets["target_projector"](nets["target_backbone"](self._standardize(views))).chunk(2)
        return byol_loss(p1, z2) + byol_loss(p2, z1)

    def _momentum(self):
        """Momentum of the update after the current step (the first uses ``base_momentum``)."""
        return cosine_momentum(self._step - 1, self._total_steps, self.base_momentum)

    def _after_step(self):
        m = self._momentum()
        ema_update_(self.networks_["target_backbone"], self.networks_["backbone"], m)
        ema_update_(self.networks_["target_projector"], self.networks_["projector"], m)
