"""SimCLR: two augmented views, projection head, NT-Xent."""

from numbers import Integral, Real

import torch
from sklearn.utils._param_validation import Interval

from ._multiview import MultiViewSSL
from ..heads import mlp
from ..losses import nt_xent


class SimCLR(MultiViewSSL):
    """A simple framework for contrastive learning of visual representations.

    Follows Chen, Kornblith, Norouzi & Hinton (ICML 2020): two random
    augmentations of each image pass through the backbone and a two-layer
    projection head; the NT-Xent loss pulls the pair together and pushes the
    other ``2n - 2`` images of the batch away. ``transform`` returns backbone
    features (before the projection head), as the paper evaluates.

    Default augmentation (:meth:`skssl.augment.Augment.simclr`, the paper's
    appendix A): random resized crop of scale 0.08-1, horizontal flip,
    colour jitter (brightness, contrast, saturation 0.4, hue 0.1) with
    p=0.8, grayscale p=0.2, Gaussian blur p=0.5 above 32 pixels. The jitter
    strength is the paper's CIFAR-10 value (s=0.5; ImageNet used s=1), and
    its CIFAR recipe drops the blur.

    Parameters
    ----------
    temperature : float, default=0.5
        Softmax temperature of NT-Xent.
    projection_dim : int, default=128
        Output width of the projection head.
    {view_parameters}
    {common_parameters}

    Attributes
    ----------
    {common_attributes}

    Examples
    --------
    >>> from skssl import SimCLR
    >>> from skssl.datasets import load_digits_images
    >>> X, y = load_digits_images(return_X_y=True)
    >>> Z = SimCLR(max_epochs=1, random_state=0).fit_transform(X[:100])
    >>> Z.shape
    (100, 128)
    """

    _recipe = "simclr"
    _params = {"temperature": 0.5, "projection_dim": 128, "max_epochs": 30}
    _parameter_constraints = {
        **MultiViewSSL._parameter_constraints,
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "projection_dim": [Interval(Integral, 1, None, closed="left")],
    }

    def _build_heads(self, feature_dim):
        return {"projector": mlp(feature_dim, feature_dim, self.projection_dim)}

    def _loss(self, x):
        # Both views in one forward pass: BatchNorm sees the whole 2n batch.
        views = torch.cat(self._views(x))
        z1, z2 = self.networks_["projector"](self._encode(views)).chunk(2)
        return nt_xent(self._gather(z1), self._gather(z2), self.temperature)  # the global batch under torchrun
