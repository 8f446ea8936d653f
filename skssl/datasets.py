"""Image data: sklearn's digits (embedded), Fashion-MNIST (IDX files) and folders of image files."""
import gzip
import os
import warnings
import shutil
import urllib.request
import zlib
from pathlib import Path

import copy

import numpy as np
from sklearn.datasets import load_digits
from sklearn.utils import Bunch

__all__ = ["load_digits_images", "load_fashion_mnist", "read_idx", "FASHION_MNIST_CLASSES", "ImageFolder",
           "load_image_folder"]

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian package dataset-fashion-mnist
_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
# IDX type byte -> big-endian numpy dtype (http://yann.lecun.com/exdb/mnist/)
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def load_digits_images(*, return_X_y=False):
    """Load scikit-learn's 8x8 digits as images; the embedded default data set.

    Parameters
    ----------
    return_X_y : bool, default=False

    Returns
    -------
    data : sklearn.utils.Bunch
        ``images`` float64 of shape (1797, 8, 8) with values 0..16, ``target`` int
        of shape (1797,), ``target_names`` and ``DESCR``; or ``(images, target)``.

    Examples
    --------
    >>> images, y = load_digits_images(return_X_y=True)
    >>> images.shape, y.shape
    ((1797, 8, 8), (1797,))
    """
    d = load_digits()
    if return_X_y:
        return d.images, d.target
    return Bunch(images=d.images, target=d.target, target_names=d.target_names, DESCR=d.DESCR)


def read_idx(path):
    """Read an IDX file (plain or gzip-compressed) into a numpy array.

    Parameters
    ----------
    path : str or path-like
        IDX file, plain or gzipped (recognised by its content, not its name).

    Returns
    -------
    array : ndarray
        Native-endian, writable array; a ValueError is raised for a corrupt or truncated file.

    Examples
    --------
    >>> images = read_idx("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")  # doctest: +SKIP
    >>> images.shape  # doctest: +SKIP
    (10000, 28, 28)
    """
    raw = Path(path).read_bytes()
    try:
        raw = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise ValueError(f"{path}: bad gzip data ({exc}); the file is corrupt or truncated") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
    ndim, dtype = raw[3], np.dtype(_IDX_DTYPES[raw[2]])
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header")
    shape = tuple(int(s) for s in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(f"{path}: IDX header promises shape {shape} ({expected} bytes) "
                         f"but the file has {len(raw)} bytes; it is corrupt or truncated")
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _fetch(url, dest):
    """Download ``url`` to the file ``dest``; the single network access point (patched in tests)."""
    with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as f:
        shutil.copyfileobj(response, f)


def _find(directory, name):
    return next((p for p in (directory / name, directory / (name + ".gz")) if p.is_file()), None)


def _search_dirs(data_home):
    dirs = []
    for root in (data_home, os.environ.get("SKSSL_DATA")):
        if root:  # a root may hold the files directly or in a fashion-mnist/ subfolder
            dirs += [Path(root).expanduser(), Path(root).expanduser() / "fashion-mnist"]
    return dirs + [SYSTEM_DIR, Path("~/skssl_data/fashion-mnist").expanduser()]


def _download(names, data_home):
    root = data_home or os.environ.get("SKSSL_DATA") or "~/skssl_data"
    target = Path(root).expanduser() / "fashion-mnist"
    target.mkdir(parents=True, exist_ok=True)
    for name in (n for n in names if not _find(target, n)):
        url, dest = FASHION_MNIST_URL + name + ".gz", target / (name + ".gz")
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
        try:  # temp file + os.replace: an interrupted download never looks like a valid file
            _fetch(url, tmp)
            os.replace(tmp, dest)
        except Exception as exc:
            raise OSError(
                f"Could not download Fashion-MNIST from {url} ({exc}). Without internet access, "
                f"put the files {', '.join(n + '.gz' for n in names)} (plain or gzipped) into "
                f"{target} or a folder named by $SKSSL_DATA or data_home, "
                f"or on Debian/Ubuntu run `apt-get install dataset-fashion-mnist`.") from exc
        finally:
            tmp.unlink(missing_ok=True)  # also after Ctrl-C; a no-op once os.replace succeeded
    return target


def load_fashion_mnist(data_home=None, *, subset="train", return_X_y=False, download=True):
    """Load Fashion-MNIST from IDX files, downloading them only if no copy is found.

    Searched in order: ``data_home`` and ``data_home/fashion-mnist``, ``$SKSSL_DATA`` and
    ``$SKSSL_DATA/fashion-mnist``, ``/usr/share/datasets/fashion-mnist`` (Debian package
    ``dataset-fashion-mnist``), ``~/skssl_data/fashion-mnist``; the first folder holding the
    subset's files (plain or ``.gz``) wins. Otherwise, if ``download``, the ``.gz`` files are
    fetched into ``<data_home or $SKSSL_DATA or ~/skssl_data>/fashion-mnist`` (OSError on
    failure); if not, a FileNotFoundError lists every folder searched.

    Parameters
    ----------
    data_home : str or path-like, optional
    subset : {"train", "test", "all"}, default="train"
        60000 training images, 10000 test images, or both (train first).
    return_X_y : bool, default=False
    download : bool, default=True
        Allow downloading from the Zalando Research bucket.

    Returns
    -------
    data : sklearn.utils.Bunch
        ``images`` uint8 of shape (n, 28, 28), ``target`` int64 of shape (n,),
        ``target_names`` (the 10 class names) and ``DESCR``; or ``(images, target)``.

    Examples
    --------
    >>> X, y = load_fashion_mnist(subset="test", return_X_y=True, download=False)  # doctest: +SKIP
    >>> X.shape, y.shape  # doctest: +SKIP
    ((10000, 28, 28), (10000,))
    """
    if subset not in ("train", "test", "all"):
        raise ValueError(f"subset must be 'train', 'test' or 'all', got {subset!r}")
    parts = ["train", "test"] if subset == "all" else [subset]
    names = [n for p in parts for n in _FILES[p]]
    dirs = _search_dirs(data_home)
    found = next((d for d in dirs if all(_find(d, n) for n in names)), None)
    if found is None:
        if not download:
            raise FileNotFoundError(
                f"Fashion-MNIST files {names} (plain or .gz) not found in any of: "
                + ", ".join(map(str, dirs)) + ". Pass download=True, set $SKSSL_DATA or data_home, "
                "or run `apt-get install dataset-fashion-mnist`.")
        found = _download(names, data_home)
    images, target = [], []
    for p in parts:
        img, lbl = (read_idx(_find(found, n)) for n in _FILES[p])
        if img.ndim != 3 or lbl.ndim != 1 or len(img) != len(lbl):
            raise ValueError(f"{found}: {p} images {img.shape} and labels {lbl.shape} do not match")
        images.append(img.astype(np.uint8, copy=False))
        target.append(lbl.astype(np.int64))
    images, target = np.concatenate(images), np.concatenate(target)
    if return_X_y:
        return images, target
    return Bunch(images=images, target=target, target_names=np.array(FASHION_MNIST_CLASSES),
                 DESCR=f"Fashion-MNIST ({subset}, {len(target)} images) from {found}. "
                       "Xiao, Rasul & Vollgraf (2017), arXiv:1708.07747; MIT licence.")


class ImageFolder:
    """Image files under a folder, decoded lazily: a map-style dataset that skssl estimators stream.

    Every file PIL can open (JPEG, PNG, WebP, BMP, TIFF, GIF, ...) anywhere
    under ``root`` is an image. When ``root`` has sub-folders, each is a
    class: ``classes`` holds their sorted names and ``targets`` each image's
    class index, so ``X, y = load_image_folder(root, return_X_y=True)`` is
    what a Pipeline needs. Images are decoded when read (by
    ``torchvision.io.decode_image`` where it can, else PIL), in the
    estimator's DataLoader workers.

    The folder behaves as an array of images where scikit-learn needs one:
    it has ``shape`` ``(n, h, w, c)`` and ``dtype`` uint8, and indexing it
    with an array of indices (as cross-validation does) gives an
    ``ImageFolder`` over those files, without reading them.

    Parameters
    ----------
    root : str or path-like
        Folder to search, recursively.
    image_size : int or tuple (h, w), default=None
        Every image is resized so that it covers this size (shorter side
        first, aspect kept) and centre-cropped to it. ``None`` keeps the
        files' sizes; they must then all be equal, or the estimator's
        ``image_size`` must be set.
    channels : {1, 3} or None, default=None
        1 reads every image as grayscale, 3 as RGB; ``None`` follows the
        first image (grayscale files give 1, anything else 3).
    on_error : {"raise", "skip"}, default="raise"
        ``"raise"``: a file that cannot be decoded raises an error naming it
        when it is read. ``"skip"``: every file is decoded once when the
        folder is opened (a quick, reduced decode where the format allows),
        and those that fail are left out, with one warning that counts them.

    Attributes
    ----------
    files : list of str
        The image files, sorted by class and path.
    targets : ndarray of shape (n,) or None
        Class index of each file (``None`` without sub-folders).
    classes : list of str
        Sub-folder names, the class of index ``i`` being ``classes[i]``.
    skipped : list of str
        Files left out with ``on_error="skip"``.

    Examples
    --------
    >>> from skssl import SimCLR
    >>> from skssl.datasets import load_image_folder
    >>> X, y = load_image_folder("photos/", image_size=96, return_X_y=True)  # doctest: +SKIP
    >>> Z = SimCLR(image_size=64).fit(X).transform(X)  # doctest: +SKIP
    """

    dtype = np.dtype(np.uint8)

    def __init__(self, root, image_size=None, channels=None, on_error="raise"):
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip'; got {on_error!r}.")
        if channels not in (None, 1, 3):
            raise ValueError(f"channels must be 1, 3 or None; got {channels!r}.")
        root = Path(root)
        if not root.is_dir():
            raise ValueError(f"ImageFolder: {str(root)!r} is not a folder.")
        self.root, self.on_error, self.skipped = str(root), on_error, []
        self.image_size = None if image_size is None else _pair_size(image_size)
        files, labels, self.classes = _scan(root)
        if not files:
            raise ValueError(f"ImageFolder: no image files under {str(root)!r} (looked for {', '.join(sorted(_extensions())[:8])}, ...).")
        if on_error == "skip":
            ok = [_decodes(f) for f in files]
            self.skipped = [f for f, good in zip(files, ok) if not good]
            files = [f for f, good in zip(files, ok) if good]
            labels = [c for c, good in zip(labels, ok) if good]
            if self.skipped:
                warnings.warn(f"ImageFolder skipped {len(self.skipped)} unreadable file(s) of "
                              f"{len(self.skipped) + len(files)} under {self.root!r} (first: {self.skipped[0]}).", stacklevel=2)
            if not files:
                raise ValueError(f"ImageFolder: none of the image files under {self.root!r} could be read.")
        self.files = files
        self.targets = np.asarray(labels, dtype=np.int64) if self.classes else None
        h, w, mode = _header(files[0])
        self.channels = channels or (1 if mode in ("1", "L", "LA", "I", "I;16", "F", "P") and _is_gray(files[0], mode) else 3)
        self.image_shape = (*(self.image_size or (h, w)), self.channels)

    @property
    def shape(self):
        return (len(self.files), *self.image_shape)

    @property
    def ndim(self):
        return 4

    def __len__(self):
        return len(self.files)

    def __repr__(self):
        return f"ImageFolder({self.root!r}, {len(self)} images of {self.image_shape}, {len(self.classes)} classes)"

    def __getitem__(self, index):
        if isinstance(index, tuple) and len(index) == 2 and index[1] is Ellipsis:
            index = index[0]  # scikit-learn's _safe_indexing asks for X[indices, ...]
        if isinstance(index, (int, np.integer)):
            i = int(index)
            return self.read_image(i), (int(self.targets[i]) if self.targets is not None else -1)
        if isinstance(index, slice):
            index = np.arange(len(self))[index]
        from ._sources import check_integral_index

        index = check_integral_index(index)
        subset = copy.copy(self)
        subset.files = [self.files[i] for i in index]
        subset.targets = None if self.targets is None else self.targets[index]
        return subset

    def read_image(self, i):
        """Image ``i`` as a ``(c, h, w)`` uint8 tensor, at ``image_size`` when set."""
        from ._sources import resize_shorter_and_crop

        path = self.files[i]
        try:
            image = _decode(path, self.channels)
        except Exception as exc:
            raise ValueError(f"Could not read image file {path}: {exc}. Fix or remove it, or open the folder "
                             "with on_error='skip'.") from None
        if self.image_size is not None and tuple(image.shape[1:]) != self.image_size:
            image = resize_shorter_and_crop(image, self.image_size)
        return image


def load_image_folder(root, *, image_size=None, channels=None, on_error="raise", return_X_y=False):
    """Open a folder of image files (class sub-folders optional) as an :class:`ImageFolder`.

    Parameters
    ----------
    root, image_size, channels, on_error
        As for :class:`ImageFolder`.
    return_X_y : bool, default=False

    Returns
    -------
    data : sklearn.utils.Bunch
        ``images`` (the ImageFolder, read lazily), ``target`` (class index
        per image, or None), ``target_names`` and ``files``; or
        ``(images, target)``.
    """
    folder = ImageFolder(root, image_size=image_size, channels=channels, on_error=on_error)
    if return_X_y:
        return folder, folder.targets
    return Bunch(images=folder, target=folder.targets, target_names=np.array(folder.classes), files=folder.files)


def _pair_size(size):
    size = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    if len(size) != 2 or not all(isinstance(s, (int, np.integer)) and s >= 1 for s in size):
        raise ValueError(f"image_size must be a positive int or (h, w); got {size!r}.")
    return (int(size[0]), int(size[1]))


# Formats PIL registers that are not images it decodes by itself: save-only (PDF, PALM),
# identify-only stubs (BUFR, GRIB, HDF5, MPEG, WMF off Windows), Ghostscript's EPS, IPTC metadata.
_NOT_IMAGES = {"PDF", "PALM", "BUFR", "GRIB", "HDF5", "MPEG", "WMF", "EPS", "IPTC"}


def _extensions():
    from PIL import Image

    Image.init()
    return {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN and fmt not in _NOT_IMAGES}


def _image_files(folder, extensions, recursive=True):
    found = []
    for dirpath, dirnames, names in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if recursive else []
        found += [os.path.join(dirpath, n) for n in sorted(names)
                  if not n.startswith(".") and os.path.splitext(n)[1].lower() in extensions]
    return found


def _scan(root):
    """Image files under ``root``, with class labels from its immediate sub-folders that hold images."""
    extensions = _extensions()
    folders = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    per_class = {c: _image_files(root / c, extensions) for c in folders}
    classes = [c for c in folders if per_class[c]]
    if not classes:
        files = _image_files(root, extensions)
        return files, [-1] * len(files), []
    loose = _image_files(root, extensions, recursive=False)
    if loose:
        warnings.warn(f"ImageFolder: {len(loose)} image file(s) directly under {str(root)!r} are in no class "
                      f"sub-folder and are left out (first: {loose[0]}).", stacklevel=3)
    files = [f for c in classes for f in per_class[c]]
    labels = [i for i, c in enumerate(classes) for _ in per_class[c]]
    return files, labels, classes


def _header(path):
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.size[1], im.size[0], im.mode
    except Exception as exc:
        raise ValueError(f"Could not read image file {path}: {exc}.") from None


def _is_gray(path, mode):
    if mode != "P":
        return True
    from PIL import Image

    with Image.open(path) as im:  # a palette image is gray when its palette is
        rgb = np.asarray(im.convert("RGB"))
    return bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())


def _decodes(path):
    """Whether ``path`` decodes (JPEGs at reduced size, which still reads every byte)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.draft(im.mode, (max(1, im.size[0] // 8), max(1, im.size[1] // 8)))
            im.load()
        return True
    except Exception:
        return False


def _decode(path, channels):
    import torch
    from torchvision.io import ImageReadMode, decode_image, read_file

    mode = ImageReadMode.GRAY if channels == 1 else ImageReadMode.RGB
    try:
        with warnings.catch_warnings():  # torchvision 0.29 deprecates its decoders in favour of torchcodec
            warnings.simplefilter("ignore", DeprecationWarning)
            image = decode_image(read_file(path), mode=mode, apply_exif_orientation=True)
        if image.ndim == 4:  # an animated GIF: its first frame
            image = image[0]
        if image.shape[0] != channels:  # GIFs can ignore the read mode: let PIL convert
            raise ValueError("channel count")
        if image.dtype != torch.uint8:  # 16-bit PNGs: the high byte, as PIL's 8-bit conversion
            image = (image.to(torch.int32) >> 8).to(torch.uint8)
        return image
    except Exception:
        from PIL import Image, ImageOps

        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode.startswith("I;16") or im.mode == "I":  # 16/32-bit gray: scale, do not clip
                a = np.asarray(im, dtype=np.float64)
                im = Image.fromarray((a * 255.0 / (65535.0 if im.mode.startswith("I;16") else max(a.max(), 1))).astype(np.uint8))
            array = np.asarray(im.convert("L" if channels == 1 else "RGB"))
        array = array[:, :, None] if array.ndim == 2 else array
        return torch.from_numpy(array.transpose(2, 0, 1).copy())

from .video._data import make_moving_images  # noqa: E402  (video data lives with the video methods)
