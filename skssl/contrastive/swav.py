"""SwAV: online clustering with equipartitioned codes, predicted across crops."""

from numbers import Integral, Real

import torch
import torch.nn.functional as F
from sklearn.utils._param_validation import Interval
from torch import nn

from ._multiview import MultiCropSSL
from ..augment import Augment
from ..heads import mlp
from ..losses import sinkhorn_knopp, swapped_prediction_loss


class _FeatureQueue(nn.Module):
    """The projections of the last images of every global crop, newest first (a buffer).

    Under torchrun each process uses the first ``length // world_size`` rows
    (its own images); the buffer keeps its full length so that a model
    trained on N processes loads in one.
    """

    def __init__(self, n_crops, length, dim):
        super().__init__()
        self.register_buffer("features", torch.zeros(n_crops, length, dim))

    @torch.no_grad()
    def push(self, features, length):
        """Put ``features`` (n_crops, n, dim) in front of the first ``length`` rows."""
        n = min(features.shape[1], length)
        rows = self.features[:, :length]
        rows.copy_(torch.cat([features[:, :n].to(rows.dtype), rows[:, :length - n]], dim=1))


class SwAV(MultiCropSSL):
    """Swapping assignments between views: online clustering with multi-crop.

    Follows Caron et al. (NeurIPS 2020): every crop's backbone features go
    through a projector and are L2-normalised; their cosines with
    ``n_prototypes`` normalised prototype vectors are the crop's scores. The
    scores of each global crop become soft codes by Sinkhorn-Knopp
    (``epsilon``, ``sinkhorn_iterations``; in fp32, and over the global batch
    of every torchrun process), which spread the batch evenly over the
    prototypes; every other crop, global or local, predicts those codes from
    its own scores (softmax at ``temperature``). The loss is the mean of these
    swapped cross entropies. The prototypes are renormalised after every step
    and frozen for the first ``freeze_prototypes_epochs`` epochs.

    Default augmentation (facebookresearch/swav, ``main_swav.py``): two global
    crops of scale 0.14-1 and (``n_local_crops="auto"``, from 28 pixels) six
    local crops of scale 0.05-0.14 at 96/224 of the working size; flip,
    colour jitter (0.8, 0.8, 0.8, 0.2) with p=0.8, grayscale p=0.2 (RGB
    only) and Gaussian blur p=0.5 above 32 pixels, on every crop.

    Parameters
    ----------
    n_prototypes : int, default=300
        Number of prototypes (paper: 3000 on ImageNet, 10 times the classes
        or more; with the small batches of CPU training a batch of 256 then
        spreads over 300 prototypes, about one image each).
    projection_dim : int, default=128
        Width of the normalised projections and prototypes (paper: 128).
    hidden_dim : int, default=512
        Hidden width of the projector (paper: 2048, for ResNet-50 features).
    temperature : float, default=0.1
        Softmax temperature of the predictions (paper: 0.1).
    epsilon : float, default=0.02
        Entropic regularisation of Sinkhorn-Knopp (paper: 0.05). At 0.05 the
        codes of small-image features are nearly uniform, the predictions
        follow, and the loss settles at log K (the uniform collapse): on the
        digits the loss sat at log 300 from epoch 7 on, with 30 or 300
        prototypes, with a queue, with local crops or without, and the
        features scored 0.78-0.82 (10 labels per class) against the
        random-init backbone's 0.833; at 0.02 the loss keeps falling (5.51
        after 10 epochs) and the features score 0.843 after 10 epochs and
        0.885 after the default 30.
    sinkhorn_iterations : int, default=3
        Sinkhorn-Knopp iterations (paper: 3).
    queue_length : int, default=0
        Projections of past batches (per global crop) added to each
        Sinkhorn-Knopp batch once the queue has filled, for batches much
        smaller than ``n_prototypes`` (paper: 3840 with batches of 256 from
        epoch 15). 0 disables it. Under torchrun every process keeps
        ``queue_length // world_size`` rows.
    freeze_prototypes_epochs : int, default=1
        Epochs during which the prototypes get no gradient (paper: the first
        313 iterations, one ImageNet epoch at batch 4096).
    {multi_crop_parameters}
    {view_parameters}
    {common_parameters}

    Attributes
    ----------
    local_augment_ : skssl.augment.Augment
        The local crops' pipeline as used (with ``local_crop_scale``).
    {common_attributes}

    Notes
    -----
    ``networks_`` holds ``backbone``, ``projector``, ``prototypes`` and, with
    a queue, ``queue``.

    Examples
    --------
    >>> from skssl.contrastive.swav import SwAV
    >>> from skssl.datasets import load_digits_images
    >>> X, y = load_digits_images(return_X_y=True)
    >>> Z = SwAV(max_epochs=1, random_state=0).fit_transform(X[:100])
    >>> Z.shape
    (100, 128)
    """

    _params = {"n_prototypes": 300, "projection_dim": 128, "hidden_dim": 512, "temperature": 0.1, "epsilon": 0.02,
               "sinkhorn_iterations": 3, "queue_length": 0, "freeze_prototypes_epochs": 1,
               "global_crop_scale": (0.14, 1.0), "local_crop_scale": (0.05, 0.14), "max_epochs": 30}
    _parameter_constraints = {
        **MultiCropSSL._parameter_constraints,
        "n_prototypes": [Interval(Integral, 2, None, closed="left")],
        "projection_dim": [Interval(Integral, 1, None, closed="left")],
        "hidden_dim": [Interval(Integral, 1, None, closed="left")],
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "sinkhorn_iterations": [Interval(Integral, 1, None, closed="left")],
        "queue_length": [Interval(Integral, 0, None, closed="left")],
        "freeze_prototypes_epochs": [Interval(Integral, 0, None, closed="left")],
    }

    def _default_augment(self, image_size, channels):
        rgb = channels == 3
        return Augment(crop_scale=self.global_crop_scale, flip_p=0.5, brightness=0.8, contrast=0.8,
                       saturation=0.8 if rgb else 0.0, hue=0.2 if rgb else 0.0, jitter_p=0.8,
                       grayscale_p=0.2 if rgb else 0.0, blur_p=0.5 if min(image_size) > 32 else 0.0)

    def _build_heads(self, feature_dim):
        prototypes = nn.Linear(self.projection_dim, self.n_prototypes, bias=False)
        with torch.no_grad():
            prototypes.weight.copy_(F.normalize(prototypes.weight, dim=1))
        heads = {"projector": mlp(feature_dim, self.hidden_dim, self.projection_dim), "prototypes": prototypes}
        if self.queue_length:
            heads["queue"] = _FeatureQueue(self.n_global_crops, self.queue_length, self.projection_dim)
        return heads

    def _loss(self, x):
        nets, n = self.networks_, x.shape[0]
        crops = [c for c in self._multi_crop_views(x) if c is not None]
        z = [F.normalize(nets["projector"](self._encode(c)), dim=1) for c in crops]
        weight = nets["prototypes"].weight
        if len(self.history_) < self.freeze_prototypes_epochs:
            weight = weight.detach()  # no gradient: AdamW skips the prototypes (and their decay)
        scores = torch.cat([F.linear(zi, weight) for zi in z]).chunk(self.n_global_crops + self._n_local())
        globals_ = z[0].detach().view(self.n_global_crops, n, -1)
        queue = nets["queue"] if "queue" in nets else None
        length = max(1, self.queue_length // getattr(self, "_world", 1))
        # Counted on the host (no device sync): full once this fit has pushed ``length`` rows.
        full = queue is not None and (self._step * n >= length)
        loss = 0.0
        for i in range(self.n_global_crops):
            s = scores[i].detach()
            if full:
                s = torch.cat([F.linear(queue.features[i, :length], weight.detach()), s])
            codes = sinkhorn_knopp(s, self.epsilon, self.sinkhorn_iterations)[-n:]
            others = [v for v in range(len(scores)) if v != i]
            loss = loss + sum(swapped_prediction_loss(scores[v], codes, self.temperature) for v in others) / len(others)
        if queue is not None:
            queue.push(globals_, length)
        return loss / self.n_global_crops

    def _after_step(self):
        with torch.no_grad():
            w = self.networks_["prototypes"].weight
            w.copy_(F.normalize(w, dim=1))
