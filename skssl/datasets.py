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

from . import _folder, _video_folder

__all__ = ["load_digits_images", "load_fashion_mnist", "read_idx", "FASHION_MNIST_CLASSES", "ImageFolder", "make_moving_images",
           "load_image_folder", "VideoFolder", "load_video_folder", "make_synthetic_scenes"]

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
        Return ``(images, target)`` instead of a Bunch.

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
        Folder searched first for the IDX files, and downloaded into (see above).
    subset : {"train", "test", "all"}, default="train"
        60000 training images, 10000 test images, or both (train first).
    return_X_y : bool, default=False
        Return ``(images, target)`` instead of a Bunch.
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

    An image is a regular file whose extension is in ``extensions`` (by
    default every extension PIL registers for a format it decodes: JPEG,
    PNG, WebP, BMP, TIFF, GIF, ...) anywhere under ``root``; hidden files
    and folders (names starting with a dot) are ignored. When ``root`` has
    sub-folders holding images, each is a class: ``classes`` holds their
    sorted names and ``targets`` each image's class index, so ``X, y =
    load_image_folder(root, return_X_y=True)`` is what a Pipeline needs.
    Images are decoded by PIL when read, in the estimator's DataLoader
    workers: EXIF orientation applied, the first frame of an animation,
    8-bit (deeper images are scaled by ``value_range``, never clipped).

    Real file trees are read safely: named pipes, sockets and devices are
    no images (left out, never opened for a blocking read); a symbolic link
    to a folder is followed once, never back into the tree or to an
    ancestor; a file with more pixels than ``max_pixels`` is a bad file
    (checked from its header, before anything is decoded); JPEGs are decoded
    at a reduced size where ``image_size`` allows, and the crop is applied
    while resizing, so memory follows ``image_size``, not the files.

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
        when it is read, and so does a sub-folder that cannot be listed,
        when the folder is opened. ``"skip"``: every file is decoded once
        when the folder is opened (JPEGs at a reduced size, which still
        reads every byte); files that fail and folders that cannot be listed
        are left out, with one warning, and their reasons are in
        ``skipped``. A class left without files is no class.
    extensions : sequence of str, default=None
        File name extensions read as images, case-insensitive, with or
        without the dot; ``""`` stands for files without an extension.
        ``None``: every extension PIL registers for a format it decodes
        itself (not PDF or EPS, which it only writes or hands to
        Ghostscript).
    max_pixels : int, None or "auto", default="auto"
        Files whose header declares more pixels (width x height) are bad
        files: an error naming them, or skipped with the reason. ``"auto"``
        is PIL's ``Image.MAX_IMAGE_PIXELS`` (89,478,485 unless changed, about
        a quarter of a gigabyte as RGB); ``None`` sets no limit.
    value_range : tuple (low, high), default=None
        For images deeper than 8 bits (16- and 32-bit integers, floats):
        the values mapped to 0 and 255, the same for every file (values
        outside are clipped). ``None``: each type's own range, 0..65535 for
        16 bits, -2**31..2**31-1 for 32-bit integers and 0..1 for floats.

    Attributes
    ----------
    files : list of str
        The image files, sorted by class and path.
    targets : ndarray of shape (n,) or None
        Class index of each file (``None`` without sub-folders).
    classes : list of str
        Sub-folder names, the class of index ``i`` being ``classes[i]``.
    skipped : dict of str to str
        What was left out, path to reason: entries that are not regular
        files and symbolic links not followed (both settings of
        ``on_error``), and with ``on_error="skip"`` files that failed to
        decode (corrupt, truncated, past ``max_pixels``, permission denied)
        and folders that could not be listed.
    channels : int
        Channels of every image read.
    image_shape : tuple (h, w, c)
        ``image_size`` (or the first image's size) and ``channels``.

    Examples
    --------
    >>> from skssl import SimCLR
    >>> from skssl.datasets import load_image_folder
    >>> X, y = load_image_folder("photos/", image_size=96, return_X_y=True)  # doctest: +SKIP
    >>> Z = SimCLR(image_size=64).fit(X).transform(X)  # doctest: +SKIP
    """

    dtype = np.dtype(np.uint8)

    def __init__(self, root, image_size=None, channels=None, on_error="raise", *, extensions=None,
                 max_pixels="auto", value_range=None):
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip'; got {on_error!r}.")
        if channels not in (None, 1, 3):
            raise ValueError(f"channels must be 1, 3 or None; got {channels!r}.")
        if not (max_pixels in ("auto", None) or (isinstance(max_pixels, (int, np.integer))
                                                 and not isinstance(max_pixels, bool) and max_pixels >= 1)):
            raise ValueError(f"max_pixels must be a positive int, None or 'auto'; got {max_pixels!r}.")
        if value_range is not None:
            value_range = _check_value_range(value_range)
        root = Path(root)
        if not root.is_dir():
            raise ValueError(f"ImageFolder: {str(root)!r} is not a folder.")
        self.root, self.on_error, self.max_pixels, self.value_range = str(root), on_error, max_pixels, value_range
        self.image_size = None if image_size is None else _pair_size(image_size)
        self.extensions = _folder.check_extensions(extensions)
        files, labels, classes, loose, left_out = _folder.scan(root, self.extensions, strict=on_error == "raise")
        if loose:
            warnings.warn(f"ImageFolder: {len(loose)} image file(s) directly under {str(root)!r} are in no class "
                          f"sub-folder and are left out (first: {loose[0]}).", stacklevel=2)
        self.skipped = dict(left_out)
        if not files:
            raise ValueError(f"ImageFolder: no image files under {str(root)!r} (looked for "
                             f"{', '.join(sorted(self.extensions)[:8])}, ...){self._left_out_note()}.")
        if on_error == "skip":
            limit, n_found = _folder.pixel_limit(max_pixels), len(files)
            good = []
            for f in files:
                try:  # the read the estimator will do (a tiny target lets JPEGs decode at 1/8)
                    _folder.read(f, channels or 1, self.image_size or (8, 8), limit, value_range)
                    good.append(True)
                except Exception as exc:
                    self.skipped[f] = _folder.reason(exc)
                    good.append(False)
            files = [f for f, ok in zip(files, good) if ok]
            labels = [c for c, ok in zip(labels, good) if ok]
            if not files:
                raise ValueError(f"ImageFolder: none of the {n_found} image files under {self.root!r} could be read"
                                 f"{self._left_out_note()}.")
        used = set(labels)
        dropped = [c for i, c in enumerate(classes) if i not in used]
        if dropped:  # classes whose every file was skipped
            kept = [c for c in classes if c not in dropped]
            remap = {classes.index(c): i for i, c in enumerate(kept)}
            labels, classes = [remap[c] for c in labels], kept
        if self.skipped:
            listed = "; ".join(f"{p} ({why})" for p, why in list(self.skipped.items())[:3])
            more = f"; and {len(self.skipped) - 3} more" if len(self.skipped) > 3 else ""
            no_class = f" Sub-folder(s) {dropped} kept no readable file and are no class." if dropped else ""
            warnings.warn(f"ImageFolder left out {len(self.skipped)} entr{'y' if len(self.skipped) == 1 else 'ies'} "
                          f"under {self.root!r}, reasons in .skipped: {listed}{more}.{no_class}", stacklevel=2)
        self.files, self.classes = files, classes
        self.targets = np.asarray(labels, dtype=np.int64) if classes else None
        h, w, _, gray = self._header(files[0])
        self.channels = channels or (1 if gray else 3)
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

    def read_image(self, i, size=None):
        """Image ``i`` as a ``(c, h, w)`` uint8 tensor, at ``size`` (default ``image_size``) when set.

        Resizing covers the size and centre-crops it, in one step from the
        file (JPEGs decoded at a reduced size where the size allows).

        Parameters
        ----------
        i : int
            Index of the image in ``files``.
        size : int, tuple (h, w) or None, default=None
            Size to read the image at; ``None``: ``image_size``.

        Returns
        -------
        torch.Tensor of shape (c, h, w), uint8
            The decoded image.
        """
        import torch

        size = self.image_size if size is None else _pair_size(size)
        path = self.files[i]
        try:
            array = _folder.read(path, self.channels, size, _folder.pixel_limit(self.max_pixels), self.value_range)
        except Exception as exc:
            raise ValueError(self._read_error(path, exc)) from None
        return torch.from_numpy(array.transpose(2, 0, 1).copy())

    def _header(self, path):
        try:
            return _folder.header(path, _folder.pixel_limit(self.max_pixels))
        except Exception as exc:
            raise ValueError(self._read_error(path, exc)) from None

    def _read_error(self, path, exc):
        message = f"Could not read image file {path}: {_folder.reason(exc)}."
        if self.on_error == "skip":  # it decoded when the folder was opened
            return message + (" It was read when the folder was opened with on_error='skip', so it has changed "
                              "or been removed since; open the folder again.")
        return message + " Fix or remove it, or open the folder with on_error='skip' to leave out files that fail."

    def _left_out_note(self):
        if not self.skipped:
            return ""
        path, why = next(iter(self.skipped.items()))
        return f"; {len(self.skipped)} left out, reasons in .skipped (first: {path}: {why})"


def load_image_folder(root, *, image_size=None, channels=None, on_error="raise", extensions=None,
                      max_pixels="auto", value_range=None, return_X_y=False):
    """Open a folder of image files (class sub-folders optional) as an :class:`ImageFolder`.

    Parameters
    ----------
    root, image_size, channels, on_error, extensions, max_pixels, value_range
        As for :class:`ImageFolder`.
    return_X_y : bool, default=False
        Return ``(images, target)`` instead of a Bunch.

    Returns
    -------
    data : sklearn.utils.Bunch
        ``images`` (the ImageFolder, read lazily), ``target`` (class index
        per image, or None), ``target_names`` and ``files``; or
        ``(images, target)``.

    Examples
    --------
    >>> X, y = load_image_folder("scans/", image_size=64, on_error="skip", return_X_y=True)  # doctest: +SKIP
    """
    folder = ImageFolder(root, image_size=image_size, channels=channels, on_error=on_error, extensions=extensions,
                         max_pixels=max_pixels, value_range=value_range)
    if return_X_y:
        return folder, folder.targets
    return Bunch(images=folder, target=folder.targets, target_names=np.array(folder.classes), files=folder.files)


class VideoFolder:
    """Clips under a folder, as video files or folders of frames, decoded lazily: a dataset the video methods stream.

    A clip is a video file (extension in ``video_extensions``: MP4, AVI,
    WebM, MKV, MOV, ..., decoded by PyAV, the optional extra ``pip install
    'skssl[video]'``) or a folder holding frame images (extensions as for
    :class:`ImageFolder`), its frames sorted by name with numbers compared by
    value (``frame2.png`` before ``frame10.png``). When ``root`` has
    sub-folders that hold no frames themselves, each is a class: ``classes``
    holds their sorted names and ``targets`` each clip's class index, so
    ``X, y = load_video_folder(root, return_X_y=True)`` is what a Pipeline
    needs. Clips are decoded when read, in the estimator's DataLoader
    workers; the folder is walked as :class:`ImageFolder` walks one (hidden
    entries ignored, special files left out, links to folders followed once).

    Every clip is read as one shape, ``video_shape`` ``(t, h, w, c)``: the
    ``n_frames`` frames ``frame_stride`` apart in the middle of the clip
    (``None``: as many as the first clip has), each frame resized to cover
    ``image_size`` (``None``: the first clip's frame size) and centre-cropped.
    A clip with fewer frames than that is a bad file.

    The folder behaves as an array of clips where scikit-learn needs one:
    ``shape`` ``(n, t, h, w, c)``, ``dtype`` uint8, and indexing it with an
    array of indices (as cross-validation does) gives a ``VideoFolder`` over
    those clips, without reading them.

    Parameters
    ----------
    root : str or path-like
        Folder to search, recursively.
    n_frames : int, default=None
        Frames per clip. ``None``: the first clip's frame count (at
        ``frame_stride``); longer clips give their middle frames.
    frame_stride : int, default=1
        Step between the frames read (2 reads every other frame).
    image_size : int or tuple (h, w), default=None
        Frame size every clip is brought to (covering it, aspect kept, then
        centre-cropped). ``None``: the first clip's frame size.
    channels : {1, 3} or None, default=None
        1 reads frames as grayscale, 3 as RGB; ``None`` follows the first
        clip (gray frame images or a gray video pixel format give 1).
    on_error : {"raise", "skip"}, default="raise"
        ``"raise"``: a clip that cannot be decoded (corrupt, truncated, too
        short) raises an error naming its file when it is read. ``"skip"``:
        every clip is decoded once when the folder is opened; clips that fail
        are left out with one warning, their reasons in ``skipped``.
    video_extensions : sequence of str, default=None
        File name extensions read as video files, case-insensitive.
        ``None``: .mp4, .m4v, .mov, .avi, .mkv, .webm, .mpg, .mpeg, .ogv.
    frame_extensions : sequence of str, default=None
        Extensions of frame images; ``None``: every extension PIL decodes.
    max_pixels : int, None or "auto", default="auto"
        Frames with more pixels are bad files, as for :class:`ImageFolder`.

    Attributes
    ----------
    files : list of str
        The clips: a video file's path, or a frame folder's path.
    targets : ndarray of shape (n,) or None
        Class index of each clip (``None`` without class sub-folders).
    classes : list of str
        Class sub-folder names.
    skipped : dict of str to str
        What was left out, path to reason (bad clips with
        ``on_error="skip"``, special files and links not followed always).
    video_shape : tuple (t, h, w, c)
        The shape every clip is read as.

    Examples
    --------
    >>> import numpy as np, os, tempfile
    >>> from PIL import Image
    >>> from skssl.datasets import VideoFolder
    >>> root = tempfile.mkdtemp()
    >>> for clip in range(2):
    ...     os.makedirs(os.path.join(root, "waves", f"clip{clip}"))
    ...     for t in range(4):
    ...         frame = np.full((16, 16), 60 * t, np.uint8)
    ...         Image.fromarray(frame).save(os.path.join(root, "waves", f"clip{clip}", f"{t}.png"))
    >>> folder = VideoFolder(root)
    >>> folder.shape, folder.classes
    ((2, 4, 16, 16, 1), ['waves'])
    """

    dtype = np.dtype(np.uint8)

    def __init__(self, root, n_frames=None, frame_stride=1, image_size=None, channels=None, on_error="raise", *,
                 video_extensions=None, frame_extensions=None, max_pixels="auto"):
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip'; got {on_error!r}.")
        if channels not in (None, 1, 3):
            raise ValueError(f"channels must be 1, 3 or None; got {channels!r}.")
        for name, value in (("n_frames", n_frames), ("frame_stride", frame_stride)):
            if not (value is None and name == "n_frames") and not (
                    isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1):
                raise ValueError(f"{name} must be a positive int{' or None' if name == 'n_frames' else ''}; "
                                 f"got {value!r}.")
        if not (max_pixels in ("auto", None) or (isinstance(max_pixels, (int, np.integer))
                                                 and not isinstance(max_pixels, bool) and max_pixels >= 1)):
            raise ValueError(f"max_pixels must be a positive int, None or 'auto'; got {max_pixels!r}.")
        root = Path(root)
        if not root.is_dir():
            raise ValueError(f"VideoFolder: {str(root)!r} is not a folder.")
        self.root, self.on_error, self.max_pixels = str(root), on_error, max_pixels
        self.frame_stride = int(frame_stride)
        self.image_size = None if image_size is None else _pair_size(image_size)
        self.video_extensions = _folder.check_extensions(video_extensions or _video_folder.VIDEO_EXTENSIONS)
        self.frame_extensions = _folder.check_extensions(frame_extensions) - self.video_extensions
        clips, labels, classes, loose, left_out = _video_folder.scan(
            root, self.video_extensions, self.frame_extensions, strict=on_error == "raise")
        if loose:
            warnings.warn(f"VideoFolder: {len(loose)} clip(s) directly under {str(root)!r} are in no class "
                          f"sub-folder and are left out (first: {loose[0]}).", stacklevel=2)
        self.skipped = dict(left_out)
        if not clips:
            raise ValueError(f"VideoFolder: no clips under {str(root)!r} (looked for video files "
                             f"{', '.join(sorted(self.video_extensions))} and folders of frame images)"
                             f"{self._left_out_note()}.")
        self.files, self._frames = [p for p, _ in clips], [f for _, f in clips]
        self.n_frames, self.channels = n_frames, channels
        # The first clip that reads fixes the shape every clip is read as.
        good, n_found = [], len(clips)
        for i in range(n_found):
            if self.n_frames is not None and self.image_size is not None and self.channels is not None \
                    and on_error == "raise":
                break
            try:
                clip = self._decode(i)
            except ImportError:
                raise
            except Exception as exc:
                if on_error == "raise":
                    raise ValueError(self._read_error(self.files[i], exc)) from None
                self.skipped[self.files[i]] = _folder.reason(exc)
                good.append(False)
                continue
            if self.n_frames is None:
                self.n_frames = len(clip)  # the frames read at frame_stride
            self.image_size = self.image_size or tuple(int(s) for s in clip.shape[1:3])
            good.append(True)
        if on_error == "skip":
            keep = [i for i, ok in enumerate(good) if ok]
            self.files = [self.files[i] for i in keep]
            self._frames = [self._frames[i] for i in keep]
            labels = [labels[i] for i in keep]
            if not self.files:
                raise ValueError(f"VideoFolder: none of the {n_found} clips under {self.root!r} could be read"
                                 f"{self._left_out_note()}.")
            used = set(labels)
            dropped = [c for i, c in enumerate(classes) if i not in used]
            if dropped:  # classes whose every clip was skipped
                kept = [c for c in classes if c not in dropped]
                remap = {classes.index(c): i for i, c in enumerate(kept)}
                labels, classes = [remap[c] for c in labels], kept
            if self.skipped:
                listed = "; ".join(f"{p} ({why})" for p, why in list(self.skipped.items())[:3])
                more = f"; and {len(self.skipped) - 3} more" if len(self.skipped) > 3 else ""
                warnings.warn(f"VideoFolder left out {len(self.skipped)} entr{'y' if len(self.skipped) == 1 else 'ies'}"
                              f" under {self.root!r}, reasons in .skipped: {listed}{more}.", stacklevel=2)
        self.classes = classes
        self.targets = np.asarray(labels, dtype=np.int64) if classes else None
        self.video_shape = (self.n_frames, *self.image_size, self.channels)

    def _decode(self, i):
        """Clip ``i`` as a ``(t, h, w, c)`` array; on the first call also fixes ``channels``."""
        path, frames = self.files[i], self._frames[i]
        if self.channels is None:
            if frames is None:
                self.channels = _video_folder.video_channels(path)
            elif frames:
                self.channels = 1 if _folder.header(frames[0], _folder.pixel_limit(self.max_pixels))[3] else 3
        return _video_folder.read(path, frames, self.n_frames, self.frame_stride, self.channels or 3,
                                  self.image_size, _folder.pixel_limit(self.max_pixels))

    @property
    def shape(self):
        return (len(self.files), *self.video_shape)

    @property
    def ndim(self):
        return 5

    def __len__(self):
        return len(self.files)

    def __repr__(self):
        return f"VideoFolder({self.root!r}, {len(self)} clips of {self.video_shape}, {len(self.classes)} classes)"

    def __getitem__(self, index):
        if isinstance(index, tuple) and len(index) == 2 and index[1] is Ellipsis:
            index = index[0]
        if isinstance(index, (int, np.integer)):
            i = int(index)
            return self.read_clip(i), (int(self.targets[i]) if self.targets is not None else -1)
        if isinstance(index, slice):
            index = np.arange(len(self))[index]
        from ._sources import check_integral_index

        index = check_integral_index(index)
        subset = copy.copy(self)
        subset.files = [self.files[i] for i in index]
        subset._frames = [self._frames[i] for i in index]
        subset.targets = None if self.targets is None else self.targets[index]
        return subset

    def read_clip(self, i, size=None):
        """Clip ``i`` as a ``(t, c, h, w)`` uint8 tensor, its frames at ``size`` (default ``video_shape``'s).

        Parameters
        ----------
        i : int
            Index of the clip.
        size : int or tuple (h, w), default=None
            Frame size to read at instead of the folder's.

        Returns
        -------
        torch.Tensor of shape (t, c, h, w), uint8
            The clip's frames, decoded now.
        """
        import torch

        size = self.video_shape[1:3] if size is None else _pair_size(size)
        path = self.files[i]
        try:
            clip = _video_folder.read(path, self._frames[i], self.n_frames, self.frame_stride, self.channels, size,
                                      _folder.pixel_limit(self.max_pixels))
        except ImportError:
            raise
        except Exception as exc:
            raise ValueError(self._read_error(path, exc)) from None
        return torch.from_numpy(clip.transpose(0, 3, 1, 2).copy())

    def _read_error(self, path, exc):
        message = f"Could not read the clip {path}: {_folder.reason(exc)}."
        if self.on_error == "skip":
            return message + (" It was read when the folder was opened with on_error='skip', so it has changed "
                              "or been removed since; open the folder again.")
        return message + " Fix or remove it, or open the folder with on_error='skip' to leave out clips that fail."

    def _left_out_note(self):
        if not self.skipped:
            return ""
        path, why = next(iter(self.skipped.items()))
        return f"; {len(self.skipped)} left out, reasons in .skipped (first: {path}: {why})"


def load_video_folder(root, *, n_frames=None, frame_stride=1, image_size=None, channels=None, on_error="raise",
                      video_extensions=None, frame_extensions=None, max_pixels="auto", return_X_y=False):
    """Open a folder of clips (video files or folders of frames; class sub-folders optional) as a :class:`VideoFolder`.

    Parameters
    ----------
    root : str or path-like
        Folder to search, recursively.
    n_frames : int, default=None
        Frames per clip (the middle ones); ``None``: the first clip's count.
    frame_stride : int, default=1
        Step between the frames read.
    image_size : int or tuple (h, w), default=None
        Frame size of every clip; ``None``: the first clip's.
    channels : {1, 3} or None, default=None
        Grayscale or RGB; ``None`` follows the first clip.
    on_error : {"raise", "skip"}, default="raise"
        Raise on a clip that cannot be read, or leave it out (with a
        warning; reasons in ``skipped``).
    video_extensions : sequence of str, default=None
        Extensions of video files (see :class:`VideoFolder`).
    frame_extensions : sequence of str, default=None
        Extensions of frame images (see :class:`VideoFolder`).
    max_pixels : int, None or "auto", default="auto"
        Frames with more pixels are bad files.
    return_X_y : bool, default=False
        Return ``(clips, target)`` instead of a Bunch.

    Returns
    -------
    data : sklearn.utils.Bunch
        ``clips`` (the VideoFolder, read lazily), ``target`` (class index
        per clip, or None), ``target_names`` and ``files``; or
        ``(clips, target)``.

    Examples
    --------
    >>> from skssl import TemporalContrastiveSSL
    >>> from skssl.datasets import load_video_folder
    >>> X, y = load_video_folder("videos/", n_frames=8, image_size=32, on_error="skip",
    ...                          return_X_y=True)  # doctest: +SKIP
    >>> Z = TemporalContrastiveSSL(max_epochs=1).fit_transform(X)  # doctest: +SKIP
    """
    folder = VideoFolder(root, n_frames=n_frames, frame_stride=frame_stride, image_size=image_size,
                         channels=channels, on_error=on_error, video_extensions=video_extensions,
                         frame_extensions=frame_extensions, max_pixels=max_pixels)
    if return_X_y:
        return folder, folder.targets
    return Bunch(clips=folder, target=folder.targets, target_names=np.array(folder.classes), files=folder.files)


def _pair_size(size):
    size = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    if len(size) != 2 or not all(isinstance(s, (int, np.integer)) and s >= 1 for s in size):
        raise ValueError(f"image_size must be a positive int or (h, w); got {size!r}.")
    return (int(size[0]), int(size[1]))


def _check_value_range(value_range):
    try:
        low, high = (float(v) for v in value_range)
    except (TypeError, ValueError):
        raise ValueError(f"value_range must be None or (low, high); got {value_range!r}.") from None
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise ValueError(f"value_range must be two finite numbers with low < high; got {value_range!r}.")
    return (low, high)


def __getattr__(name):
    # The video data lives with the video methods (which import torch); read it on first use,
    # so that this module still imports without torch.
    if name == "make_moving_images":
        from .video._data import make_moving_images

        return make_moving_images
    if name == "make_synthetic_scenes":
        from ._scenes import make_synthetic_scenes

        return make_synthetic_scenes
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
