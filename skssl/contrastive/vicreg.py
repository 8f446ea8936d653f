"""VICReg: variance-invariance-covariance regularisation of two views' embeddings."""

from numbers import Integral, Real

import torch
import torch.nn.functional as F
from sklearn.utils._param_validation import Interval

from ._multiview import MultiViewSSL
from ..heads import mlp
from ..losses import fp32_loss


def _check_batch(z, name):
    if z.ndim != 2 or z.shape[0] < 2:
        raise ValueError(f"{name} expects an (n, d) tensor with n >= 2, got shape {tuple(z.shape)}.")


@fp32_loss
def vicreg_variance(z, target=1.0, eps=1e-4):
    """Hinge on each dimension's batch standard deviation: ``mean_j relu(target - std_j)``.

    ``std_j = sqrt(var_j + eps)`` (unbiased variance). Zero when every
    dimension's std reaches ``target``; this is what prevents collapse.
    """
    _check_batch(z, "vicreg_variance")
    std = torch.sqrt(z.float().var(dim=0) + eps)
    return F.relu(target - std).mean()


@fp32_loss
def vicreg_covariance(z):
    """Sum of squared off-diagonal entries of the batch covariance, divided by ``d``."""
    _check_batch(z, "vicreg_covariance")
    z = z.float()
    n, d = z.shape
    z = z - z.mean(dim=0)
    cov = z.T @ z / (n - 1)
    return (cov.pow(2).sum() - torch.diagonal(cov).pow(2).sum()) / d


@fp32_loss
def vicreg_loss(z1, z2, invariance_weight=25.0, variance_weight=25.0, covariance_weight=1.0,
                target_std=1.0, eps=1e-4):
    """VICReg's loss on the expander outputs of two views (Bardes et al. 2022, eq. 6).

    ``invariance_weight * mse(z1, z2)`` plus, for each view, half of
    ``variance_weight * vicreg_variance`` and ``covariance_weight *
    vicreg_covariance`` (the paper sums the two views' regularisers; the
    official code averages the variance terms and sums the covariance
    terms, which this follows).

    Parameters
    ----------
    z1, z2 : Tensor of shape (n, d), n >= 2
    invariance_weight, variance_weight, covariance_weight : float
        The paper's lambda, mu and nu (25, 25, 1).
    target_std : float, default=1.0
        The hinge's target standard deviation (gamma).
    eps : float, default=1e-4
        Added to the variance before the square root.

    Returns
    -------
    Tensor, scalar
    """
    if z1.shape != z2.shape:
        raise ValueError(f"vicreg_loss expects two tensors of equal shape, got {tuple(z1.shape)} and {tuple(z2.shape)}.")
    invariance = F.mse_loss(z1.float(), z2.float())
    variance = (vicreg_variance(z1, target_std, eps) + vicreg_variance(z2, target_std, eps)) / 2
    covariance = vicreg_covariance(z1) + vicreg_covariance(z2)
    return invariance_weight * invariance + variance_weight * variance + covariance_weight * covariance


class VICReg(MultiViewSSL):
    """Variance-invariance-covariance regularisation for self-supervised learning.

    Follows Bardes, Ponce & LeCun (ICLR 2022): two views pass through the
    backbone and a three-layer expander; the loss makes the two embeddings of
    an image close (invariance, mean squared error), keeps every dimension's
    standard deviation over the batch above ``target_std`` (variance, a
    hinge) and decorrelates the dimensions (covariance). Each view is
    regularised on its own, so no negatives, momentum network, stop-gradient
    or normalisation across branches is needed. ``transform`` returns the
    backbone's features (the paper's representation, before the expander).

    Default augmentation: Barlow Twins' (hence BYOL's) asymmetric pair, as
    the paper, which follows them (facebookresearch/vicreg ``augmentations.py``),
    :meth:`skssl.augment.Augment.byol`: crop scale 0.08-1, flip, colour
    jitter (0.4, 0.4, 0.2, hue 0.1) with p=0.8, grayscale p=0.2, blur p=1.0
    on the first view and 0.1 on the second (above 32 pixels), solarization
    p=0 and 0.2.

    Parameters
    ----------
    projection_dim : int, default=512
        Width of the expander's hidden layers and output (paper: 8192, for
        ResNet-50; a modest width suits the small backbones here).
    invariance_weight : float, default=25.0
        Weight of the mean squared error between the views (lambda).
    variance_weight : float, default=25.0
        Weight of the standard-deviation hinge (mu).
    covariance_weight : float, default=1.0
        Weight of the off-diagonal covariance penalty (nu).
    target_std : float, default=1.0
        Standard deviation each dimension is kept above (gamma).
    {view_parameters}
    {common_parameters}

    Attributes
    ----------
    {common_attributes}

    Examples
    --------
    >>> from skssl.contrastive.vicreg import VICReg
    >>> from skssl.datasets import load_digits_images
    >>> X, y = load_digits_images(return_X_y=True)
    >>> Z = VICReg(max_epochs=1, random_state=0).fit_transform(X[:100])
    >>> Z.shape
    (100, 128)
    """

    _recipe = "byol"
    _params = {
        "projection_dim": 512,
        "invariance_weight": 25.0,
        "variance_weight": 25.0,
        "covariance_weight": 1.0,
        "target_std": 1.0,
        "max_epochs": 30,
    }
    _parameter_constraints = {
        **MultiViewSSL._parameter_constraints,
        "projection_dim": [Interval(Integral, 1, None, closed="left")],
        "invariance_weight": [Interval(Real, 0, None, closed="left")],
        "variance_weight": [Interval(Real, 0, None, closed="left")],
        "covariance_weight": [Interval(Real, 0, None, closed="left")],
        "target_std": [Interval(Real, 0, None, closed="neither")],
    }

    def _build_heads(self, feature_dim):
        return {"expander": mlp(feature_dim, self.projection_dim, self.projection_dim, n_layers=3)}

    def _loss(self, x):
        z1, z2 = self.networks_["expander"](self._encode(torch.cat(self._views(x)))).chunk(2)
        return vicreg_loss(self._gather(z1), self._gather(z2), self.invariance_weight, self.variance_weight, self.covariance_weight,
                           self.target_std)
