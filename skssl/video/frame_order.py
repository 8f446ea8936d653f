"""Shuffle and Learn: is a tuple of three frames in temporal order?"""

from numbers import Integral

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils._param_validation import Interval
from torch import nn

from ..heads import mlp
from ._base import VideoSSL


class FrameOrderSSL(VideoSSL):
    """Temporal order verification (Shuffle and Learn).

    Follows Misra, Zitnick & Hebert (ECCV 2016): from a window of
    ``n_frames`` frames, chosen where the frames change most (its start drawn
    with probability proportional to the window's frame-difference energy,
    as the paper samples high-motion windows), four frames ``a < b < c < d``
    are drawn. The tuple ``(a, b, c)`` is in order; ``(b, a, d)`` and
    ``(d, a, b)`` are not. A shared backbone embeds each frame, keeping a
    coarse spatial layout (``grid``) as the paper's trunk keeps it up to
    fc7, the three features are concatenated and a binary classifier says
    "in order" or "shuffled". Every clip of a batch gives one ordered tuple
    and one shuffled tuple (either kind, at random), so the classes are
    balanced.

    Parameters
    ----------
    n_frames : int, default=8
        Window the four frames are drawn from (at ``frame_stride``).
    grid : int, default=4
        The order head sees each frame's last backbone feature map
        average-pooled to ``grid x grid`` cells, so it can compare *where*
        things are, as the paper's AlexNet trunk keeps spatial layout up to
        fc7; a shared per-frame layer ("fc7") reduces them before the three
        frames are concatenated. ``1`` is global pooling, which keeps no
        position. ``transform`` still returns globally pooled features.
    {video_parameters}
    {common_parameters}

    Attributes
    ----------
    {video_attributes}
    {common_attributes}

    Examples
    --------
    >>> from skssl import FrameOrderSSL
    >>> from skssl.datasets import make_moving_images
    >>> clips = make_moving_images(n_videos=64, n_frames=8, size=16, random_state=0).clips
    >>> Z = FrameOrderSSL(max_epochs=1, batch_size=32, random_state=0).fit_transform(clips)
    >>> Z.shape
    (64, 128)
    """

    _params = {"n_frames": 8, "grid": 4, "max_epochs": 20, "batch_size": 64}
    _parameter_constraints = {**VideoSSL._parameter_constraints,
                              "n_frames": [Interval(Integral, 4, None, closed="left")],
                              "grid": [Interval(Integral, 1, None, closed="left")]}
    _pretext_score_is_accuracy = True

    def _build_heads(self, feature_dim):
        return {"order_head": mlp(3 * feature_dim, feature_dim, 1)}

    def _build_networks(self):
        super()._build_networks()
        # The per-frame layer is sized by the backbone's feature map, which exists only now.
        grid_dim = self._grid_dim(self.networks_["backbone"], self.grid)
        width = self.networks_["order_head"][0].in_features // 3
        self.networks_["frame_head"] = nn.Sequential(
            nn.Linear(grid_dim, width, bias=False), nn.BatchNorm1d(width), nn.ReLU(inplace=True))

    def _tuples(self, clips):
        """An ordered and a shuffled tuple per clip: frames ``(2b, 3, c, h, w)`` and labels ``(2b,)``."""
        b, t = clips.shape[:2]
        with torch.no_grad():
            energy = (clips[:, 1:] - clips[:, :-1]).abs().mean(dim=(2, 3, 4))  # (b, t - 1)
            span = self._span()
            # Energy of each window: the differences inside it, at any start.
            windows = energy.unfold(1, span - 1, 1).sum(-1) + 1e-6
        window = self._frame_index(b, self.n_frames, start_weights=windows)
        pick = torch.rand(b, self.n_frames, generator=self._generator, device=clips.device).argsort(1)[:, :4]
        a, bb, c, d = window.gather(1, pick.sort(1).values).unbind(1)
        first = torch.rand(b, generator=self._generator, device=clips.device) < 0.5
        shuffled = torch.where(first[:, None], torch.stack([bb, a, d], 1), torch.stack([d, a, bb], 1))
        index = torch.cat([torch.stack([a, bb, c], 1), shuffled])
        labels = torch.cat([torch.ones(b, device=clips.device), torch.zeros(b, device=clips.device)])
        return self._take(clips.repeat(2, 1, 1, 1, 1), index), labels

    def _order_logits(self, triplets):
        z = self._encode_grid(triplets, self.grid)  # (2b, 3, d grid**2)
        z = self.networks_["frame_head"](z.flatten(0, 1)).unflatten(0, z.shape[:2])
        return self.networks_["order_head"](z.flatten(1)).squeeze(1)

    def _loss(self, x):
        triplets, labels = self._tuples(x)
        return F.binary_cross_entropy_with_logits(self._order_logits(triplets).float(), labels)

    def pretext_score(self, X):
        """Order-verification accuracy on clips ``X`` (chance: 0.5), with fixed seeded tuples.

        Parameters
        ----------
        X : array-like of clips
            Clips as ``fit`` takes them: ``(n, t, h, w)``, ``(n, t, h, w, c)``
            or ``(n, t*h*w*c)`` rows.

        Returns
        -------
        float
            The fraction of frame tuples whose order is judged correctly.
        """
        def correct(x):
            triplets, labels = self._tuples(x)
            return ((self._order_logits(triplets) > 0).float() == labels).float()

        return float(np.mean(self._score_batches(X, correct)))
