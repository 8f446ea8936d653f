"""What every video method shares: clip input, frame sampling on the device, pooling over time."""

from numbers import Integral

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from .. import _distributed
from .._images import SampleLayout
from ..base import BaseSSL

VIDEO_DOC = """frame_stride : int, default=1
        Step between the frames a method samples (2 skips every other frame).
    pooling : {"mean", "mean+diff"}, default="mean"
        How ``transform`` pools frame embeddings into one per video: their
        mean, or the mean concatenated with the mean change between
        consecutive frames, which keeps the order of events (and doubles
        ``embedding_dim_``).
    video_shape : tuple (t, h, w) or (t, h, w, c), default=None
        How to read rows of 2-D input. ``None`` reads a row as the frames a
        method needs, each frame read as an image row would be (see
        ``image_shape``; ``image_shape`` itself applies to image methods only)."""

VIDEO_ATTRIBUTES = """video_shape_ : tuple (t, h, w, c)
        Shape the input clips are read as (``image_shape_`` is one frame's).
    frame_dim_ : int
        Width of one frame's embedding (what ``transform_frames`` returns)."""


class VideoSSL(BaseSSL):
    """Base of the video methods: clips in, one embedding per video out; not used directly.

    Clips are stored as ``(n, t, c, h, w)``; a method's ``_loss`` receives a
    batch of whole clips on the device and picks its frames with
    :meth:`_frame_index` (from the fit's seeded generator, so every epoch sees
    other frames). Frames go through the backbone as a batch of images
    (:meth:`_encode_frames`).
    """

    _params = {"frame_stride": 1, "pooling": "mean", "video_shape": None}
    _doc_sections = {"video_parameters": VIDEO_DOC, "video_attributes": VIDEO_ATTRIBUTES}
    _parameter_constraints = {
        **BaseSSL._parameter_constraints,
        "frame_stride": [Interval(Integral, 1, None, closed="left")],
        "pooling": [StrOptions({"mean", "mean+diff"})],
        "video_shape": [tuple, list, None],
    }

    # ----------------------------------------------------------- the method's needs
    def _span(self):
        """Frames a clip must have for the method (``n_frames`` at ``frame_stride``)."""
        return (self.n_frames - 1) * self.frame_stride + 1

    def _span_reason(self):
        return f"n_frames={self.n_frames}, frame_stride={self.frame_stride}"

    # ------------------------------------------------------------------- input
    # BaseSSL reads every input; a clip is an image with a time axis in front.
    def _check_input_params(self):
        if self.image_shape is not None:
            raise ValueError(f"{type(self).__name__} reads clips: set video_shape=(t, h, w[, c]), not image_shape="
                             f"{self.image_shape!r} (which applies to image methods).")

    def _sample_layout(self):
        """A clip of at least the frames the method samples, its rows read with ``video_shape``."""
        return SampleLayout(type(self).__name__, self.video_shape, frames=(self._span(), self._span_reason()),
                            image_size=self._image_size())

    # ------------------------------------------------------------------ frames
    def _frame_index(self, n_clips, n_frames, span=None, start_weights=None):
        """Indices ``(n_clips, n_frames)`` of ``n_frames`` frames ``frame_stride`` apart at a random start.

        ``span``: length of the clips sampled from (default: the stored clips);
        ``start_weights`` ``(n_clips, n_starts)`` draws the start with these
        weights instead of uniformly.
        """
        t = self.video_shape_[0] if span is None else span
        n_starts = t - (n_frames - 1) * self.frame_stride
        device = self._generator.device
        if start_weights is None:
            start = torch.randint(0, n_starts, (n_clips, 1), generator=self._generator, device=device)
        else:
            start = torch.multinomial(start_weights, 1, generator=self._generator)
        return start + torch.arange(n_frames, device=device) * self.frame_stride

    @staticmethod
    def _take(clips, index):
        """Frames ``index`` ``(b, k)`` of every clip: ``(b, k, c, h, w)``."""
        return clips[torch.arange(clips.shape[0], device=clips.device)[:, None], index]

    def _encode_frames(self, clips, stage=-1):
        """Backbone features of every frame of ``(b, t, c, h, w)`` clips: ``(b, t, d)``."""
        frames = clips.flatten(0, 1)
        if frames.device.type == "cuda":
            frames = frames.contiguous(memory_format=torch.channels_last)
        return self._encode(frames, stage).unflatten(0, clips.shape[:2])

    def _encode_grid(self, clips, grid):
        """Every frame's last feature map average-pooled to ``grid x grid`` cells and flattened: ``(b, t, d)``.

        Global pooling keeps what is in a frame but not where; a head that
        must compare positions (frame order on moving objects) reads this
        instead. Tokens ``(n, l, d)`` (a ViT's) are pooled in their raster
        order into ``grid**2`` runs (a leading class token joins the first);
        a backbone that gives vectors has no layout to keep and gives them.
        """
        frames = clips.flatten(0, 1)
        if frames.device.type == "cuda":
            frames = frames.contiguous(memory_format=torch.channels_last)
        maps = self.backbone_.feature_maps(self._standardize(frames), -1)
        if maps.ndim == 4:
            maps = F.adaptive_avg_pool2d(maps, grid)
        elif maps.ndim == 3:
            maps = F.adaptive_avg_pool1d(maps.transpose(1, 2), grid * grid)
        return maps.flatten(1).unflatten(0, clips.shape[:2])

    def _grid_dim(self, backbone, grid):
        """Width of one frame's :meth:`_encode_grid` features, from a dummy pass through ``backbone``."""
        was_training = backbone.training
        backbone.eval()
        c, (h, w) = self.image_shape_[2], self._working_size()
        with torch.no_grad():
            maps = backbone.feature_maps(torch.zeros(2, c, h, w), -1)
        backbone.train(was_training)
        cells = grid * grid if maps.ndim in (3, 4) else 1
        return int(maps.shape[-1] if maps.ndim == 3 else maps.shape[1]) * cells

    def _pool(self, z):
        mean = z.mean(1)
        if self.pooling == "mean":
            return mean
        diff = (z[:, 1:] - z[:, :-1]).mean(1) if z.shape[1] > 1 else torch.zeros_like(mean)
        return torch.cat([mean, diff], 1)

    def _build_networks(self):
        super()._build_networks()
        self.frame_dim_ = self.embedding_dim_
        if self.pooling == "mean+diff":
            self.embedding_dim_ = 2 * self.frame_dim_

    # --------------------------------------------------------------- inference
    def _embed_clips(self, X, fn):
        check_is_fitted(self, "networks_")
        source = self._check_input(X, reset=False)
        _distributed.init(self._device())
        return self._map_batches(source, fn).astype(np.float32, copy=False)

    def transform(self, X):
        """One embedding per video: frame embeddings pooled over time (``pooling``).

        Parameters
        ----------
        X : array-like of shape (n, t, h, w), (n, t, h, w, c) or (n, t*h*w*c)
            Clips as ``fit`` takes them.

        Returns
        -------
        ndarray of shape (n, embedding_dim_), float32
            One pooled embedding per clip.
        """
        return self._embed_clips(X, lambda x: self._pool(self._encode_frames(x, self.stage)))

    def transform_frames(self, X):
        """One embedding per frame.

        Parameters
        ----------
        X : array-like of shape (n, t, h, w), (n, t, h, w, c) or (n, t*h*w*c)
            Clips as ``fit`` takes them.

        Returns
        -------
        ndarray of shape (n, t, frame_dim_), float32
            The embedding of every frame of every clip.
        """
        return self._embed_clips(X, lambda x: self._encode_frames(x, self.stage))

    def _score_batches(self, X, fn, batch_size=None, seed=0):
        """``fn`` over validated clips with a fixed generator: a pretext score that does not vary between calls."""
        check_is_fitted(self, "networks_")
        source = self._check_input(X, reset=False)
        self._generator = torch.Generator(device=self._device()).manual_seed(seed)
        try:
            return self._map_batches(source, fn, batch_size)
        finally:
            del self._generator
