"""SimSiam: a Siamese network with a predictor and a stop-gradient, nothing else."""

from numbers import Integral

import torch
import torch.nn.functional as F
from sklearn.utils._param_validation import Interval

from ._multiview import MultiViewSSL
from ..heads import mlp
from ..losses import fp32_loss


@fp32_loss
def simsiam_loss(p, z):
    """SimSiam's negative cosine similarity ``-cos(p, stopgrad(z))``, batch mean.

    Lies in [-1, 1], with its minimum -1 when ``p`` and ``z`` point the same
    way. The stop-gradient on ``z`` is what keeps SimSiam from collapsing
    (Chen & He 2021, section 4.1).

    Parameters
    ----------
    p : Tensor of shape (n, d)
        Predictor outputs for one view.
    z : Tensor of shape (n, d)
        Projector outputs for the other view.

    Returns
    -------
    Tensor, scalar
    """
    if p.shape != z.shape or p.ndim != 2:
        raise ValueError(f"simsiam_loss expects two (n, d) tensors of equal shape, got {tuple(p.shape)} and {tuple(z.shape)}.")
    return -F.cosine_similarity(p.float(), z.detach().float(), dim=1).mean()


class SimSiam(MultiViewSSL):
    """Exploring simple Siamese representation learning.

    Follows Chen & He (CVPR 2021): both views pass through one backbone and a
    three-layer projector whose output is batch-normalised; a bottleneck
    predictor maps one view's projection to the other's, whose gradient is
    stopped. No negatives, no momentum encoder, no large batches. The loss is
    ``(D(p1, z2) + D(p2, z1)) / 2`` with ``D`` the negative cosine, so it lies
    in [-1, 1]. ``transform`` returns the backbone's features.

    Default augmentation: MoCo v2's, as the paper (section 4 and
    facebookresearch/simsiam), :meth:`skssl.augment.Augment.moco_v2`: random
    resized crop of scale 0.2-1, colour jitter (0.4, 0.4, 0.4, hue 0.1) with
    p=0.8, grayscale p=0.2, Gaussian blur p=0.5 above 32 pixels, flip.

    Parameters
    ----------
    projection_dim : int, default=512
        Width of the projector's hidden layers and output (paper: 2048).
    predictor_hidden_dim : int, default=128
        Bottleneck width of the predictor (paper: 512, a quarter of
        ``projection_dim``; the bottleneck is what the paper found to matter).
    {view_parameters}
    {common_parameters}

    Attributes
    ----------
    {common_attributes}

    Notes
    -----
    The paper trains with SGD and keeps the predictor's learning rate constant
    while the rest decays; here every network shares the common warm-up and
    cosine schedule (AdamW by default), which trained stably on the small data
    sets this package targets.

    Examples
    --------
    >>> from skssl.contrastive.simsiam import SimSiam
    >>> from skssl.datasets import load_digits_images
    >>> X, y = load_digits_images(return_X_y=True)
    >>> Z = SimSiam(max_epochs=1, random_state=0).fit_transform(X[:100])
    >>> Z.shape
    (100, 128)
    """

    _recipe = "moco_v2"
    _params = {"projection_dim": 512, "predictor_hidden_dim": 128, "max_epochs": 30}
    _parameter_constraints = {
        **MultiViewSSL._parameter_constraints,
        "projection_dim": [Interval(Integral, 1, None, closed="left")],
        "predictor_hidden_dim": [Interval(Integral, 1, None, closed="left")],
    }

    def _build_heads(self, feature_dim):
        return {
            "projector": mlp(feature_dim, self.projection_dim, self.projection_dim, n_layers=3, last_bn=True),
            "predictor": mlp(self.projection_dim, self.predictor_hidden_dim, self.projection_dim),
        }

    def _loss(self, x):
        # Both views in one forward pass: BatchNorm sees the whole 2n batch.
        z = self.networks_["projector"](self._encode(torch.cat(self._views(x))))
        p = self.networks_["predictor"](z)
        z1, z2 = z.chunk(2)
        p1, p2 = p.chunk(2)
        return (simsiam_loss(p1, z2) + simsiam_loss(p2, z1)) / 2
