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
    ndim = getattr(X, "ndim", None)
    if ndim is None and isinstance(X, (list, tuple)):
        X = np.asarray(X)
        ndim = X.ndim
    if ndim in (3, 4):
        shape = tuple(X.shape[1:]) + ((1,) if ndim == 3 else ())
        if image_shape is not None and _as_hwc(image_shape) != shape:
            raise ValueError(
                f"{owner}: image_shape={tuple(image_shape)} does not match the "
                f"shape of the images in X, {shape} (h, w, c)."
            )
        # Not -1: zero rows cannot infer it, and validation should say "0 samples".
        return np.reshape(X, (X.shape[0], math.prod(shape))), shape
    if ndim is not None and ndim > 4:
        raise ValueError(
            f"{owner} expects 2-D (n, features), 3-D (n, h, w) or 4-D (n, h, w, c) "
            f"arrays; got {ndim}-D input of shape {X.shape}."
        )
    return X, None


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

    uint8 input with the uint8 scale ``(0, 255)`` stays uint8 (a quarter of
    the memory, scaled per batch by :func:`unit_range`); anything else is
    mapped to [0, 1] with the fitted ``scale = (low, high)``, so the same
    values give the same images whatever their dtype. Values far outside the
    fitted range (at transform time) are clipped to [-1, 2] so that they
    cannot overflow float32 in the network. Rows shorter than the image are
    zero-padded.
    """
    h, w, c = image_shape
    n, f = X.shape
    if X.dtype == np.uint8 and tuple(scale) == (0.0, 255.0):
        t = torch.from_numpy(np.ascontiguousarray(X))
    else:
        t = torch.from_numpy(_scale(np.asarray(X, dtype=np.float64), *scale))
    if f < h * w * c:
        t = F.pad(t, (0, h * w * c - f))
    return t.reshape(n, h, w, c).permute(0, 3, 1, 2).contiguous()


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
