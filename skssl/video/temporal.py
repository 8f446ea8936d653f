"""Learning from time alone: nearby frames as positives, and which segment a frame comes from."""

from numbers import Integral, Real

import torch
import torch.nn.functional as F
from sklearn.utils._param_validation import Interval
from torch import nn

from ..augment import Augment
from ..heads import mlp
from ..losses import fp32_loss, nt_xent
from ._base import VideoSSL


class TemporalContrastiveSSL(VideoSSL):
    """Temporal contrastive learning: frames close in time are two views of one thing.

    As in Orhan, Gupta & Lake (NeurIPS 2020, the temporal variant of their
    head-camera study): two frames of one video at most ``max_offset`` steps
    (of ``frame_stride`` frames) apart are a positive pair; the frames of the
    other videos in the batch (gathered over torchrun processes, as SimCLR's
    negatives) are the negatives of SimCLR's NT-Xent loss on a projection
    head. Time, not augmentation, supplies the views; ``augment`` can add
    augmentation on top.

    Parameters
    ----------
    max_offset : int, default=3
        Largest distance between the two frames of a positive pair.
    temperature : float, default=0.1
        Softmax temperature of NT-Xent.
    projection_dim : int, default=128
        Output width of the projection head.
    augment : skssl.augment.Augment or None, default=None
        Applied to every frame independently; ``None``: no augmentation.
    {video_parameters}
    {common_parameters}

    Attributes
    ----------
    {video_attributes}
    {common_attributes}

    Examples
    --------
    >>> from skssl import TemporalContrastiveSSL
    >>> from skssl.datasets import make_moving_images
    >>> clips = make_moving_images(n_videos=64, n_frames=8, size=16, random_state=0).clips
    >>> TemporalContrastiveSSL(max_epochs=1, batch_size=32, random_state=0).fit_transform(clips).shape
    (64, 128)
    """

    _params = {"max_offset": 3, "temperature": 0.1, "projection_dim": 128, "augment": None,
               "max_epochs": 20, "batch_size": 128}
    _parameter_constraints = {
        **VideoSSL._parameter_constraints,
        "max_offset": [Interval(Integral, 1, None, closed="left")],
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "projection_dim": [Interval(Integral, 1, None, closed="left")],
        "augment": [Augment, None],
    }

    def _span(self):
        return self.max_offset * self.frame_stride + 1

    def _span_reason(self):
        return f"max_offset={self.max_offset}, frame_stride={self.frame_stride}"

    def _build_heads(self, feature_dim):
        return {"projector": mlp(feature_dim, feature_dim, self.projection_dim)}

    def _loss(self, x):
        b = x.shape[0]
        window = self._frame_index(b, self.max_offset + 1)
        offset = torch.randint(1, self.max_offset + 1, (b,), generator=self._generator, device=x.device)
        pair = torch.stack([window[:, 0], window.gather(1, offset[:, None])[:, 0]], 1)
        # Either frame may come first: the pair carries no arrow of time.
        flip = torch.rand(b, generator=self._generator, device=x.device) < 0.5
        pair = torch.where(flip[:, None], pair.flip(1), pair)
        frames = self._take(x, pair).transpose(0, 1).flatten(0, 1)  # first frames, then second frames
        if self.augment is not None:
            frames = self._augment(frames)
        z1, z2 = self.networks_["projector"](self._encode(frames)).chunk(2)
        return nt_xent(self._gather(z1), self._gather(z2), self.temperature)


class TemporalClassificationSSL(VideoSSL):
    """Temporal classification: which stretch of which video is this frame from.

    Orhan, Gupta & Lake (NeurIPS 2020) cut their long head-camera recording
    into short segments and trained the network to classify each frame's
    segment. Here every training video is cut into ``n_segments`` equal
    segments, and each (video, segment) is one class: a frame must be told
    apart from the other videos (what is there) and from the other moments
    of its own video (where things are now). Each step classifies
    ``n_frames`` random frames of every clip.

    Parameters
    ----------
    n_segments : int, default=4
        Equal segments each training video is cut into; each is one class.
    n_frames : int, default=4
        Frames per clip and step (drawn anywhere in the clip).
    {video_parameters}
    {common_parameters}

    Attributes
    ----------
    {video_attributes}
    n_videos_ : int
        Number of training videos (the head has ``n_videos_ * n_segments`` classes).
    {common_attributes}

    Examples
    --------
    >>> from skssl import TemporalClassificationSSL
    >>> from skssl.datasets import make_moving_images
    >>> clips = make_moving_images(n_videos=64, n_frames=8, size=16, random_state=0).clips
    >>> TemporalClassificationSSL(max_epochs=1, batch_size=32, random_state=0).fit_transform(clips).shape
    (64, 128)
    """

    _params = {"n_segments": 4, "n_frames": 4, "max_epochs": 20, "batch_size": 64}
    _parameter_constraints = {
        **VideoSSL._parameter_constraints,
        "n_segments": [Interval(Integral, 2, None, closed="left")],
        "n_frames": [Interval(Integral, 1, None, closed="left")],
    }

    def _span(self):
        return self.n_segments

    def _span_reason(self):
        return f"one frame per segment, n_segments={self.n_segments}"

    def _build_heads(self, feature_dim):
        if hasattr(self, "_n_train"):  # skssl.load rebuilds from the fitted attribute
            self.n_videos_ = int(self._n_train)
        return {"segment_head": nn.Linear(feature_dim, self.n_videos_ * self.n_segments)}

    def _loss(self, x):
        b, t = x.shape[:2]
        when = torch.randint(0, t, (b, self.n_frames), generator=self._generator, device=x.device)
        labels = self._batch_index[:, None] * self.n_segments + when * self.n_segments // t
        z = self._encode_frames(self._take(x, when)).flatten(0, 1)
        return _cross_entropy(self.networks_["segment_head"](z), labels.flatten())


@fp32_loss
def _cross_entropy(logits, labels):
    return F.cross_entropy(logits, labels)
