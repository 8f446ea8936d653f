"""Denoising autoencoder: reconstruct clean images from corrupted ones."""

from numbers import Real

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions

from ..augment import Augment
from ..base import BaseSSL
from ._decoder import feature_map_shape, make_decoder, reconstruction_error


def corrupt(x, noise, level, generator):
    """Gaussian noise of std ``level`` (in unit-range pixels), or masking noise
    that zeroes each pixel (all its channels) with probability ``level``."""
    if level == 0:
        return x
    if noise == "gaussian":
        return x + level * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    keep = torch.rand((x.shape[0], 1, *x.shape[2:]), generator=generator, device=x.device) >= level
    return x * keep.to(x.dtype)


class DenoisingAutoencoderSSL(BaseSSL):
    """Denoising autoencoder with the backbone as encoder.

    Follows Vincent, Larochelle, Bengio & Manzagol, "Extracting and Composing
    Robust Features with Denoising Autoencoders" (ICML 2008): each training
    image is corrupted (additive Gaussian noise, or the paper's masking noise
    that zeroes a random fraction of the pixels), encoded by the backbone,
    and an upsampling decoder reconstructs the clean image with a squared
    error on standardised pixels. ``noise_level=0`` is a plain autoencoder.
    ``transform`` returns pooled backbone features of stage ``stage`` of the
    clean image (no corruption at inference).

    Parameters
    ----------
    noise : {"gaussian", "masking"}, default="masking"
        Corruption applied during training.
    noise_level : float, default=0.3
        Standard deviation of the Gaussian noise on unit-range pixels, or the
        fraction of pixels masked (in [0, 1)).
    augment : skssl.augment.Augment or None, default=None
        Applied before corrupting; ``None`` is no augmentation.
    {common_parameters}

    Attributes
    ----------
    {common_attributes}

    Examples
    --------
    >>> from skssl.pretext.autoencoder import DenoisingAutoencoderSSL
    >>> from skssl.datasets import load_digits_images
    >>> X, y = load_digits_images(return_X_y=True)
    >>> Z = DenoisingAutoencoderSSL(max_epochs=1, random_state=0).fit_transform(X[:100])
    >>> Z.shape
    (100, 128)
    """

    _params = {"noise": "masking", "noise_level": 0.3, "augment": None, "max_epochs": 20, "lr": 2e-3}
    _parameter_constraints = {
        **BaseSSL._parameter_constraints,
        "noise": [StrOptions({"gaussian", "masking"})],
        "noise_level": [Interval(Real, 0, None, closed="left")],
        "augment": [Augment, None],
    }

    def _build_networks(self):
        if self.noise == "masking" and self.noise_level >= 1:
            raise ValueError(f"noise_level={self.noise_level} masks every pixel; with noise='masking' it must be in [0, 1).")
        super()._build_networks()
        size = self._working_size()
        channels, map_size = feature_map_shape(self.networks_["backbone"], self.image_shape_[2], size)
        self.networks_["decoder"] = make_decoder(channels, self.image_shape_[2], map_size, size)

    def _reconstruct(self, x):
        """Standardised reconstruction of (possibly corrupted) unit-range images."""
        return self.networks_["decoder"](self.backbone_.feature_maps(self._standardize(x), -1)).float()

    def _loss(self, x):
        clean = self._augment(x)
        noisy = corrupt(clean, self.noise, self.noise_level, self._generator)
        return reconstruction_error(self._reconstruct(noisy), self._standardize(clean).float()).mean()

    def pretext_score(self, X):
        """Held-out reconstruction error of clean images: per-pixel MSE in standardised units.

        Lower is better; predicting the channel means scores about 1.

        Parameters
        ----------
        X : array-like of images or a torch Dataset
            Images as ``fit`` takes them (held-out images measure generalisation).

        Returns
        -------
        float
            The mean squared reconstruction error.
        """
        X = self._check_input(X, reset=False)
        errors = self._map_batches(X, lambda x: reconstruction_error(self._reconstruct(x), self._standardize(x).float()))
        return float(np.mean(errors))

    def reconstruct(self, X):
        """Reconstruct ``X`` from its noised version.

        Parameters
        ----------
        X : array-like of images or a torch Dataset
            Images as ``fit`` takes them.

        Returns
        -------
        ndarray of shape (n, h, w, c)
            Unit-range floats at the working size.
        """
        X = self._check_input(X, reset=False)
        std = torch.as_tensor(self.channel_std_).view(1, -1, 1, 1)
        mean = torch.as_tensor(self.channel_mean_).view(1, -1, 1, 1)
        rec = self._map_batches(X, self._reconstruct)
        return (torch.from_numpy(rec) * std + mean).permute(0, 2, 3, 1).numpy()
