"""Where training images come from: one object for every kind of input.

:func:`open_source` turns the input of one ``fit`` or ``transform`` call into
a :class:`Source`, and the estimator then asks it rather than the input: it
validates X, finds the sample shape (an image ``(h, w, c)``, or a clip
``(t, h, w, c)``: an image with a time axis in front, see
:class:`skssl._images.SampleLayout`), fits the value range that ``scale``
maps to [0, 1], samples the images the input statistics are computed on,
fingerprints the data for checkpoints, and gives a batch of stored samples
by index: a ``(b, c, h, w)`` tensor (clips ``(b, t, c, h, w)``), uint8 or
float32 in the unit range (see :func:`skssl._images.unit_range`).
Standardisation and resizing happen on the device, in the estimator, so
methods never know which source they train on.

- :class:`TensorSource`: images already in memory as one tensor; batches are
  index slices and no DataLoader is involved (the fast path for arrays).
  :class:`RowSource` is one made from validated rows of an array in memory.
- :class:`ArraySource`: an array-like that is not in memory (``np.memmap``,
  an h5py dataset, ...); rows are read batch by batch, in sorted index order
  (h5py needs increasing indices) and put back in the requested order.
- :class:`DatasetSource`: a ``torch.utils.data.Dataset`` (or an ImageFolder) of images or
  ``(image, label)`` pairs (labels ignored), decoded in DataLoader workers.

Streaming sources iterate through a DataLoader whose every item is a whole
batch (``batch_size=None``), so one worker reads one batch, with pinned
memory on CUDA.
"""

import math
import os
import signal
import warnings

import joblib
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils.validation import check_is_fitted, validate_data

from ._checkpoint import data_key
from ._images import _scale, fit_scale, to_image_tensor

# Images read to fit the value range and the input statistics of a streamed training set.
STATS_SAMPLE = 10_000


class Source:
    """Samples of one shape and how to read them: what a fit or a transform asks about its input.

    Attributes
    ----------
    sample_shape : tuple
        One sample's shape: ``(h, w, c)``, or ``(t, h, w, c)`` for clips.
    scale : tuple (low, high) or None
        Input range mapped to [0, 1]; None until a fit has fitted it.
    streaming : bool
        True where batches are read from outside memory.
    """

    streaming = False

    @property
    def shape(self):
        return (len(self), math.prod(self.sample_shape))

    def statistics_sample(self):
        """Stored samples the input statistics are computed on: a seeded sample of at most ~256 MB as float32."""
        budget = max(64, (256 << 20) // (math.prod(self.sample_shape) * 4))
        return self.batch(torch.from_numpy(sample_index(len(self), min(STATS_SAMPLE, budget))))

    def data_key(self):
        """Checkpoint fingerprint: the size and shape plus a hash of sampled stored samples."""
        stored = self.batch(torch.from_numpy(sample_index(len(self), 64, seed=1)))
        return joblib.hash((len(self), self.sample_shape, stored.numpy()))


class TensorSource(Source):
    """Stored ``(n, c, h, w)`` images (clips ``(n, t, c, h, w)``) in one tensor (uint8 or unit-range float32)."""

    def __init__(self, images):
        self.images = images
        self.sample_shape = (*images.shape[1:-3], images.shape[-2], images.shape[-1], images.shape[-3])

    def __len__(self):
        return self.images.shape[0]

    def batch(self, index):
        return self.images[index]

    def batches(self, index_batches, num_workers=0, pin_memory=False):
        for index in index_batches:
            yield index, self.images[index.to(self.images.device)]

    def statistics_sample(self):
        return self.images

    def nbytes(self):
        return self.images.element_size() * self.images.nelement()


class RowSource(TensorSource):
    """Validated 2-D rows of an array in memory, stored as one tensor once ``scale`` is set.

    Parameters
    ----------
    rows : ndarray of shape (n, features)
        Validated rows.
    sample_shape : tuple (h, w, c) or (t, h, w, c)
        How each row is read (zero-padded when it is shorter).
    scale : tuple (low, high) or None, default=None
        Input range mapped to [0, 1].
    """

    def __init__(self, rows, sample_shape, scale=None):
        self.rows, self.sample_shape, self.scale = rows, tuple(sample_shape), scale

    @property
    def scale(self):
        return self._scale

    @scale.setter
    def scale(self, scale):
        self._scale, self._images = (None if scale is None else tuple(scale)), None

    @property
    def images(self):
        if self._images is None:
            self._images = to_image_tensor(self.rows, self.sample_shape, self.scale)
        return self._images

    def __len__(self):
        return self.rows.shape[0]

    def value_range(self):
        """The ``(low, high)`` that maps the rows to [0, 1]."""
        return fit_scale(self.rows)

    def data_key(self):
        return data_key(self.rows)


class _StreamingSource(Source):
    """Shared DataLoader plumbing of sources that read from outside memory."""

    streaming = True

    def batches(self, index_batches, num_workers=0, pin_memory=False):
        index_batches = list(index_batches)
        context = worker_context() if num_workers > 0 else None
        if context is not None:
            loader = torch.utils.data.DataLoader(
                _BatchReader(self), batch_size=None, sampler=index_batches, num_workers=num_workers,
                pin_memory=pin_memory, persistent_workers=False, prefetch_factor=2, worker_init_fn=_ignore_ctrl_c,
                multiprocessing_context=context,
            )
            try:
                batches = iter(loader)  # starts the workers
            except Exception as exc:  # e.g. a Dataset that spawn cannot pickle
                warnings.warn(f"DataLoader workers could not start ({type(exc).__name__}: {exc}); reading batches "
                              "in this process instead (num_workers=0).", stacklevel=3)
            else:
                yield from zip(index_batches, batches)
                return
        for index in index_batches:
            yield index, self.batch(index)


def worker_context():
    """The multiprocessing context DataLoader workers start with in this process, or None (with a warning).

    The default context is not always one that can start workers: inside a
    joblib/loky worker (GridSearchCV with ``n_jobs > 1``) it is loky's, whose
    processes the DataLoader cannot use, and whose spawned children cannot
    even unpickle their start method. Standard start methods are used as
    set; otherwise fork where it is the safe platform default (Linux).
    Daemonic processes (multiprocessing Pool workers, Dask's default
    workers) may have no children at all: batches are then read in-process.
    """
    import multiprocessing
    import sys

    if multiprocessing.current_process().daemon:
        warnings.warn("This process is a daemonic worker (a multiprocessing Pool's or Dask's), which cannot start "
                      "DataLoader workers; reading batches in this process instead (num_workers=0).", stacklevel=4)
        return None
    method = multiprocessing.get_start_method(allow_none=True)
    if method is None or method in ("fork", "spawn", "forkserver"):
        return multiprocessing.get_context(method)
    if sys.platform.startswith("linux"):  # loky's or another pool's own start method
        return multiprocessing.get_context("fork")
    warnings.warn(f"DataLoader workers cannot start under the {method!r} start method of this process (a loky or "
                  "other pool worker); reading batches in this process instead (num_workers=0).", stacklevel=4)
    return None


def _ignore_ctrl_c(worker_id):
    # Ctrl-C reaches the workers too (one process group); the training process
    # decides: it finishes its batch, keeps what it learned, and closes the loader.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _BatchReader(torch.utils.data.Dataset):
    # The sampler yields whole index batches; each worker reads one batch.
    def __init__(self, source):
        self.source = source

    def __getitem__(self, index):
        return self.source.batch(index)

    def __len__(self):
        return len(self.source)


class ArraySource(_StreamingSource):
    """An array-like of images read batch by batch, never whole.

    Parameters
    ----------
    array : array-like of shape (n, features), (n, h, w) or (n, h, w, c)
        Anything with ``shape``, ``dtype`` and integer-array indexing.
    sample_shape : tuple (h, w, c) or (t, h, w, c)
        How each row is read.
    scale : tuple (low, high) or None
        Input range mapped to [0, 1] (None until it is fitted).
    """

    def __init__(self, array, sample_shape, scale):
        self.array, self.sample_shape = array, tuple(sample_shape)
        self.scale = None if scale is None else tuple(scale)

    def __len__(self):
        return int(self.array.shape[0])

    def rows(self, index):
        """Rows ``index`` as a 2-D ndarray, read in increasing order."""
        index = np.asarray(index, dtype=np.int64)
        order = np.argsort(index, kind="stable")
        unique, inverse = np.unique(index[order], return_inverse=True)
        block = np.asarray(self.array[unique])  # h5py: increasing, no repeats
        rows = np.empty((len(index),) + block.shape[1:], dtype=block.dtype)
        rows[order] = block[inverse]
        rows = rows.reshape(len(index), -1)
        if rows.dtype.kind == "f" and not np.isfinite(rows).all():
            bad = index[~np.isfinite(rows).all(axis=1)][:5]
            raise ValueError(f"Input contains NaN or infinity in rows {bad.tolist()} of the array.")
        return rows

    def batch(self, index):
        index = index.numpy() if torch.is_tensor(index) else index
        return to_image_tensor(self.rows(index), self.sample_shape, self.scale)

    def value_range(self):
        """uint8 is (0, 255); floats: the range of a seeded sample of rows."""
        if np.dtype(self.array.dtype) == np.uint8:
            return (0.0, 255.0)
        return fit_scale(self.rows(sample_index(len(self), STATS_SAMPLE)).astype(np.float64))


class DatasetSource(_StreamingSource):
    """A torch Dataset of images (PIL, ``(c, h, w)`` tensors or ``(h, w, c)`` arrays), or of clips.

    Items may be ``(image, label)`` tuples; the label is ignored. Every image
    is brought to ``sample_shape`` (resized when ``resize`` is set, else it
    must already have that size). With ``sample_shape`` ``(t, h, w, c)`` the
    items are clips (``(t, c, h, w)`` tensors, ``(t, h, w[, c])`` arrays, or
    what a VideoFolder's ``read_clip`` gives), batched as ``(b, t, c, h, w)``.
    """

    def __init__(self, dataset, sample_shape, scale, resize=False):
        self.dataset, self.sample_shape, self.resize = dataset, tuple(sample_shape), resize
        self.scale = None if scale is None else tuple(scale)
        self.clips = len(self.sample_shape) == 4

    def __len__(self):
        return len(self.dataset)

    def item(self, i, size=None):
        """Item ``i`` as a ``(c, h, w)`` (clips: ``(t, c, h, w)``) tensor, at ``size`` if the dataset reads at a size itself."""
        read = getattr(self.dataset, "read_clip" if self.clips else "read_image", None)
        if read is None:
            return item_to_tensor(self.dataset[i], clip=self.clips)
        return read(i) if size is None else read(i, size=size)

    def describe(self, i):
        files = getattr(self.dataset, "files", None)
        return f"Item {i} of the dataset" + (f" (file {files[i]})" if files is not None else "")

    def value_range(self):
        """uint8 items are (0, 255); others the range of a seeded sample of raw items (any size, never clipped)."""
        if self.item(0).dtype == torch.uint8:
            return (0.0, 255.0)
        low, high = math.inf, -math.inf
        for i in sample_index(len(self), 1024):
            x = self.item(int(i)).double()
            if not torch.isfinite(x).all():
                raise ValueError(f"Item {int(i)} of the dataset contains NaN or infinity.")
            low, high = min(low, float(x.min())), max(high, float(x.max()))
        return fit_scale(np.array([low, high]))

    def batch(self, index):
        index = index.tolist() if torch.is_tensor(index) else list(index)
        *frames, h, w, c = self.sample_shape
        images = [self.item(i, (h, w) if self.resize else None) for i in index]
        out = []
        for i, image in zip(index, images):
            if tuple(image.shape[:-3]) != tuple(frames):
                raise ValueError(f"{self.describe(i)} has {image.shape[0]} frame(s), the others {frames[0]}.")
            if image.shape[-3] != c:
                raise ValueError(f"{self.describe(i)} has {image.shape[-3]} channel(s), the others {c}.")
            if tuple(image.shape[-2:]) != (h, w):
                if not self.resize:
                    raise ValueError(
                        f"{self.describe(i)} is {image.shape[-2]}x{image.shape[-1]} pixels but the first was "
                        f"{h}x{w}; set image_size to train on images of different sizes."
                    )
                # The frames of a clip are resized together, as channels of one image.
                image = resize_shorter_and_crop(image.flatten(0, -3), (h, w)).unflatten(0, image.shape[:-2])
            out.append(image)
        batch = torch.stack(out)
        if batch.dtype == torch.uint8 and self.scale == (0.0, 255.0):
            return batch
        return torch.from_numpy(_scale(batch.double().numpy(), *self.scale))


def item_to_tensor(item, clip=False):
    """A dataset item (image or ``(image, label, ...)``) as a ``(c, h, w)`` tensor; a clip as ``(t, c, h, w)``."""
    if isinstance(item, (tuple, list)):
        if not item:
            raise ValueError("A dataset item is an empty tuple; expected an image or (image, label).")
        item = item[0]
    if clip:
        return _clip_to_tensor(item)
    if torch.is_tensor(item):
        t = item.detach().cpu()
        if t.ndim == 2:
            t = t[None]
        if t.ndim != 3:
            raise ValueError(f"A dataset item is a tensor of shape {tuple(t.shape)}; expected (c, h, w) or (h, w).")
        return t if t.dtype == torch.uint8 else t.float()
    if hasattr(item, "mode") and hasattr(item, "size"):  # PIL image
        if item.mode not in ("L", "RGB"):
            item = item.convert("RGB")
        item = np.asarray(item)
    a = np.asarray(item)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.dtype.kind not in "uif":
        raise ValueError(f"A dataset item of shape {a.shape} and dtype {a.dtype} is not an (h, w[, c]) image.")
    t = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))
    return t if t.dtype == torch.uint8 else t.float()


def _clip_to_tensor(item):
    # Tensors are (t, c, h, w) as torchvision's video datasets give them, arrays (t, h, w, c); 3-D is one channel.
    if torch.is_tensor(item):
        t = item.detach().cpu()
        t = t[:, None] if t.ndim == 3 else t
    else:
        a = np.asarray(item)
        if a.dtype.kind not in "uif" or a.ndim not in (3, 4):
            raise ValueError(f"A dataset item of shape {a.shape} and dtype {a.dtype} is not a (t, h, w[, c]) clip.")
        a = a[..., None] if a.ndim == 3 else a
        t = torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))
    if t.ndim != 4:
        raise ValueError(f"A dataset item is a tensor of shape {tuple(t.shape)}; expected a (t, c, h, w) or "
                         "(t, h, w) clip.")
    return t if t.dtype == torch.uint8 else t.float()


def resize_shorter_and_crop(image, size):
    """Resize a ``(c, h, w)`` image so it covers ``size`` (shorter side first), then centre-crop.

    The crop is taken from the source first and only it is resized, so memory
    follows ``size``, not the image's aspect ratio (a 1 x 300,000 strip would
    otherwise be upsampled whole).
    """
    h, w = image.shape[-2:]
    th, tw = size
    factor = max(th / h, tw / w)
    # The centred source box with the target's aspect ratio, in whole pixels.
    bh, bw = min(h, max(1, round(th / factor))), min(w, max(1, round(tw / factor)))
    top, left = (h - bh) // 2, (w - bw) // 2
    crop = image[:, top:top + bh, left:left + bw]
    if (bh, bw) == (th, tw):
        return crop.clone()
    x = F.interpolate(crop[None].float(), size=(th, tw), mode="bilinear", align_corners=False,
                      antialias=bh > th or bw > tw)[0]
    return x.round().clamp(0, 255).to(torch.uint8) if image.dtype == torch.uint8 else x


def is_dataset(X):
    """True for a torch Dataset, or an object that reads its items itself (``read_image(i)``, ``read_clip(i)``)."""
    return (isinstance(X, torch.utils.data.Dataset) or callable(getattr(X, "read_image", None))
            or callable(getattr(X, "read_clip", None)))


def is_streaming_input(X):
    """True for inputs that are read batch by batch instead of copied into memory."""
    if is_dataset(X):
        return True
    if isinstance(X, np.memmap):
        return getattr(X, "_mmap", None) is not None  # a fancy-indexed copy is in memory
    if isinstance(X, (np.ndarray, list, tuple)) or torch.is_tensor(X):
        return False
    try:
        import scipy.sparse as sp

        if sp.issparse(X):
            return False
    except ImportError:  # pragma: no cover
        pass
    return all(hasattr(X, a) for a in ("shape", "dtype", "__getitem__")) and len(getattr(X, "shape", ())) >= 2


def open_source(X, owner, layout, reset):
    """``X`` validated as a :class:`Source` of samples that ``layout`` describes.

    Arrays in memory go through scikit-learn's ``validate_data`` (sample
    count, NaN, dtype, feature count and names, which it sets and checks on
    ``owner``) and become a :class:`RowSource`; memmaps, h5py datasets and
    torch Datasets are checked here without being read whole. At ``reset``
    (fit) the sample shape is found in X and ``scale`` is left for the fit to
    set (from :meth:`value_range` or a fitted model's); otherwise X must hold
    samples of the owner's fitted shape and is read with its ``scale_``.

    Parameters
    ----------
    X : array-like or torch Dataset
        The input of ``fit`` or ``transform``.
    owner : BaseSSL
        The estimator: its ``n_features_in_``, feature names, fitted sample
        shape and ``scale_``.
    layout : skssl._images.SampleLayout
        What one sample is (image or clip) and the shape parameters.
    reset : bool
        True in ``fit``.

    Returns
    -------
    Source
    """
    if is_streaming_input(X):
        return _open_streaming(X, owner, layout, reset)
    if getattr(X, "ndim", None) is None and isinstance(X, (list, tuple)):
        X = np.asarray(X)
    raw = getattr(X, "shape", None)
    if raw is not None and len(raw) > 2:  # not -1: zero rows cannot infer it, and validation should say "0 samples"
        X = np.reshape(X, (raw[0], math.prod(raw[1:])))
    if not reset:  # another sample shape than fitted is named as such, before the feature count
        found = layout.in_array(raw)
        if found is not None:
            layout.check_fitted(found, owner._sample_shape, owner.n_features_in_)
    # scikit-learn's checks (sample count, NaN, dtype, feature count) come first at fit, on flat rows.
    X = validate_data(owner, X, reset=reset, dtype="numeric", ensure_min_samples=2 if reset else 1)
    if not reset:
        return RowSource(X, owner._sample_shape, owner.scale_)
    shape = layout.in_array(raw) or layout.of_rows(X.shape[1])
    layout.check_trainable(shape)
    return RowSource(X, shape)


def _open_streaming(X, owner, layout, reset):
    name = layout.owner
    n = len(X) if is_dataset(X) else int(X.shape[0])
    if n < (2 if reset else 1):
        raise ValueError(f"Found array with {n} sample(s) (shape={getattr(X, 'shape', (n,))}) while a minimum of "
                         f"{2 if reset else 1} is required by {name}.")
    if is_dataset(X):
        shape = _dataset_sample_shape(X, layout)
        n_features = math.prod(shape)
    else:
        dtype = np.dtype(X.dtype)
        if dtype.kind not in "uif":
            raise ValueError(f"{name} expects numeric {layout.kind}; the array has dtype {dtype}.")
        shape = layout.in_array(X.shape)
        n_features = int(math.prod(X.shape[1:]))
        if shape is None:  # 2-D rows
            if not reset and hasattr(owner, "n_features_in_") and n_features != owner.n_features_in_:
                raise ValueError(f"X has {n_features} features, but {name} is expecting {owner.n_features_in_} "
                                 "features as input.")
            shape = layout.of_rows(n_features) if reset else owner._sample_shape
    if reset:
        validate_data(owner, X, reset=True, skip_check_array=True)  # clears feature names
        owner.n_features_in_ = n_features
        layout.check_trainable(shape)
        scale = None
    else:
        check_is_fitted(owner)
        layout.check_fitted(shape, owner._sample_shape, owner.n_features_in_)
        scale = owner.scale_
    if is_dataset(X):
        return DatasetSource(X, shape, scale, resize=layout.image_size is not None)
    return ArraySource(X, shape, scale)


def _dataset_sample_shape(dataset, layout):
    """Sample shape of a Dataset: its declared ``image_shape``/``video_shape``, else its first item's."""
    other, hint = (("read_image", "open clips with skssl.datasets.load_video_folder") if layout.time else
                   ("read_clip", "train a video method (skssl.VIDEO_ESTIMATORS) on it"))
    if callable(getattr(dataset, other, None)):
        others = "images" if layout.time else "clips"
        raise ValueError(f"{layout.owner} learns from {layout.kind}, but X is a {type(dataset).__name__} of "
                         f"{others}; {hint}.")
    shape = getattr(dataset, layout.parameter, None)
    if shape is None:
        first = item_to_tensor(dataset[0], clip=layout.time)
        shape = (*first.shape[:-3], first.shape[-2], first.shape[-1], first.shape[-3])
    return layout.of_dataset(shape)


def sample_index(n, size, seed=0):
    """A sorted seeded sample of ``min(n, size)`` row indices (all of them when n <= size)."""
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def resolve_num_workers(num_workers, source):
    """``"auto"``: the machine's cores (at most 8) where images are decoded, 0 for arrays."""
    if num_workers != "auto":
        return int(num_workers)
    if not isinstance(source, DatasetSource):
        return 0
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        cores = os.cpu_count() or 1
    return min(cores, 8)


def check_integral_index(index):
    index = np.asarray(index)
    if index.dtype == bool:
        return np.flatnonzero(index)
    if not np.issubdtype(index.dtype, np.integer):
        raise IndexError(f"Only integer or boolean arrays index images; got dtype {index.dtype}.")
    return index.astype(np.int64)

