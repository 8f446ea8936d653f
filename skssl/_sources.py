"""Where training images come from: one interface for every kind of input.

A source has a length, an image shape ``(h, w, c)`` and gives a batch of
stored images by index: a ``(b, c, h, w)`` tensor, uint8 or float32 in the
unit range (see :func:`skssl._images.unit_range`). Scaling to the unit range
and standardisation happen on the device, in the estimator, so methods never
know which source they train on.

- :class:`TensorSource`: images already in memory as one tensor; batches are
  index slices and no DataLoader is involved (the fast path for arrays).
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

import numpy as np
import torch
import torch.nn.functional as F

from ._images import _scale, to_image_tensor

# Images read to fit the input statistics of a streamed training set.
STATS_SAMPLE = 10_000


class TensorSource:
    """Stored ``(n, c, h, w)`` images in one tensor (uint8 or unit-range float32)."""

    streaming = False

    def __init__(self, images):
        self.images = images
        # (h, w, c), or (t, h, w, c) for clips stored as (n, t, c, h, w)
        self.image_shape = (*images.shape[1:-3], images.shape[-2], images.shape[-1], images.shape[-3])

    @property
    def shape(self):
        return (len(self), math.prod(self.image_shape))

    def __len__(self):
        return self.images.shape[0]

    def batch(self, index):
        return self.images[index]

    def batches(self, index_batches, num_workers=0, pin_memory=False):
        for index in index_batches:
            yield index, self.images[index.to(self.images.device)]

    def nbytes(self):
        return self.images.element_size() * self.images.nelement()


class _StreamingSource:
    """Shared DataLoader plumbing of sources that read from outside memory."""

    streaming = True

    @property
    def shape(self):
        return (len(self), math.prod(self.image_shape))

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
    image_shape : tuple (h, w, c)
        How each row is read.
    scale : tuple (low, high)
        Input range mapped to [0, 1].
    """

    def __init__(self, array, image_shape, scale):
        self.array, self.image_shape, self.scale = array, tuple(image_shape), tuple(scale)

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
        return to_image_tensor(self.rows(index), self.image_shape, self.scale)


class DatasetSource(_StreamingSource):
    """A torch Dataset of images (PIL, ``(c, h, w)`` tensors or ``(h, w, c)`` arrays), or of clips.

    Items may be ``(image, label)`` tuples; the label is ignored. Every image
    is brought to ``image_shape`` (resized when ``resize`` is set, else it
    must already have that size). With ``image_shape`` ``(t, h, w, c)`` the
    items are clips (``(t, c, h, w)`` tensors, ``(t, h, w[, c])`` arrays, or
    what a VideoFolder's ``read_clip`` gives), batched as ``(b, t, c, h, w)``.
    """

    def __init__(self, dataset, image_shape, scale, resize=False):
        self.dataset, self.image_shape, self.scale, self.resize = dataset, tuple(image_shape), tuple(scale), resize
        self.clips = len(self.image_shape) == 4

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

    def batch(self, index):
        index = index.tolist() if torch.is_tensor(index) else list(index)
        *frames, h, w, c = self.image_shape
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

