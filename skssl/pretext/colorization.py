"""Colorization: predict the ab colour channels of an image from its lightness L."""

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..augment import Augment
from ..base import BaseSSL
from ._decoder import build_encoder, feature_map_shape, input_stats, make_decoder, reconstruction_error

# sRGB (D65) -> CIE XYZ, and the D65 white point.
_RGB_TO_XYZ = ((0.412453, 0.357580, 0.180423), (0.212671, 0.715160, 0.072169), (0.019334, 0.119193, 0.950227))
_XYZ_TO_RGB = tuple(map(tuple, np.linalg.inv(np.array(_RGB_TO_XYZ)).tolist()))
_WHITE = (0.950456, 1.0, 1.088754)
_DELTA = 6 / 29
# ab rarely leaves [-110, 110]; dividing by it keeps regression targets near unit scale.
AB_SCALE = 110.0


def _mix(matrix, x):
    """Apply a 3x3 colour matrix to (B, 3, H, W) elementwise (autocast leaves it in fp32)."""
    c = x.unbind(1)
    return torch.stack([row[0] * c[0] + row[1] * c[1] + row[2] * c[2] for row in matrix], 1)


def rgb_to_lab(rgb):
    """sRGB in [0, 1], (B, 3, H, W) -> CIE Lab (L in [0, 100], a and b roughly in [-110, 110])."""
    rgb = rgb.float().clamp(0, 1)
    linear = torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055).clamp_min(1e-12) ** 2.4)
    xyz = _mix(_RGB_TO_XYZ, linear) / rgb.new_tensor(_WHITE).view(1, 3, 1, 1)
    f = torch.where(xyz > _DELTA**3, xyz.clamp_min(1e-12) ** (1 / 3), xyz / (3 * _DELTA**2) + 4 / 29)
    fx, fy, fz = f.unbind(1)
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], 1)


def lab_to_rgb(lab):
    """CIE Lab, (B, 3, H, W) -> sRGB clipped to [0, 1]."""
    lab = lab.float()
    fy = (lab[:, 0] + 16) / 116
    f = torch.stack([fy + lab[:, 1] / 500, fy, fy - lab[:, 2] / 200], 1)
    xyz = torch.where(f > _DELTA, f**3, 3 * _DELTA**2 * (f - 4 / 29)) * lab.new_tensor(_WHITE).view(1, 3, 1, 1)
    linear = _mix(_XYZ_TO_RGB, xyz).clamp_min(0)
    rgb = torch.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear.clamp_min(1e-12) ** (1 / 2.4) - 0.055)
    return rgb.clamp(0, 1)


def colour_image_shape(image_shape, n_features, ndim, owner, inferred=True):
    """Check that inputs are RGB; flat tabular rows are padded into the smallest RGB square.

    A flat row whose length is a square stays a one-channel image and is
    refused, so flattened grayscale images are never misread as colour. A
    one-channel ``image_shape`` the user gave (``inferred=False``) is refused
    too, never replaced by another shape.
    """
    h, w, c = image_shape
    if inferred and ndim == 2 and h * w * c != n_features and c == 1:
        side = math.isqrt(max(math.ceil(n_features / 3) - 1, 0)) + 1
        return (side, side, 3)
    if c != 3:
        raise ValueError(f"{owner} needs colour images (c=3); X has {c} channel{'s' if c != 1 else ''}.")
    return image_shape


class ColorizationSSL(BaseSSL):
    """Self-supervised colorization: predict ab from L in CIE Lab.

    Follows Zhang, Isola & Efros, "Colorful Image Colorization" (ECCV 2016):
    the backbone sees only the lightness channel L (so it is built with one
    input channel) and a small upsampling decoder predicts the two colour
    channels ab at every pixel. The paper classifies ab into 313 quantised
    bins with class rebalancing, to avoid the desaturated averages of a
    regression. Here ab is regressed with a per-pixel squared error instead:
    on small data sets most of the 313 bins are empty and the rebalancing
    prior estimated from them is noise, a 313-way output per pixel costs
    about 150 times the output channels, and the goal is features rather than
    vivid colours; the squared error also makes :meth:`pretext_score` a
    plain held-out ab error. ``transform`` returns pooled backbone features
    of stage ``stage`` computed from L.

    Input must be RGB: one-channel images raise a ``ValueError`` at fit.
    Flat rows whose length is neither a square nor three times a square
    (tabular data) are zero-padded into the smallest RGB square.

    Parameters
    ----------
    augment : skssl.augment.Augment or None, default=None
        Augmentation applied to the RGB images before the Lab split; ``None``
        is a mild random crop (scale 0.6-1) and horizontal flip (no colour
        jitter, which would move the targets).
    {common_parameters}

    Attributes
    ----------
    {common_attributes}
        Here they describe L/100, the backbone's only input channel.

    Examples
    --------
    >>> import numpy as np
    >>> from skssl.pretext.colorization import ColorizationSSL
    >>> X = np.random.default_rng(0).random((64, 8, 8, 3))
    >>> est = ColorizationSSL(max_epochs=1, random_state=0).fit(X)
    >>> est.transform(X).shape
    (64, 128)
    """

    _params = {"augment": None, "max_epochs": 20, "lr": 2e-3}
    _parameter_constraints = {**BaseSSL._parameter_constraints, "augment": [Augment, None]}

    def _default_augment(self, image_size, channels):
        return Augment(crop_scale=(0.6, 1.0), flip_p=0.5, jitter_p=0.0, grayscale_p=0.0)

    def _check_input(self, X, reset):
        ndim = np.asarray(X).ndim if isinstance(X, (list, tuple)) else getattr(X, "ndim", 2)
        X = super()._check_input(X, reset)
        if reset:
            self.image_shape_ = colour_image_shape(self.image_shape_, self.n_features_in_, ndim, type(self).__name__,
                                                   inferred=self.image_shape is None)
            X.sample_shape = self.image_shape_  # rows are read at the padded shape
        return X

    def _initialise(self, images):
        self.channel_mean_, self.channel_std_ = input_stats(images, lambda x: rgb_to_lab(x)[:, :1] / 100)
        self._build_networks()

    def _build_networks(self):
        size = self._working_size()
        backbone, self.embedding_dim_ = build_encoder(self.backbone, 1, size, self.stage)
        channels, map_size = feature_map_shape(backbone, 1, size)
        self.networks_ = torch.nn.ModuleDict({"backbone": backbone, "decoder": make_decoder(channels, 2, map_size, size)})

    def _standardize(self, x):
        # The backbone's input is the standardised L channel of the RGB batch.
        return super()._standardize(rgb_to_lab(x)[:, :1] / 100)

    def _predict_ab(self, x):
        """Predicted and true ab (divided by ``AB_SCALE``) of unit-range RGB images."""
        lab = rgb_to_lab(x)
        l_std = BaseSSL._standardize(self, lab[:, :1] / 100)
        pred = self.networks_["decoder"](self.backbone_.feature_maps(l_std, -1))
        return pred.float(), lab[:, 1:] / AB_SCALE

    def _loss(self, x):
        pred, target = self._predict_ab(self._augment(x))
        return F.mse_loss(pred, target)

    def pretext_score(self, X):
        """Held-out colour error: mean squared ab error per pixel, in Lab units (lower is better).

        Parameters
        ----------
        X : array-like of images or a torch Dataset
            Images as ``fit`` takes them (held-out images measure generalisation).

        Returns
        -------
        float
            The mean squared error of the predicted ab channels.
        """
        X = self._check_input(X, reset=False)
        errors = self._map_batches(X, lambda x: reconstruction_error(*self._predict_ab(x)))
        return float(np.mean(errors)) * AB_SCALE**2

    def colorize(self, X):
        """Recolour images from their lightness.

        Parameters
        ----------
        X : array-like of images or a torch Dataset
            Images as ``fit`` takes them.

        Returns
        -------
        ndarray of shape (n, h, w, 3)
            RGB floats in [0, 1] at the working size.
        """
        X = self._check_input(X, reset=False)

        def recolour(x):
            pred, _ = self._predict_ab(x)
            return lab_to_rgb(torch.cat([rgb_to_lab(x)[:, :1], pred * AB_SCALE], 1)).permute(0, 2, 3, 1)

        return self._map_batches(X, recolour)
