"""Small image data sets: sklearn's digits (embedded) and Fashion-MNIST (IDX files)."""
import gzip
import os
import shutil
import urllib.request
import zlib
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.utils import Bunch

__all__ = ["load_digits_images", "load_fashion_mnist", "read_idx", "FASHION_MNIST_CLASSES"]

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
