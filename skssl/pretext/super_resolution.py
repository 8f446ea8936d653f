"""SRGAN-style super-resolution: restore the detail lost by downsampling."""

from numbers import Integral, Real

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils._param_validation import Interval, StrOptions
from torch import nn

from ..backbones import build_backbone
from ..base import BaseSSL
from ._decoder import feature_map_shape, make_decoder
from .gan import Discriminator, frozen_call


def degrade(x, scale, mode="bilinear"):
    """Downsample by ``scale`` (area average), then upsample back with ``mode``."""
    h, w = x.shape[-2:]
    low = F.interpolate(x, size=(max(1, h // scale), max(1, w // scale)), mode="area")
    return F.interpolate(low, size=(h, w), mode=mode, align_corners=False)


def psnr(pred, target):
    """Per-image peak signal-to-noise ratio in dB of unit-range images ``(n, ...)``."""
    mse = (pred.float() - target.float()).pow(2).flatten(1).mean(1)
    return -10 * torch.log10(mse.clamp_min(1e-10))


class SuperResolutionSSL(BaseSSL):
    """Self-supervised super-resolution with a content and an adversarial loss.

    After Ledig et al., "Photo-Realistic Single Image Super-Resolution Using a
    Generative Adversarial Network" (SRGAN, CVPR 2017). Each image is
    downsampled by ``scale`` (area average); the generator restores it. Unlike
    SRGAN, which convolves the low-resolution image and upsamples at the end,
    the generator's encoder (the backbone) reads the low-resolution image
    bilinearly upsampled back to full size (SRCNN/VDSR style), so it is trained
    on images at the size ``transform`` later embeds; a decoder
    (:func:`skssl.pretext._decoder.make_decoder`) predicts the residual over
    that bilinear image. The loss is pixel MSE plus ``content_weight`` times
    the MSE between feature maps of the discriminator's trunk (SRGAN uses a
    pretrained VGG; none is available here, so the discriminator's own last
    feature map plays its part) plus ``adversarial_weight`` times the
    non-saturating generator loss. The discriminator (a second backbone with
    a linear head) learns to tell real from restored images; both networks are
    updated simultaneously from one backward pass, the generator's terms
    passing through the discriminator with detached parameters.

    Parameters
    ----------
    scale : int, default=2
        Downsampling factor.
    content_weight : float, default=0.1
        Weight of the feature-space (content) loss.
    adversarial_weight : float, default=0.001
        Weight of the generator's adversarial loss (SRGAN: 0.001).
    embedding : {"generator", "discriminator"}, default="generator"
        Whose trunk ``transform`` returns (stage ``stage``, pooled): the
        generator's encoder (``backbone_``) or the discriminator's.
    {common_parameters}

    Attributes
    ----------
    {common_attributes}

    Examples
    --------
    >>> from skssl.pretext.super_resolution import SuperResolutionSSL
    >>> from skssl.datasets import load_digits_images
    >>> X, y = load_digits_images(return_X_y=True)
    >>> Z = SuperResolutionSSL(max_epochs=1, random_state=0).fit_transform(X[:100])
    >>> Z.shape
    (100, 128)
    """

    _params = {"scale": 2, "content_weight": 0.1, "adversarial_weight": 0.001, "embedding": "generator",
               "max_epochs": 30, "batch_size": 64}
    _parameter_constraints = {
        **BaseSSL._parameter_constraints,
        "scale": [Interval(Integral, 2, None, closed="left")],
        "content_weight": [Interval(Real, 0, None, closed="left")],
        "adversarial_weight": [Interval(Real, 0, None, closed="left")],
        "embedding": [StrOptions({"generator", "discriminator"})],
    }

    def _build_networks(self):
        super()._build_networks()  # the backbone first: the decoder's input is its last map
        c, size = self.image_shape_[2], self._working_size()
        if self.scale > min(size):
            raise ValueError(f"scale={self.scale} is larger than the (working) image size {size}.")
        map_channels, map_size = feature_map_shape(self.backbone_, c, size)
        trunk = build_backbone(self.backbone, c, size)
        self.networks_["decoder"] = make_decoder(map_channels, c, map_size, size)
        self.networks_["discriminator"] = Discriminator(trunk, nn.Linear(trunk.stage_dims(c, size)[-1], 1))

    def _encode(self, x, stage=-1):
        if self.embedding == "discriminator":
            return self.networks_["discriminator"].trunk(self._standardize(x), stage)
        return super()._encode(x, stage)

    def _super_resolve(self, x):
        """Standardised super-resolved images from unit-range originals ``x``."""
        upsampled = self._standardize(degrade(x, self.scale))
        return upsampled + self.networks_["decoder"](self.backbone_.feature_maps(upsampled, -1))

    def _loss(self, x):
        real, fake = self._standardize(x), self._super_resolve(x)
        discriminator = self.networks_["discriminator"]
        maps_real, logits_real = discriminator(real, return_maps=True)
        loss_d = F.softplus(-logits_real).mean() + F.softplus(discriminator(fake.detach())).mean()
        maps_fake, logits_fake = frozen_call(discriminator, fake, return_maps=True)
        content = F.mse_loss(maps_fake, maps_real.detach())
        loss_g = F.mse_loss(fake, real) + self.content_weight * content
        return loss_g + self.adversarial_weight * F.softplus(-logits_fake).mean() + loss_d

    def _psnr(self, X, restore):
        X = self._check_input(X, reset=False)
        return float(np.mean(self._map_batches(X, lambda x: psnr(restore(x).clamp(0, 1), x))))

    def pretext_score(self, X):
        """Mean PSNR (dB, higher is better) of the super-resolved ``X`` against the originals.

        Parameters
        ----------
        X : array-like of images or a torch Dataset
            Images as ``fit`` takes them (held-out images measure generalisation).

        Returns
        -------
        float
            The mean peak signal-to-noise ratio in dB.
        """
        std = torch.as_tensor(self.channel_std_).view(1, -1, 1, 1)
        mean = torch.as_tensor(self.channel_mean_).view(1, -1, 1, 1)
        return self._psnr(X, lambda x: self._super_resolve(x) * std.to(x.device) + mean.to(x.device))

    def baseline_score(self, X, mode="bilinear"):
        """Mean PSNR (dB) of plain upsampling, for comparison with :meth:`pretext_score`.

        Parameters
        ----------
        X : array-like of images or a torch Dataset
            Images as ``fit`` takes them.
        mode : {"bilinear", "bicubic"}, default="bilinear"
            The interpolation that upsamples the degraded images.

        Returns
        -------
        float
            The mean peak signal-to-noise ratio in dB.
        """
        if mode not in ("bilinear", "bicubic"):
            raise ValueError(f"mode must be 'bilinear' or 'bicubic'; got {mode!r}.")
        return self._psnr(X, lambda x: degrade(x, self.scale, mode))
