"""Arrays in, image tensors out: shape inference, flattening and scaling.

Estimators accept 2-D ``(n, h*w*c)``, 3-D ``(n, h, w)`` and 4-D ``(n, h, w, c)``
channel-last arrays; video adds a time axis in front of the image axes.
scikit-learn's validation only speaks 2-D, so samples are flattened first and
their shape (:class:`SampleLayout`) is kept next to the flat array; the flat
array is turned back into ``(n, c, h, w)`` (clips ``(n, t, c, h, w)``) tensors
for the network.
"""

import math
from numbers import Integral, Real

import numpy as np
import torch
import torch.nn.functional as F


def infer_image_shape(n_features):
    """Guess ``(h, w, c)`` for rows of ``n_features`` values.

    A square count is a one-channel square image, three times a square an RGB
    square image; anything else (tabular rows) is zero-padded into the
    smallest one-channel square that holds it.
    """
    side = math.isqrt(n_features)
    if side * side == n_features:
        return (side, side, 1)
    side3 = math.isqrt(n_features // 3)
    if n_features % 3 == 0 and side3 * side3 * 3 == n_features:
        return (side3, side3, 3)
    side = math.isqrt(n_features - 1) + 1
    return (side, side, 1)


class SampleLayout:
    """What one sample is and how its shape is found: an image ``(h, w, c)`` or a clip ``(t, h, w, c)``.

    A clip is an image with a leading time axis and nothing else: every rule
    here is the image's, applied behind that axis. The layout reads shapes,
    never data; the source (:func:`skssl._sources.open_source`) asks it about
    what it reads.

    Parameters
    ----------
    owner : str
        Name of the estimator, for error messages.
    shape : tuple or None, default=None
        The estimator's ``image_shape`` (images) or ``video_shape`` (clips)
        parameter: how rows of 2-D input are read; ``None`` infers it.
    frames : tuple (int, str) or None, default=None
        Clips only: the frames a clip must have at least and why (the
        method's parameters, for the error). ``None``: samples are images.
    image_size : tuple (h, w) or None, default=None
        The size a Dataset's items are read at (``None``: their own).
    """

    def __init__(self, owner, shape=None, frames=None, image_size=None):
        self.owner, self.shape, self.image_size = owner, shape, image_size
        self.time = frames is not None
        self.min_frames, self.frames_reason = frames if self.time else (1, None)
        self.parameter = "video_shape" if self.time else "image_shape"
        self.kind, self.axes = ("clips", "(t, h, w, c)") if self.time else ("images", "(h, w, c)")

    def parse(self, shape):
        """A shape parameter as a sample shape; a left-out channel axis is one channel."""

        def size(s):
            # Integral-valued numbers only: int(8.5) would silently read a wrong
            # shape, and True is not a size.
            if isinstance(s, (bool, np.bool_)) or not isinstance(s, (Integral, Real)) or s != s or int(s) != s:
                return None
            return int(s)

        try:
            sizes = tuple(size(s) for s in shape)
        except TypeError:
            sizes = ()
        if len(sizes) == 2 + self.time:
            sizes += (1,)
        if len(sizes) != 3 + self.time or any(s is None or s < 1 for s in sizes):
            t = "t, " if self.time else ""
            raise ValueError(f"{self.parameter} must be ({t}h, w) or ({t}h, w, c) with positive integer sizes; "
                             f"got {shape!r}.")
        return sizes

    def in_array(self, shape):
        """The sample shape in an array of shape ``(n, ...)``; None for 2-D rows (see :meth:`of_rows`).

        The channel axis may be left out. For clips, an array one axis short
        whose last axis looks like channels (1, 3 or 4 next to a larger
        image) is a stack of images, which a video method cannot learn time
        from.
        """
        ndim = None if shape is None else len(shape)
        if ndim is None or ndim <= 2:  # rows (or 1-D input, which validation rejects with scikit-learn's message)
            return None
        axes = 3 + self.time
        t = "t, " if self.time else ""
        if self.time and ndim == axes and shape[-1] in (1, 3, 4) and shape[-2] > 4:
            raise ValueError(
                f"{self.owner} learns from clips, but X of shape {tuple(shape)} looks like a 4-D array of images "
                f"(n, h, w, c). Pass clips as (n, t, h, w) or (n, t, h, w, c), or 2-D rows with video_shape.")
        if ndim not in (axes, axes + 1):
            raise ValueError(f"{self.owner} expects {self.kind} of shape (n, {t}h, w) or (n, {t}h, w, c), or 2-D "
                             f"rows (n, features); got {ndim}-D input of shape {tuple(shape)}.")
        found = tuple(int(s) for s in shape[1:]) + ((1,) if ndim == axes else ())
        if self.shape is not None and self.parse(self.shape) != found:
            raise ValueError(f"{self.owner}: {self.parameter}={tuple(self.shape)} does not match the shape of the "
                             f"{self.kind} in X, {found} {self.axes}.")
        return found

    def of_rows(self, n_features):
        """The sample shape rows of ``n_features`` values are read as.

        Without a shape parameter a row is ``min_frames`` frames of equal
        length (an image is one frame), each read by :func:`infer_image_shape`.
        A given shape must hold the row; an image row is zero-padded into it
        (a ragged last row, as inference does, so never more than doubled), a
        clip row is not.
        """
        if self.shape is None:
            frame = infer_image_shape(-(-n_features // self.min_frames))
            return (self.min_frames, *frame) if self.time else frame
        shape = self.parse(self.shape)
        size = math.prod(shape)
        if size < n_features or (self.time and size != n_features):
            per = " per clip" if self.time else ""
            raise ValueError(f"{self.owner}: {self.parameter}={tuple(self.shape)} holds {size} values{per} but X "
                             f"has {n_features} features per sample.")
        # An image mostly made of padding is a wrong image_shape, and a huge one would exhaust memory inside torch.
        if size > 2 * n_features:
            raise ValueError(
                f"{self.owner}: {self.parameter}={tuple(self.shape)} holds {size} values, more than twice the "
                f"{n_features} features per sample of X; rows are only zero-padded up to twice their length.")
        return shape

    def of_dataset(self, shape):
        """The sample shape of a Dataset whose items have ``shape``: at ``image_size`` when it is set."""
        shape = tuple(int(s) for s in shape)
        if self.image_size is not None:
            shape = (*shape[:-3], *self.image_size, shape[-1])
        # image_shape reads rows only; a Dataset's images may differ in size (image_size brings them to one).
        if self.time and self.shape is not None and self.parse(self.shape) != shape:
            raise ValueError(f"{self.owner}: {self.parameter}={tuple(self.shape)} does not match the {self.kind} "
                             f"of the dataset, {shape} {self.axes}.")
        return shape

    def check_trainable(self, shape):
        """Refuse clips shorter than the frames the method samples."""
        if self.time and shape[0] < self.min_frames:
            raise ValueError(f"{self.owner} needs clips of at least {self.min_frames} frames with these parameters "
                             f"({self.frames_reason}); the clips in X have {shape[0]}.")

    def check_fitted(self, shape, fitted, n_features):
        """At transform time: samples of another shape than the ``fitted`` ones are refused."""
        if shape != fitted:
            raise ValueError(f"X holds {self.kind} of shape {shape} {self.axes} but {self.owner} was fitted on "
                             f"{fitted} (expecting {n_features} features as input).")


def to_image_tensor(X, image_shape, scale):
    """Flat rows -> ``(n, c, h, w)`` tensor in the unit range.

    ``image_shape`` is ``(h, w, c)``, or ``(t, h, w, c)`` for clips, which
    become ``(n, t, c, h, w)`` tensors: video adds a leading time axis and
    nothing else changes.

    uint8 input with the uint8 scale ``(0, 255)`` stays uint8 (a quarter of
    the memory, scaled per batch by :func:`unit_range`); anything else is
    mapped to [0, 1] with the fitted ``scale = (low, high)``, so the same
    values give the same images whatever their dtype. Values far outside the
    fitted range (at transform time) are clipped to [-1, 2] so that they
    cannot overflow float32 in the network. Rows shorter than the image are
    zero-padded.
    """
    n, f = X.shape
    size = math.prod(image_shape)
    if X.dtype == np.uint8 and tuple(scale) == (0.0, 255.0):
        t = torch.from_numpy(np.ascontiguousarray(X))
    else:
        t = torch.from_numpy(_scale(np.asarray(X, dtype=np.float64), *scale))
    if f < size:
        t = F.pad(t, (0, size - f))
    # Clips (t, h, w, c) keep their time axis in front: (n, t, c, h, w).
    return t.reshape(n, *image_shape).movedim(-1, -3).contiguous()


def _scale(X, low, high):
    """``(X - low) / (high - low)`` clipped to [-1, 2], as float32, without overflow."""
    with np.errstate(over="ignore", invalid="ignore"):
        span = high - low
    if not math.isfinite(span):
        # A range wider than the float64 maximum: rescale first.
        factor = max(abs(low), abs(high))
        X, low, high = X / factor, low / factor, high / factor
        span = high - low
    with np.errstate(over="ignore"):
        return np.clip((X - low) / span, -1.0, 2.0).astype(np.float32)


def unit_range(batch):
    """A stored batch (uint8 or float) as float32 in [0, 1], with standard strides.

    Strides are made canonical because a size-1 channel axis leaves them
    ambiguous, and convolutions pick their algorithm (and so their rounding)
    by stride: a batch sliced from one tensor and one stacked from a
    Dataset's items must give the same embedding.
    """
    x = batch.to(torch.float32, memory_format=torch.contiguous_format, copy=True)
    return x.div_(255.0) if batch.dtype == torch.uint8 else x


def fit_scale(X):
    """The ``(low, high)`` that maps float training data to [0, 1]."""
    if X.dtype == np.uint8:
        return (0.0, 255.0)
    low, high = float(np.min(X)), float(np.max(X))
    if high > low:
        return (low, high)
    # Constant data maps to 0. Above 2**53, low + 1.0 == low; near the float
    # maximum, low + |low| overflows and the constant maps to 1 instead.
    for candidate in (low + 1.0, low + abs(low)):
        if low < candidate < math.inf:
            return (low, candidate)
    return (low - abs(low), low)


def resize_to(x, min_size):
    """Upsample images smaller than ``min_size`` (bilinear); others pass through."""
    h, w = x.shape[-2:]
    if h >= min_size and w >= min_size:
        return x
    size = (max(h, min_size), max(w, min_size))
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
