"""What every video method shares: clip input, frame sampling on the device, pooling over time."""

import math
from numbers import Integral

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from .. import _distributed
from .._images import as_thwc, clip_shape, resolve_video_shape
from .._sources import ArraySource, DatasetSource, is_dataset, is_streaming_input, item_to_tensor
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
    _parameter_constraints = {
        **BaseSSL._parameter_constraints,
        "frame_stride": [Interval(Integral, 1, None, closed="left")],
        "pooling": [StrOptions({"mean", "mean+diff"})],
        "video_shape": [tuple, list, None],
    }

    def __init_subclass__(cls, **kwargs):
        if cls.__doc__:
            cls.__doc__ = cls.__doc__.replace("{video_parameters}", VIDEO_DOC).replace(
                "{video_attributes}", VIDEO_ATTRIBUTES)
        super().__init_subclass__(**kwargs)

    # ----------------------------------------------------------- the method's needs
    def _span(self):
        """Frames a clip must have for the method (``n_frames`` at ``frame_stride``)."""
        return (self.n_frames - 1) * self.frame_stride + 1

    def _span_reason(self):
        return f"n_frames={self.n_frames}, frame_stride={self.frame_stride}"

    @property
    def _sample_shape(self):
        return self.video_shape_

    # ------------------------------------------------------------------- input
    def _check_input(self, X, reset):
        """Validate clips; return flat rows (in memory) or an ArraySource (memmap, h5py)."""
        name = type(self).__name__
        if self.image_shape is not None:
            raise ValueError(f"{name} reads clips: set video_shape=(t, h, w[, c]), not image_shape="
                             f"{self.image_shape!r} (which applies to image methods).")
        if is_dataset(X):
            return self._check_clip_dataset(X, reset)
        if is_streaming_input(X):
            return self._check_clip_source(X, reset)
        if not hasattr(X, "shape"):
            X = np.asarray(X)
        shape = X.shape
        # scikit-learn's checks first (sample count, NaN, dtype, feature count), on the flattened clips.
        rows = np.reshape(X, (shape[0], math.prod(shape[1:]))) if len(shape) > 2 else X
        rows = validate_data(self, rows, reset=reset, dtype="numeric", ensure_min_samples=2 if reset else 1)
        self._set_clip_shape(clip_shape(shape, self.video_shape, name), rows.shape[1], reset)
        return rows

    def _check_clip_source(self, X, reset):
        name = type(self).__name__
        dtype = np.dtype(X.dtype)
        if dtype.kind not in "uif":
            raise ValueError(f"{name} expects numeric clips; the array has dtype {dtype}.")
        n = int(X.shape[0])
        if n < (2 if reset else 1):
            raise ValueError(f"Found array with {n} sample(s) (shape={tuple(X.shape)}) while a minimum of "
                             f"{2 if reset else 1} is required by {name}.")
        n_features = int(math.prod(X.shape[1:]))
        if reset:
            validate_data(self, X, reset=True, skip_check_array=True)  # clears feature names
            self.n_features_in_ = n_features
        elif n_features != self.n_features_in_:
            raise ValueError(f"X has {n_features} features per sample, but {name} is expecting "
                             f"{self.n_features_in_} features as input.")
        self._set_clip_shape(clip_shape(X.shape, self.video_shape, name), n_features, reset)
        return ArraySource(X, self.video_shape_, getattr(self, "scale_", (0.0, 255.0)))

    def _check_clip_dataset(self, X, reset):
        """A Dataset of clips (a VideoFolder, or items ``(t, c, h, w)`` / ``(t, h, w[, c])``): its DatasetSource."""
        name = type(self).__name__
        n = len(X)
        if n < (2 if reset else 1):
            raise ValueError(f"Found a dataset with {n} clip(s) while a minimum of {2 if reset else 1} is required "
                             f"by {name}.")
        shape = getattr(X, "video_shape", None)
        if shape is None:
            if callable(getattr(X, "read_image", None)):
                raise ValueError(f"{name} learns from clips, but X is a {type(X).__name__} of images; open clips "
                                 "with skssl.datasets.load_video_folder.")
            first = item_to_tensor(X[0], clip=True)
            shape = (int(first.shape[0]), int(first.shape[2]), int(first.shape[3]), int(first.shape[1]))
        shape = tuple(int(s) for s in shape)
        if self.image_size is not None:
            shape = (shape[0], *self._image_size(), shape[3])
        if self.video_shape is not None and as_thwc(self.video_shape) != shape:
            raise ValueError(f"{name}: video_shape={tuple(self.video_shape)} does not match the clips of the "
                             f"dataset, {shape} (t, h, w, c).")
        n_features = math.prod(shape)
        if reset:
            validate_data(self, X, reset=True, skip_check_array=True)  # clears feature names
            self.n_features_in_ = n_features
        self._set_clip_shape(shape, n_features, reset)
        return DatasetSource(X, self.video_shape_, getattr(self, "scale_", (0.0, 255.0)),
                             resize=self.image_size is not None)

    def _set_clip_shape(self, shape, n_features, reset):
        """Fix ``video_shape_`` on ``reset`` (from the clips, or ``video_shape`` for rows); else check it."""
        name = type(self).__name__
        if not reset:
            if shape is not None and shape != self.video_shape_:
                raise ValueError(f"X holds clips of shape {shape} (t, h, w, c) but {name} was fitted on "
                                 f"{self.video_shape_}.")
            return
        shape = shape or resolve_video_shape(self.video_shape, n_features, self._span(), name)
        if shape[0] < self._span():
            raise ValueError(
                f"{name} needs clips of at least {self._span()} frames with these parameters "
                f"({self._span_reason()}); the clips in X have {shape[0]}.")
        self.video_shape_, self.image_shape_ = shape, shape[1:]

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
        X = self._check_input(X, reset=False)
        _distributed.init(self._device())
        return self._map_batches(X, fn).astype(np.float32, copy=False)

    def transform(self, X):
        """One embedding per video: frame embeddings pooled over time (``pooling``).

        Parameters
        ----------
        X : array-like of shape (n, t, h, w), (n, t, h, w, c) or (n, t*h*w*c)

        Returns
        -------
        ndarray of shape (n, embedding_dim_), float32
        """
        return self._embed_clips(X, lambda x: self._pool(self._encode_frames(x, self.stage)))

    def transform_frames(self, X):
        """One embedding per frame.

        Parameters
        ----------
        X : array-like of shape (n, t, h, w), (n, t, h, w, c) or (n, t*h*w*c)

        Returns
        -------
        ndarray of shape (n, t, frame_dim_), float32
        """
        return self._embed_clips(X, lambda x: self._encode_frames(x, self.stage))

    def _score_batches(self, X, fn, batch_size=None, seed=0):
        """``fn`` over validated clips with a fixed generator: a pretext score that does not vary between calls."""
        check_is_fitted(self, "networks_")
        X = self._check_input(X, reset=False)
        self._generator = torch.Generator(device=self._device()).manual_seed(seed)
        try:
            return self._map_batches(X, fn, batch_size)
        finally:
            del self._generator
