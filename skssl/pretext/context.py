"""Context prediction: where does a tile lie relative to the centre tile?"""

from numbers import Real

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils._param_validation import Interval

from .._tiles import grid_tiles
from ..augment import Augment
from ..base import BaseSSL
from ..heads import mlp
from ._random_targets import pretext_targets, random_target_heads

# Row-major indices of the 8 neighbours of the centre cell of a 3x3 grid;
# class k is the neighbour at NEIGHBOURS[k] (0: top-left ... 7: bottom-right).
CENTRE = 4
NEIGHBOURS = (0, 1, 2, 3, 5, 6, 7, 8)


def position_pairs(tile_features):
    """All (centre, neighbour) feature pairs of a 3x3 grid and their position labels.

    ``(B, 9, d)`` -> ``(8B, 2d)`` pairs ordered image-major, and ``(8B,)`` labels.
    """
    b, _, d = tile_features.shape
    centre = tile_features[:, CENTRE:CENTRE + 1].expand(b, 8, d)
    neighbours = tile_features[:, list(NEIGHBOURS)]
    pairs = torch.cat([centre, neighbours], dim=2).reshape(b * 8, 2 * d)
    labels = torch.arange(8, device=tile_features.device).repeat(b)
    return pairs, labels


class RelativePositionSSL(BaseSSL):
    """Self-supervised context prediction (relative position of two tiles).

    Follows Doersch, Gupta & Efros, "Unsupervised Visual Representation
    Learning by Context Prediction" (ICCV 2015): a 3x3 grid of tiles is cut
    with a gap between tiles and a random jitter of each tile in its cell; a
    siamese network (the backbone, shared weights) embeds the centre tile and
    a neighbour, and an MLP on the two concatenated features classifies which
    of the 8 positions the neighbour came from. The paper draws one neighbour
    per image; here all 8 pairs of each image are classified from one pass of
    its 9 tiles, the same objective in expectation with 8x the labels per
    forward pass. ``transform`` returns the backbone's features of the whole
    image (upsampled to at least 24 pixels so that tiles keep some
    structure).

    Parameters
    ----------
    gap : float, default=0.25
        Fraction of each cell left between tiles (the rest is jitter room);
        larger gaps stop the network from matching edges across tiles.
    augment : skssl.augment.Augment or None, default=None
        Augmentation applied before tiling; ``None`` uses a mild random crop
        (scale 0.6-1). No flips: they would change the answer.
    shuffle_pretext_targets : bool, default=False
        Train on random labels instead of the positions: each training image
        gets its own fixed random permutation of the eight position labels
        (seeded, the same in every epoch), so the network sees the same tile
        pairs but can only fit the targets by memorising them. The
        random-label baseline of Wallace & Hariharan (2020), see
        :func:`skssl.diagnostics.random_label_baseline`.
    {common_parameters}

    Attributes
    ----------
    {common_attributes}

    Examples
    --------
    >>> from skssl.pretext.context import RelativePositionSSL
    >>> from skssl.datasets import load_digits_images
    >>> X, y = load_digits_images(return_X_y=True)
    >>> Z = RelativePositionSSL(max_epochs=1, random_state=0).fit_transform(X[:100])
    >>> Z.shape
    (100, 128)
    """

    _params = {"gap": 0.25, "augment": None, "shuffle_pretext_targets": False, "max_epochs": 30, "lr": 2e-3}
    _parameter_constraints = {
        **BaseSSL._parameter_constraints,
        "gap": [Interval(Real, 0, 1, closed="left")],
        "augment": [Augment, None],
        "shuffle_pretext_targets": ["boolean"],
    }
    _min_image_size = 24
    _pretext_score_is_accuracy = True

    def _default_augment(self, image_size, channels):
        return Augment(crop_scale=(0.6, 1.0), flip_p=0.0, jitter_p=0.0, grayscale_p=0.0)

    def _build_heads(self, feature_dim):
        return {"head": mlp(2 * feature_dim, feature_dim, 8), **random_target_heads(self, 8)}

    def _logits(self, tiles):
        features = self._encode(tiles.flatten(0, 1)).view(*tiles.shape[:2], -1)
        pairs, labels = position_pairs(features)
        return self.networks_["head"](pairs), labels

    def _loss(self, x):
        tiles = grid_tiles(self._augment(x), 3, self.gap, jitter=True, generator=self._generator)
        logits, labels = self._logits(tiles)
        targets = pretext_targets(self, labels, 8, lambda index: index.repeat_interleave(8))
        return F.cross_entropy(logits, targets)

    def pretext_score(self, X):
        """Accuracy over the 8 neighbours of every image of ``X``, tiles centred (chance: 0.125).

        Parameters
        ----------
        X : array-like of images or a torch Dataset
            Images as ``fit`` takes them (held-out images measure generalisation).

        Returns
        -------
        float
            The fraction of relative positions predicted correctly.
        """
        X = self._check_input(X, reset=False)

        def correct(x):
            logits, labels = self._logits(grid_tiles(x, 3, self.gap, jitter=False))
            return (logits.argmax(1) == labels).float()

        return float(np.mean(self._map_batches(X, correct)))
