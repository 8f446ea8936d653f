"""DCGAN: the discriminator of a generative adversarial network as a feature extractor."""

from numbers import Integral

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted
from torch import nn

from ..backbones import pool
from ..base import BaseSSL


def frozen_call(module, *args, **kwargs):
    """``module(*args, **kwargs)`` with its parameters detached: gradients reach the inputs only.

    Lets one backward pass of ``loss_D + loss_G`` update each player only by
    its own loss (the generator's term must not move the discriminator).
    """
    params = {name: p.detach() for name, p in module.named_parameters()}
    return torch.func.functional_call(module, params | dict(module.named_buffers()), args, kwargs)


def adversarial_losses(discriminator, real, fake):
    """Non-saturating GAN losses ``(loss_D, loss_G)`` for one batch.

    ``loss_D`` trains ``discriminator`` (logits) to call ``real`` real and
    ``fake`` fake without moving the generator; ``loss_G`` is
    ``-log D(fake)`` through a parameter-detached discriminator. Real and fake
    images pass in separate batches, as in DCGAN, so BatchNorm sees each alone.
    """
    loss_d = F.softplus(-discriminator(real)).mean() + F.softplus(discriminator(fake.detach())).mean()
    loss_g = F.softplus(-frozen_call(discriminator, fake)).mean()
    return loss_d, loss_g


class Discriminator(nn.Module):
    """A trunk (a :class:`~skssl.backbones.Backbone`, pooled last stage) and a real/fake logit head.

    ``return_maps=True`` also returns the trunk's unpooled last feature map
    (SRGAN's content loss compares images there).
    """

    def __init__(self, trunk, head):
        super().__init__()
        self.trunk, self.head = trunk, head

    def forward(self, x, return_maps=False):
        maps = self.trunk.feature_maps(x, -1)
        logits = self.head(pool(maps)).squeeze(1)
        return (maps, logits) if return_maps else logits


class Generator(nn.Module):
    """DCGAN generator: latent -> linear -> k x (ConvTranspose-BN-ReLU) -> sigmoid image.

    ``k`` doublings (1 to 3; 2 for 8-pixel images) from a small seed map, then a crop to exactly
    ``image_size``; the sigmoid matches the unit range of the data.
    """

    def __init__(self, latent_dim, out_channels, image_size, width=32):
        super().__init__()
        h, w = image_size
        k = min(3, max(1, (min(h, w) // 2).bit_length() - 1))
        self.seed_shape = (width * 2 ** (k - 1), -(-h // 2**k), -(-w // 2**k))
        self.image_size = (h, w)
        self.project = nn.Sequential(
            nn.Linear(latent_dim, int(np.prod(self.seed_shape)), bias=False),
            nn.BatchNorm1d(int(np.prod(self.seed_shape))), nn.ReLU(inplace=True))
        layers, c = [], self.seed_shape[0]
        for i in range(k):
            last = i == k - 1
            out = out_channels if last else c // 2
            layers.append(nn.ConvTranspose2d(c, out, 4, stride=2, padding=1, bias=last))
            layers += [nn.Sigmoid()] if last else [nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            c = out
        self.body = nn.Sequential(*layers)

    def forward(self, z):
        x = self.body(self.project(z).view(-1, *self.seed_shape))
        return x[..., : self.image_size[0], : self.image_size[1]]


class GANSSL(BaseSSL):
    """Self-supervised features from the discriminator of a DCGAN.

    Follows Radford, Metz & Chintala, "Unsupervised Representation Learning
    with Deep Convolutional Generative Adversarial Networks" (ICLR 2016): a
    generator of transposed convolutions maps Gaussian noise to images, a
    convolutional discriminator (the backbone plus a linear real/fake head)
    learns to tell them from real images with the non-saturating loss, and
    Adam uses ``betas=(0.5, 0.999)``. Generated images come out of a sigmoid in
    the data's unit range and are standardised like real images.

    The fit loop takes one optimiser step per batch, so both players are
    updated simultaneously from one backward pass of ``loss_D + loss_G``; the
    generator's term sees the discriminator with detached parameters, so each
    network moves only by its own loss (simultaneous gradient descent, a known
    GAN training variant, instead of the paper's alternating steps).
    ``transform`` returns pooled features of the discriminator trunk (the
    backbone, stage ``stage``), as the paper's features were.

    Parameters
    ----------
    latent_dim : int, default=64
        Width of the generator's Gaussian input.
    generator_width : int, default=32
        Channels of the generator's last hidden layer (doubled per earlier layer).
    {common_parameters}

    Attributes
    ----------
    {common_attributes}

    Examples
    --------
    >>> from skssl.pretext.gan import GANSSL
    >>> from skssl.datasets import load_digits_images
    >>> X, y = load_digits_images(return_X_y=True)
    >>> gan = GANSSL(max_epochs=1, random_state=0).fit(X[:100])
    >>> gan.transform(X[:5]).shape, gan.sample(3).shape
    ((5, 128), (3, 64))
    """

    _params = {"latent_dim": 64, "generator_width": 32, "max_epochs": 30, "lr": 5e-4,
               "weight_decay": 0.0, "batch_size": 64}
    _parameter_constraints = {
        **BaseSSL._parameter_constraints,
        "latent_dim": [Interval(Integral, 1, None, closed="left")],
        "generator_width": [Interval(Integral, 2, None, closed="left")],
    }

    def _build_heads(self, feature_dim):
        return {"discriminator_head": nn.Linear(feature_dim, 1),
                "generator": Generator(self.latent_dim, self.image_shape_[2], self._working_size(), self.generator_width)}

    def _discriminator(self):
        return Discriminator(self.networks_["backbone"], self.networks_["discriminator_head"])

    def _make_optimizer(self, params):
        optimizer = super()._make_optimizer(params)
        if isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)):
            for group in optimizer.param_groups:
                group["betas"] = (0.5, 0.999)  # DCGAN: beta1=0.9 made training oscillate
        return optimizer

    def _generate(self, n, generator):
        z = torch.randn(n, self.latent_dim, generator=generator, device=generator.device)
        return self.networks_["generator"](z)

    def _logits(self, x_unit):
        return self._discriminator()(self._standardize(x_unit))

    def _loss(self, x):
        fake = self._generate(x.shape[0], self._generator)
        loss_d, loss_g = adversarial_losses(self._discriminator(), self._standardize(x), self._standardize(fake))
        return loss_d + loss_g

    def sample(self, n_samples=1, random_state=None):
        """Draw images from the trained generator.

        Parameters
        ----------
        n_samples : int, default=1
            Number of images to draw.
        random_state : int, RandomState or None, default=None
            Seeds the latent codes.

        Returns
        -------
        ndarray of shape (n_samples, n_features_in_)
            Generated rows in the scale of the training input (read them with
            ``image_shape_``), float32.
        """
        check_is_fitted(self, "networks_")
        if not isinstance(n_samples, Integral) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer; got {n_samples!r}.")
        images = self._sample_unit(int(n_samples), random_state)
        h, w, c = self.image_shape_
        if images.shape[-2:] != (h, w):
            images = F.interpolate(images, size=(h, w), mode="area")
        low, high = self.scale_
        rows = (images * (high - low) + low).permute(0, 2, 3, 1).reshape(n_samples, -1)
        return rows[:, : self.n_features_in_].numpy().astype(np.float32)

    def _sample_unit(self, n, random_state):
        device = self._device()
        seed = int(check_random_state(random_state).randint(2**31 - 1))
        generator = torch.Generator(device=device).manual_seed(seed)
        self.networks_.to(device).eval()
        with torch.inference_mode():
            return torch.cat([self._generate(len(c), generator).float().cpu()
                              for c in torch.arange(n).split(self.batch_size)])

    _pretext_score_is_accuracy = True

    def pretext_score(self, X, random_state=0):
        """Discriminator accuracy on real ``X`` against as many fresh fakes (chance: 0.5).

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
            The fraction of real and fake images classified correctly.
        """
        X = self._check_input(X, reset=False)
        real = self._map_batches(X, self._logits) > 0
        fakes = self._sample_unit(len(X), random_state)
        fake = self._map_images(fakes, self._logits) > 0
        return float(np.mean(np.concatenate([real, ~fake])))
