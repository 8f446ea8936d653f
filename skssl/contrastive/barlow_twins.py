"""Barlow Twins: drive the cross-correlation of two views' embeddings to the identity."""

from numbers import Integral, Real

import torch
from sklearn.utils._param_validation import Interval

from ._multiview import MultiViewSSL
from ..heads import mlp
from ..losses import fp32_loss


@fp32_loss
def barlow_twins_loss(z1, z2, lambd=5e-3, eps=1e-5):
    """Barlow Twins' redundancy-reduction loss.

    Each embedding dimension is standardised over the batch (as an
    affine-free BatchNorm would), ``C = z1n.T @ z2n / n`` is the
    cross-correlation matrix, and the loss is
    ``sum_i (1 - C_ii)^2 + lambd * sum_{i != j} C_ij^2``: zero exactly when
    ``C`` is the identity (invariant and decorrelated dimensions).

    Parameters
    ----------
    z1, z2 : Tensor of shape (n, d)
        Projector outputs of the two views, ``n >= 2``.
    lambd : float, default=5e-3
        Weight of the off-diagonal (redundancy) term.
    eps : float, default=1e-5
        Added to the variance before the square root, as in BatchNorm.

    Returns
    -------
    Tensor, scalar
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"barlow_twins_loss expects two (n, d) tensors of equal shape, got {tuple(z1.shape)} and {tuple(z2.shape)}.")
    n = z1.shape[0]
    if n < 2:
        raise ValueError("barlow_twins_loss needs at least 2 samples to standardise over the batch.")

    def standardise(z):
        z = z.float()
        return (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + eps)

    c = standardise(z1).T @ standardise(z2) / n
    diagonal = torch.diagonal(c)
    on = (1.0 - diagonal).pow(2).sum()
    off = c.pow(2).sum() - diagonal.pow(2).sum()
    return on + lambd * off


class BarlowTwins(MultiViewSSL):
    """Barlow Twins: self-supervised learning via redundancy reduction.

    Follows Zbontar, Jing, Misra, LeCun & Deny (ICML 2021): two views pass
    through the backbone and a three-layer projector; the cross-correlation
    matrix of their batch-standardised projections is pushed towards the
    identity, making the embedding invariant to the augmentations while its
    dimensions carry non-redundant information. No negatives, no momentum
    network, no stop-gradient. ``transform`` returns the backbone's features.

    Default augmentation: BYOL's asymmetric pair, as the paper, which follows
    BYOL (``Transform`` in facebookresearch/barlowtwins),
    :meth:`skssl.augment.Augment.byol`: crop scale 0.08-1, flip, colour
    jitter (0.4, 0.4, 0.2, hue 0.1) with p=0.8, grayscale p=0.2, blur p=1.0
    on the first view and 0.1 on the second (above 32 pixels), solarization
    p=0 and 0.2.

    Parameters
    ----------
    projection_dim : int, default=512
        Width of the projector's hidden layers and output. The paper uses
        8192 (the loss improves with width there); for the small images and
        backbones here a modest width trains far faster and is enough.
    lambd : float, default=5e-3
        Weight of the off-diagonal term. The off-diagonal sum has ``d^2 - d``
        terms against ``d`` on the diagonal, so the balance depends on
        ``projection_dim``: the paper's 5e-3 was tuned at ``d = 8192``, and
        ``1 / projection_dim`` is a sensible value when changing the width
        a lot.
    {view_parameters}
    {common_parameters}

    Attributes
    ----------
    {common_attributes}

    Examples
    --------
    >>> from skssl.contrastive.barlow_twins import BarlowTwins
    >>> from skssl.datasets import load_digits_images
    >>> X, y = load_digits_images(return_X_y=True)
    >>> Z = BarlowTwins(max_epochs=1, random_state=0).fit_transform(X[:100])
    >>> Z.shape
    (100, 128)
    """

    _recipe = "byol"
    _params = {"projection_dim": 512, "lambd": 5e-3, "max_epochs": 30}
    _parameter_constraints = {
        **MultiViewSSL._parameter_constraints,
        "projection_dim": [Interval(Integral, 1, None, closed="left")],
        "lambd": [Interval(Real, 0, None, closed="left")],
    }

    def _build_heads(self, feature_dim):
        return {"projector": mlp(feature_dim, self.projection_dim, self.projection_dim, n_layers=3)}

    def _loss(self, x):
        # One forward pass over both views (BatchNorm in the projector sees
        # the whole 2n batch); the loss standardises each view separately.
        z1, z2 = self.networks_["projector"](self._encode(torch.cat(self._views(x)))).chunk(2)
        return barlow_twins_loss(self._gather(z1), self._gather(z2), self.lambd)  # global batch statistics under torchrun
