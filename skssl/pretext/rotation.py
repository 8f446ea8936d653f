"""RotNet: predict which of four rotations was applied to an image."""

import numpy as np
import torch
import torch.nn.functional as F

from ..augment import Augment
from ..base import BaseSSL
from ..heads import mlp
from ._random_targets import pretext_targets, random_target_heads


def rotate_all(x):
    """All four rotations (0, 90, 180, 270 degrees) of a batch, and their labels.

    Non-square images are zero-padded to a square first so the rotated copies
    stack into one batch.
    """
    h, w = x.shape[-2:]
    if h != w:
        side = max(h, w)
        x = F.pad(x, (0, side - w, 0, side - h))
    rotated = torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(4)])
    labels = torch.arange(4, device=x.device).repeat_interleave(x.shape[0])
    return rotated, labels


class RotationSSL(BaseSSL):
    """Self-supervised rotation prediction (RotNet).

    Follows Gidaris, Singh & Komodakis, "Unsupervised Representation Learning
    by Predicting Image Rotations" (ICLR 2018): every image of a batch is shown
    in all four rotations at once and the network classifies the angle. The
    paper found that features of an intermediate block transfer better than
    the last one, which is why ``stage`` chooses the backbone stage that
    ``transform`` returns (the rotation head itself always reads the last).

    Parameters
    ----------
    augment : skssl.augment.Augment or None, default=None
        Augmentation applied before rotating; ``None`` uses RotNet's mild
        random crop (scale 0.6-1) and horizontal flip.
    shuffle_pretext_targets : bool, default=False
        Train on random labels instead of the rotations: each training
        image gets its own fixed random permutation of the four labels
        (seeded, the same in every epoch), so the network sees the same
        rotated images but can only fit the targets by memorising them. The
        random-label baseline of Wallace & Hariharan (2020), see
        :func:`skssl.diagnostics.random_label_baseline`.
    {common_parameters}

    Attributes
    ----------
    {common_attributes}

    Examples
    --------
    >>> from skssl import RotationSSL
    >>> from skssl.datasets import load_digits_images
    >>> X, y = load_digits_images(return_X_y=True)
    >>> Z = RotationSSL(max_epochs=1, random_state=0).fit_transform(X[:100])
    >>> Z.shape
    (100, 128)
    """

    _params = {"augment": None, "shuffle_pretext_targets": False, "max_epochs": 15, "lr": 2e-3}
    _parameter_constraints = {**BaseSSL._parameter_constraints, "augment": [Augment, None],
                              "shuffle_pretext_targets": ["boolean"]}
    _pretext_score_is_accuracy = True

    def _default_augment(self, image_size, channels):
        return Augment(crop_scale=(0.6, 1.0), flip_p=0.5, jitter_p=0.0, grayscale_p=0.0)

    def _build_heads(self, feature_dim):
        return {"head": mlp(feature_dim, feature_dim, 4), **random_target_heads(self, 4)}

    def _loss(self, x):
        rotated, labels = rotate_all(self._augment(x))
        targets = pretext_targets(self, labels, 4, lambda index: index.repeat(4))
        return F.cross_entropy(self.networks_["head"](self._encode(rotated)), targets)

    def pretext_score(self, X):
        """Rotation accuracy on ``X`` over all four rotations (chance: 0.25).

        Parameters
        ----------
        X : array-like of images or a torch Dataset
            Images as ``fit`` takes them (held-out images measure generalisation).

        Returns
        -------
        float
            The fraction of rotations predicted correctly.
        """
        X = self._check_input(X, reset=False)

        def correct(x):
            rotated, labels = rotate_all(x)
            return (self.networks_["head"](self._encode(rotated)).argmax(1) == labels).float()

        return float(np.mean(self._map_batches(X, correct)))
