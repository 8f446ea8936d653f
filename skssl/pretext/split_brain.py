"""Split-brain autoencoder: two sub-networks predict each other's channel group."""

from numbers import Integral

import numpy as np
import torch
from sklearn.utils._param_validation import Interval

from ..augment import Augment
from ..backbones import resolve_backbone_name
from ..base import BaseSSL
from ._decoder import build_encoder, feature_map_shape, input_stats, make_decoder, reconstruction_error
from .colorization import AB_SCALE, rgb_to_lab


class SplitBrainSSL(BaseSSL):
    """Split-brain autoencoder: cross-channel prediction by two encoders.

    Follows Zhang, Isola & Efros, "Split-Brain Autoencoders" (CVPR 2017): the
    input channels are split into two groups; encoder A sees group 1 and its
    decoder predicts group 2, encoder B sees group 2 and predicts group 1.
    Both are trained with per-pixel squared errors on standardised values
    (the paper's regression variant; its quantised classification needs far
    more data than this package targets). ``transform`` concatenates the
    pooled stage-``stage`` features of both encoders, as the paper does.

    The split: with ``split=None``, RGB images are split into Lab lightness L
    and colour ab (the paper's main setting); other multi-channel images
    into the first ``c // 2`` channels and the rest. An integer ``split=k``
    splits the raw channels into the first ``k`` and the rest. One-channel
    images have no channels to split, so they are split spatially: A sees
    the left half (top half for tall images) and predicts the other, B the
    reverse. That is an extension of the paper, closer to inpainting.

    Parameters
    ----------
    split : int or None, default=None
        Number of raw channels in group 1 (``1 <= split < c``); ``None`` as above.
    augment : skssl.augment.Augment or None, default=None
        ``None`` is a mild random crop (scale 0.6-1) and horizontal flip.
    {common_parameters}

    Attributes
    ----------
    {common_attributes}
        Here they describe the split representation (L/100, a/110, b/110
        for the Lab split; the raw channels otherwise).
    split_ : str
        ``"lab"``, ``"channels"`` or ``"spatial"``.
    split_channels_ : int
        Channels of the split representation in group 1.

    Examples
    --------
    >>> from skssl.pretext.split_brain import SplitBrainSSL
    >>> from skssl.datasets import load_digits_images
    >>> X, y = load_digits_images(return_X_y=True)
    >>> Z = SplitBrainSSL(max_epochs=1, random_state=0).fit_transform(X[:100])
    >>> Z.shape
    (100, 256)
    """

    _params = {"split": None, "augment": None, "max_epochs": 20, "lr": 2e-3}
    _parameter_constraints = {
        **BaseSSL._parameter_constraints,
        "split": [Interval(Integral, 1, None, closed="left"), None],
        "augment": [Augment, None],
    }

    def _default_augment(self, image_size, channels):
        return Augment(crop_scale=(0.6, 1.0), flip_p=0.5, jitter_p=0.0, grayscale_p=0.0)

    def _represent(self, x):
        """Unit-range images -> the representation that is split (Lab scaled, or x itself)."""
        if self.split_ == "lab":
            lab = rgb_to_lab(x)
            return torch.cat([lab[:, :1] / 100, lab[:, 1:] / AB_SCALE], 1)
        return x

    def _groups(self, x):
        """Standardised (group 1, group 2) of unit-range images."""
        z = BaseSSL._standardize(self, self._represent(x))
        if self.split_ == "spatial":
            h, w = z.shape[-2:]
            return (z[..., : w // 2], z[..., w // 2:]) if w >= h else (z[..., : h // 2, :], z[..., h // 2:, :])
        return z[:, : self.split_channels_], z[:, self.split_channels_:]

    def _initialise(self, images):
        c = self.image_shape_[2]
        if self.split is not None and not 1 <= self.split < c:
            raise ValueError(f"split={self.split} but X has {c} channel(s); split must be between 1 and {c - 1}.")
        self.split_ = "spatial" if c == 1 else "lab" if c == 3 and self.split is None else "channels"
        self.split_channels_ = 1 if self.split_ == "lab" else (self.split or c // 2)
        self.channel_mean_, self.channel_std_ = input_stats(images, self._represent)
        self._build_networks()

    def _build_networks(self):
        c = self.image_shape_[2]
        size = self._working_size()
        probe = self._groups(torch.zeros(1, c, *size))
        spec = self.backbone
        spec = resolve_backbone_name(spec, size)  # decided on the whole image, not on a half
        nets, dims = {}, []
        for name, src, dst in (("a", probe[0], probe[1]), ("b", probe[1], probe[0])):
            try:
                encoder, dim = build_encoder(spec, src.shape[1], tuple(src.shape[-2:]), self.stage)
            except RuntimeError as exc:
                raise ValueError(f"SplitBrainSSL's encoders see {src.shape[1]}-channel inputs; the backbone failed on them: {exc}") from None
            channels, map_size = feature_map_shape(encoder, src.shape[1], tuple(src.shape[-2:]))
            nets["backbone" if name == "a" else "backbone_b"] = encoder
            nets[f"decoder_{name}"] = make_decoder(channels, dst.shape[1], map_size, tuple(dst.shape[-2:]))
            dims.append(dim)
        self.embedding_dim_ = sum(dims)
        self.networks_ = torch.nn.ModuleDict(nets)

    def _cross_errors(self, x):
        """Per-image squared errors of A (group 1 -> 2) and B (group 2 -> 1), shape (n, 2)."""
        g1, g2 = self._groups(x)
        nets = self.networks_
        pred2 = nets["decoder_a"](nets["backbone"].feature_maps(g1, -1)).float()
        pred1 = nets["decoder_b"](nets["backbone_b"].feature_maps(g2, -1)).float()
        return torch.stack([reconstruction_error(pred2, g2), reconstruction_error(pred1, g1)], 1)

    def _loss(self, x):
        return self._cross_errors(self._augment(x)).mean(0).sum()

    def _encode(self, x, stage=-1):
        g1, g2 = self._groups(x)
        return torch.cat([self.networks_["backbone"](g1, stage), self.networks_["backbone_b"](g2, stage)], 1)

    def pretext_score(self, X):
        """Held-out cross-prediction errors ``(error of A, error of B)`` in standardised units (lower is better).

        Predicting the training mean scores about 1 for each.

        Parameters
        ----------
        X : array-like of images or a torch Dataset
            Images as ``fit`` takes them (held-out images measure generalisation).

        Returns
        -------
        tuple of float
            The errors of the two sub-networks ``(A, B)``.
        """
        X = self._check_input(X, reset=False)
        errors = self._map_batches(X, self._cross_errors)
        return tuple(float(e) for e in np.mean(errors, axis=0))
