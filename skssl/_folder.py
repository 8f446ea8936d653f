"""Reading real file trees for :class:`skssl.datasets.ImageFolder`: what is an image, and decoding it safely.

Two halves:

- :func:`scan`: the image files under a root, walked once: hidden entries
  ignored, only regular files kept (a FIFO would block the reader forever),
  symbolic links to folders followed at most once and never back into the
  tree or an ancestor, unreadable folders reported instead of lost.
- :func:`read`: one file decoded by PIL into an ``(h, w, c)`` uint8 array,
  never larger in memory than its header promises and the pixel limit
  allows: the limit is checked before any pixel is decoded, JPEGs are
  decoded at a reduced size (``draft``) when the target size allows, the
  crop box is applied while resizing (memory follows the target size, not
  the aspect ratio), EXIF orientation applied, deep images scaled by their
  type's range.

Failures raise :class:`BadFile` (or the OS/PIL error); :func:`reason` turns
any of them into the short text that ``ImageFolder.skipped`` and error
messages show. No torch here: :mod:`skssl.datasets` imports without it.
"""

import contextlib
import math
import os
import stat
import threading
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

# Formats PIL registers that are not images it decodes by itself: save-only (PDF, PALM),
# identify-only stubs (BUFR, GRIB, HDF5, MPEG, WMF off Windows), Ghostscript's EPS, IPTC metadata.
_NOT_IMAGES = {"PDF", "PALM", "BUFR", "GRIB", "HDF5", "MPEG", "WMF", "EPS", "IPTC"}

# EXIF orientation tag -> the PIL transpose that undoes it (as ImageOps.exif_transpose).
_ORIENTATION = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE",
                6: "ROTATE_270", 7: "TRANSVERSE", 8: "ROTATE_90"}

# PIL's own limit is a module global; raising it for one file must not race another thread's open.
_PIL_LIMIT_LOCK = threading.Lock()


class BadFile(ValueError):
    """A file that cannot be an image to read; the message says why."""


def pil_extensions():
    """Lower-case extensions (with the dot) of every format PIL opens and decodes itself."""
    Image.init()
    return {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN and fmt not in _NOT_IMAGES}


def check_extensions(extensions):
    """``None`` -> PIL's extensions; else a set of lower-case ``.ext`` strings ("" = no extension)."""
    if extensions is None:
        return pil_extensions()
    if isinstance(extensions, str):
        extensions = (extensions,)
    try:
        items = list(extensions)
    except TypeError:
        items = None
    if not items or not all(isinstance(e, str) for e in items):
        raise ValueError(f"extensions must be None or a non-empty sequence of strings such as ('.png', '.jpg'); "
                         f"got {extensions!r}.")
    return {("." + e.lower().lstrip(".")) if e else "" for e in items}


def pixel_limit(max_pixels):
    """The pixel limit in force: PIL's ``Image.MAX_IMAGE_PIXELS`` for ``"auto"`` (read now), else as given."""
    if max_pixels == "auto":
        return Image.MAX_IMAGE_PIXELS
    return max_pixels


# ------------------------------------------------------------------ scanning
def scan(root, extensions, strict):
    """Image files under ``root``, class labels from its sub-folders, and what was left out.

    Returns ``(files, labels, classes, loose, left_out)``: ``labels[i]`` indexes
    ``classes`` (-1 without class sub-folders); ``loose`` are image files lying
    directly under ``root`` beside class sub-folders; ``left_out`` is a list of
    ``(path, reason)``: files that are not regular files, links not followed
    and, unless ``strict`` (then a ValueError names it), folders that cannot be read.
    """
    walker = _Walker(root, extensions, strict)
    top_files, top_dirs = walker.entries(root)
    per_class = {name: walker.files_under(path) for name, path in top_dirs if walker.enter(path)}
    classes = [c for c, files in per_class.items() if files]
    if not classes:  # no class sub-folders: every image file, at any depth, without labels
        files = top_files + [f for fs in per_class.values() for f in fs]
        return files, [-1] * len(files), [], [], walker.left_out
    files = [f for c in classes for f in per_class[c]]
    labels = [i for i, c in enumerate(classes) for _ in per_class[c]]
    return files, labels, classes, top_files, walker.left_out


class _Walker:
    """Walks folders in sorted order (a folder's files before its sub-folders, as os.walk), each folder once."""

    def __init__(self, root, extensions, strict, owner="ImageFolder"):
        self.extensions, self.strict, self.left_out, self.owner = extensions, strict, [], owner
        self.root_real = os.path.realpath(root)
        st = os.stat(root)
        self.seen = {(st.st_dev, st.st_ino)}  # (device, inode) of every folder entered

    def entries(self, folder):
        """``(image files, [(name, path) of sub-folders])`` directly in ``folder``."""
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            self._unreadable(folder, exc)
            return [], []
        files, dirs = [], []
        for e in entries:
            if e.name.startswith("."):  # hidden files and macOS litter (.DS_Store, ._x.jpg)
                continue
            if _is_dir(e):
                dirs.append((e.name, e.path))
            elif os.path.splitext(e.name)[1].lower() in self.extensions:
                kind = _not_regular(e)
                if kind:
                    self.left_out.append((e.path, f"not a regular file ({kind})"))
                else:
                    files.append(e.path)
        return files, dirs

    def files_under(self, folder):
        found, stack = [], [folder]
        while stack:
            files, dirs = self.entries(stack.pop())
            found += files
            stack += [path for _, path in reversed(dirs) if self.enter(path)]
        return found

    def enter(self, path):
        """Whether to walk the folder ``path``: never twice, never through a link back into the tree."""
        try:
            st = os.stat(path)
        except OSError as exc:
            self._unreadable(path, exc)
            return False
        key = (st.st_dev, st.st_ino)
        if os.path.islink(path):
            real = os.path.realpath(path)
            inside = real == self.root_real or real.startswith(self.root_real.rstrip(os.sep) + os.sep)
            ancestor = self.root_real.startswith(real.rstrip(os.sep) + os.sep)
            if inside or ancestor or key in self.seen:
                where = "inside the folder" if inside else "an ancestor of the folder" if ancestor else "a folder read already"
                self.left_out.append((path, f"symbolic link to {where} ({real}), not followed"))
                return False
        elif key in self.seen:  # a bind mount or hard-linked folder loop
            self.left_out.append((path, "a folder read already (same device and inode), not read twice"))
            return False
        self.seen.add(key)
        return True

    def _unreadable(self, folder, exc):
        why = exc.strerror or str(exc)
        if self.strict:
            raise ValueError(f"{self.owner}: cannot read the folder {folder} ({why}). Fix its permissions or remove "
                             "it, or open the folder with on_error='skip' to leave it out.") from None
        self.left_out.append((str(folder), f"folder cannot be read ({why})"))


def _is_dir(entry):
    try:
        return entry.is_dir()  # follows links: a linked folder is a folder, checked in _Walker.enter
    except OSError:
        return False


def _not_regular(entry):
    """What the entry is when it is no regular file (None for a regular file, or a broken link)."""
    try:
        if entry.is_file():
            return None
        mode = entry.stat().st_mode
    except OSError:  # a broken link: it is read as a file and fails with "no such file"
        return None
    for test, kind in ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return kind
    return "not a file"


# ------------------------------------------------------------------ decoding
@contextlib.contextmanager
def open_image(path, limit):
    """PIL image of ``path`` (header read, no pixels decoded), refused when it is no regular file or too large."""
    # O_NONBLOCK: opening a FIFO for reading must not wait for a writer (it is refused just below).
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise BadFile("not a regular file" + (" (a named pipe)" if stat.S_ISFIFO(mode) else ""))
        with _pil_open(f, limit) as im:
            w, h = im.size
            if limit is not None and w * h > limit:
                raise BadFile(f"{w}x{h} = {w * h:,} pixels, past the limit of {limit:,} (max_pixels): "
                              "a decompression bomb, or raise max_pixels")
            yield im


def _pil_open(f, limit):
    with warnings.catch_warnings():  # the limit in force is ours, checked by the caller with the file's size
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            return Image.open(f)
        except Image.DecompressionBombError:
            pass
        # Past twice PIL's own limit: open the header without PIL's check (ours follows), without
        # racing another thread's open while PIL's module-wide limit is lifted.
        with _PIL_LIMIT_LOCK:
            saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                f.seek(0)
                return Image.open(f)
            finally:
                Image.MAX_IMAGE_PIXELS = saved


def orientation(im):
    """EXIF orientation (1-8) of an open image; 1 when absent or unreadable."""
    try:
        value = int(im.getexif().get(0x0112, 1))
    except Exception:  # a damaged EXIF block does not make the pixels unreadable
        return 1
    return value if value in _ORIENTATION else 1


def header(path, limit):
    """``(h, w, mode, gray)`` of ``path`` as decoded: EXIF orientation applied to the size."""
    with open_image(path, limit) as im:
        w, h = im.size
        turn = orientation(im)
        if turn in (5, 6, 7, 8):
            w, h = h, w
        mode = im.mode
        gray = mode in ("1", "L", "LA", "I", "F") or mode.startswith("I;16")
        if mode in ("P", "PA"):  # a palette image is gray when its palette is
            rgb = np.asarray(im.convert("RGB"))
            gray = bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())
    return h, w, mode, gray


def read(path, channels, size, limit, value_range):
    """Image ``path`` as an ``(h, w, channels)`` uint8 array; covering ``size`` and centre-cropped when given."""
    with open_image(path, limit) as im:
        turn = orientation(im)
        if size is not None and im.format == "JPEG":
            # Decode at a power-of-two reduction that still covers the target (libjpeg's DCT scaling).
            w, h = im.size
            oh, ow = (w, h) if turn in (5, 6, 7, 8) else (h, w)
            factor = max(size[0] / oh, size[1] / ow)
            if factor < 0.5:
                need_h, need_w = math.ceil(oh * factor), math.ceil(ow * factor)
                im.draft("L" if channels == 1 else "RGB", (need_h, need_w) if turn in (5, 6, 7, 8) else (need_w, need_h))
        im.load()
        if turn != 1:
            im = im.transpose(getattr(Image.Transpose, _ORIENTATION[turn]))
        return fit_image(im, channels, size, value_range)


def fit_image(im, channels, size, value_range=None):
    """A decoded PIL image as an ``(h, w, channels)`` uint8 array, covering ``size`` and centre-cropped when given."""
    im = _eight_bit(im, channels, value_range)
    if size is not None and im.size != (size[1], size[0]):
        im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR, box=_cover_box(im.size, size),
                       reducing_gap=3.0)
    array = np.asarray(im)
    return array[:, :, None] if array.ndim == 2 else array


def _cover_box(wh, size):
    """The centred source box (left, top, right, bottom) with the target's aspect ratio, as large as fits."""
    w, h = wh
    factor = max(size[0] / h, size[1] / w)
    bw, bh = size[1] / factor, size[0] / factor
    left, top = max(0.0, (w - bw) / 2), max(0.0, (h - bh) / 2)
    return (left, top, min(float(w), left + bw), min(float(h), top + bh))


def type_range(mode):
    """Values that map to 0..255 for a deep PIL mode: its type's range (floats: 0..1)."""
    if mode == "F":
        return (0.0, 1.0)
    if mode == "I":
        return (-2.0 ** 31, 2.0 ** 31 - 1)
    if mode.startswith("I;16") and mode.endswith("S"):
        return (-32768.0, 32767.0)
    return (0.0, 65535.0)  # I;16, I;16B, I;16L, I;16N


def _eight_bit(im, channels, value_range):
    target = "L" if channels == 1 else "RGB"
    if im.mode in ("I", "F") or im.mode.startswith("I;16"):
        # Deep gray: one range for every image (the type's, or the folder's value_range), never
        # each image's own maximum, so that equal values are equally bright in every file.
        low, high = value_range or type_range(im.mode)
        im = Image.fromarray(_scale_to_uint8(np.asarray(im), low, high))
    if im.mode != target:
        im = im.convert(target)
    return im


def _scale_to_uint8(a, low, high, chunk=1 << 22):
    # In chunks, so that a large deep image never needs a float64 copy of itself.
    out = np.empty(a.shape, np.uint8)
    src, dst = a.reshape(-1), out.reshape(-1)
    for start in range(0, src.size, chunk):
        x = src[start:start + chunk].astype(np.float64)
        if np.isnan(x).any():
            raise BadFile("holds NaN pixel values")
        x -= low
        x *= 255.0 / (high - low)
        np.clip(x, 0, 255, out=x)
        dst[start:start + chunk] = np.rint(x)
    return out


def reason(exc):
    """Short text saying why reading a file failed."""
    if isinstance(exc, BadFile):
        return str(exc)
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, FileNotFoundError):
        return "no such file (removed, or a broken link)"
    if isinstance(exc, UnidentifiedImageError):
        return "not an image PIL can read (unknown format or a corrupt header)"
    text = str(exc) or type(exc).__name__
    if "truncated" in text.lower():
        return f"truncated ({text})"
    return f"corrupt or unreadable ({type(exc).__name__}: {text})"
