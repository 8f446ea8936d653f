"""Context encoder: reconstruct a removed region of the image from its surroundings."""

from numbers import Real

import torch
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from torch import nn

from ..backbones import build_backbone
from ..base import BaseSSL
from ._decoder import feature_map_shape, make_decoder
from .gan import Discriminator, adversarial_losses


def region_masks(n, size, mask, fraction, generator, device):
    """Boolean masks ``(n, 1, h, w)``, True on the pixels to remove.

    ``"center"``: the central square whose side is ``fraction`` of each image
    side. ``"random"``: four squares of half that side at uniform positions
    per image (Pathak et al.'s random blocks), drawn with ``generator``.
    """
    h, w = size
    rows = torch.arange(h, device=device).view(1, 1, h, 1)
    cols = torch.arange(w, device=device).view(1, 1, 1, w)
    if mask == "center":
        mh, mw = max(1, round(fraction * h)), max(1, round(fraction * w))
        top, left = (h - mh) // 2, (w - mw) // 2
        box = (rows >= top) & (rows < top + mh) & (cols >= left) & (cols < left + mw)
        return box.expand(n, 1, h, w)
    bh, bw = max(1, round(fraction * h / 2)), max(1, round(fraction * w / 2))
    u = torch.rand(n, 4, 2, generator=generator, device=device)
    top = (u[..., 0] * (h - bh + 1)).floor().view(n, 4, 1, 1)
    left = (u[..., 1] * (w - bw + 1)).floor().view(n, 4, 1, 1)
    boxes = (rows >= top) & (rows < top + bh) & (cols >= left) & (cols < left + bw)
    return boxes.any(dim=1, keepdim=True)


def masked_mse(pred, target, mask):
    """Mean squared error over the masked pixels (all channels) of a batch."""
    weight = mask.expand_as(target).to(pred.dtype)
    return ((pred - target).pow(2) * weight).sum() / weight.sum().clamp_min(1)


class InpaintingSSL(BaseSSL):
    """Self-supervised inpainting (context encoder).

    Follows Pathak, Krähenbühl, Donahue, Darrell & Efros, "Context Encoders:
    Feature Learning by Inpainting" (CVPR 2016): a region of each image is
    removed (filled with the data set's mean, i.e. zero after
    standardisation), the backbone encodes what is left and an upsampling
    decoder (:func:`skssl.pretext._decoder.make_decoder`) reconstructs the
    image. The L2 loss is computed on the removed pixels only (the paper's
    extra weight on a few-pixel overlap around the hole is not used; the
    completed image keeps the visible pixels as they are). With
    ``adversarial_weight > 0`` a discriminator (a second backbone with a
    linear head) learns to tell real images from completed ones, and the
    encoder-decoder gets ``adversarial_weight`` times the non-saturating
    generator loss (paper: 0.001); both are updated simultaneously from one
    backward pass, the generator's term through the discriminator with
    detached parameters. ``transform`` returns pooled features of the encoder
    (the backbone, stage ``stage``).

    Parameters
    ----------
    mask : {"center", "random"}, default="center"
        ``"center"`` removes the central square, ``"random"`` four randomly
        placed squares of half its side per image (drawn afresh every step).
    mask_fraction : float, default=0.5
        Side of the central square as a fraction of the image side.
    adversarial_weight : float, default=0.0
        Weight of the adversarial loss; 0 trains with L2 alone.
    {common_parameters}

    Attributes
    ----------
    {common_attributes}

    Examples
    --------
    >>> from skssl.pretext.inpainting import InpaintingSSL
    >>> from skssl.datasets import load_digits_images
    >>> X, y = load_digits_images(return_X_y=True)
    >>> Z = InpaintingSSL(max_epochs=1, random_state=0).fit_transform(X[:100])
    >>> Z.shape
    (100, 128)
    """

    _params = {"mask": "center", "mask_fraction": 0.5, "adversarial_weight": 0.0, "max_epochs": 30,
               "batch_size": 64}
    _parameter_constraints = {
        **BaseSSL._parameter_constraints,
        "mask": [StrOptions({"center", "random"})],
        "mask_fraction": [Interval(Real, 0, 1, closed="neither")],
        "adversarial_weight": [Interval(Real, 0, None, closed="left")],
    }

    def _build_networks(self):
        super()._build_networks()  # the backbone first: the decoder's input is its last map
        c, size = self.image_shape_[2], self._working_size()
        map_channels, map_size = feature_map_shape(self.backbone_, c, size)
        self.networks_["decoder"] = make_decoder(map_channels, c, map_size, size)
        if self.adversarial_weight > 0:
            trunk = build_backbone(self.backbone, c, size)
            self.networks_["discriminator"] = Discriminator(trunk, nn.Linear(trunk.stage_dims(c, size)[-1], 1))

    def _masks(self, x, generator):
        return region_masks(x.shape[0], x.shape[-2:], self.mask, self.mask_fraction, generator, x.device)

    def _complete(self, x, mask):
        """Standardised images with the masked region replaced by the reconstruction."""
        x_std = self._standardize(x)
        context = x_std.masked_fill(mask, 0.0)
        pred = self.networks_["decoder"](self.backbone_.feature_maps(context, -1))
        return torch.where(mask, pred, x_std), x_std

    def _loss(self, x):
        mask = self._masks(x, self._generator)
        completed, x_std = self._complete(x, mask)
        loss = masked_mse(completed, x_std, mask)
        if self.adversarial_weight > 0:
            if "discriminator" not in self.networks_:
                raise ValueError("adversarial_weight > 0 needs a discriminator: refit with warm_start=False.")
            loss_d, loss_g = adversarial_losses(self.networks_["discriminator"], x_std, completed)
            loss = loss + loss_d + self.adversarial_weight * loss_g
        return loss

    def pretext_score(self, X, random_state=0):
        """Mean squared error on the removed pixels of ``X``, in unit-range pixel values.

        Lower is better. Random masks are drawn from ``random_state`` (int,
        RandomState or None), so repeated calls score the same masks.

        Parameters
        ----------
        X : array-like of images or a torch Dataset
            Images as ``fit`` takes them (held-out images measure generalisation).
        random_state : int, RandomState or None, default=0
            Seeds the random draws of the score (masks, samples), so
            repeated calls score the same ones.

        Returns
        -------
        float
            The mean squared error on the removed pixels.
        """
        X = self._check_input(X, reset=False)
        seed = int(check_random_state(random_state).randint(2**31 - 1))
        generator = torch.Generator(device=self._device()).manual_seed(seed)
        std = torch.as_tensor(self.channel_std_).view(1, -1, 1, 1)

        def errors(x):
            mask = self._masks(x, generator)
            completed, x_std = self._complete(x, mask)
            sq = ((completed - x_std) * std.to(x.device)).pow(2) * mask
            return torch.stack([sq.sum(dim=(1, 2, 3)), mask.expand_as(sq).sum(dim=(1, 2, 3)).to(sq.dtype)], 1)

        total = self._map_batches(X, errors).sum(0)
        return float(total[0] / max(total[1], 1))
