"""Arrays in, image tensors out: shape inference, flattening and scaling.

Estimators accept 2-D ``(n, h*w*c)``, 3-D ``(n, h, w)`` and 4-D ``(n, h, w, c)``
channel-last arrays. scikit-learn's validation only speaks 2-D, so images are
flattened first and their shape is kept next to the flat array; the flat array
is turned back into ``(n, c, h, w)`` tensors for the network.
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


def flatten_images(X, image_shape, owner):
    """Return ``(X_2d, image_shape)`` for 2-D, 3-D or 4-D input.

    ``X_2d`` is left for scikit-learn's ``validate_data`` to check; only the
    image axes are folded here, so sparse matrices and data frames pass through.
    """
    if getattr(X, "ndim", None) is None and isinstance(X, (list, tuple)):
        X = np.asarray(X)
    shape = image_shape_of(getattr(X, "shape", None), image_shape, owner)
    if shape is None:
        return X, None
    # Not -1: zero rows cannot infer it, and validation should say "0 samples".
    return np.reshape(X, (X.shape[0], math.prod(shape))), shape


def image_shape_of(shape, image_shape, owner):
    """``(h, w, c)`` of the images in an array of shape ``(n, ...)``; None for 2-D rows (or no shape)."""
    ndim = None if shape is None else len(shape)
    if ndim in (3, 4):
        found = tuple(int(s) for s in shape[1:]) + ((1,) if ndim == 3 else ())
        if image_shape is not None and _as_hwc(image_shape) != found:
            raise ValueError(
                f"{owner}: image_shape={tuple(image_shape)} does not match the "
                f"shape of the images in X, {found} (h, w, c)."
            )
        return found
    if ndim is not None and ndim > 4:
        raise ValueError(
            f"{owner} expects 2-D (n, features), 3-D (n, h, w) or 4-D (n, h, w, c) "
            f"arrays; got {ndim}-D input of shape {tuple(shape)}."
        )
    return None


def _as_hwc(image_shape):
    def size(s):
        # Integral-valued numbers only: int(8.5) would silently read a wrong
        # shape, and True is not a size.
        if isinstance(s, (bool, np.bool_)) or not isinstance(s, (Integral, Real)) or s != s or int(s) != s:
            return None
        return int(s)

    shape = tuple(size(s) for s in image_shape)
    if len(shape) == 2:
        shape += (1,)
    if len(shape) != 3 or any(s is None or s < 1 for s in shape):
        raise ValueError(
            f"image_shape must be (h, w) or (h, w, c) with positive integer sizes; got {image_shape!r}."
        )
    return shape


def resolve_image_shape(image_shape, n_features, owner):
    """The ``(h, w, c)`` that rows of ``n_features`` values are read as."""
    if image_shape is None:
        return infer_image_shape(n_features)
    shape = _as_hwc(image_shape)
    if math.prod(shape) < n_features:
        raise ValueError(
            f"{owner}: image_shape={tuple(image_shape)} holds {math.prod(shape)} values "
            f"but X has {n_features} features per sample."
        )
    # Zero-padding is for a ragged last row, as inference does (never more
    # than doubling the row); an image mostly made of padding is a wrong
    # image_shape, and a huge one would exhaust memory inside torch.
    if math.prod(shape) > 2 * n_features:
        raise ValueError(
            f"{owner}: image_shape={tuple(image_shape)} holds {math.prod(shape)} values, more "
            f"than twice the {n_features} features per sample of X; rows are only zero-padded "
            f"up to twice their length."
        )
    return shape


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


def as_thwc(video_shape):
    """``video_shape`` as ``(t, h, w, c)``: ``(t, h, w)`` is one channel."""
    try:
        t, *frame = tuple(video_shape)
        shape = _as_hwc(frame)
    except (TypeError, ValueError):
        shape = None
    if shape is None or isinstance(t, (bool, np.bool_)) or not isinstance(t, Integral) or t < 1:
        raise ValueError(
            f"video_shape must be (t, h, w) or (t, h, w, c) with positive integer sizes; got {video_shape!r}."
        )
    return (int(t), *shape)


def resolve_video_shape(video_shape, n_features, n_frames, owner):
    """The ``(t, h, w, c)`` that rows of ``n_features`` values are read as.

    ``None`` reads a row as ``n_frames`` frames of equal length, each frame as
    :func:`infer_image_shape` reads an image row (zero-padding included); an
    explicit ``video_shape`` must hold exactly the row.
    """
    if video_shape is None:
        frame = infer_image_shape(-(-n_features // n_frames))
        return (n_frames, *frame)
    shape = as_thwc(video_shape)
    if math.prod(shape) != n_features:
        raise ValueError(
            f"{owner}: video_shape={tuple(video_shape)} holds {math.prod(shape)} values per clip "
            f"but X has {n_features} features per sample."
        )
    return shape


def clip_shape(shape, video_shape, owner):
    """``(t, h, w, c)`` of the clips in an array of shape ``(n, ...)``; None for 2-D rows.

    A 4-D array is read as one-channel clips ``(n, t, h, w)`` unless its last
    axis looks like channels (1, 3 or 4 next to a larger image): then it is a
    stack of images, which a video method cannot learn time from.
    """
    ndim = len(shape)
    if ndim <= 2:  # rows (or 1-D input, which validation rejects with scikit-learn's message)
        return None
    if ndim == 4 and shape[3] in (1, 3, 4) and shape[2] > 4:
        raise ValueError(
            f"{owner} learns from clips, but X of shape {tuple(shape)} looks like a 4-D array of images "
            f"(n, h, w, c). Pass clips as (n, t, h, w) or (n, t, h, w, c), or 2-D rows with video_shape."
        )
    if ndim not in (4, 5):
        raise ValueError(
            f"{owner} expects clips of shape (n, t, h, w) or (n, t, h, w, c), or 2-D rows with video_shape; "
            f"got {ndim}-D input of shape {tuple(shape)}."
        )
    found = tuple(int(s) for s in shape[1:]) + ((1,) if ndim == 4 else ())
    if video_shape is not None and as_thwc(video_shape) != found:
        raise ValueError(f"{owner}: video_shape={tuple(video_shape)} does not match the clips in X, "
                         f"{found} (t, h, w, c).")
    return found
