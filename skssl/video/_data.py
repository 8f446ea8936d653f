"""Generated video: real images moving over a black canvas (Moving-MNIST style)."""

import math
from numbers import Integral

import numpy as np
from sklearn.utils import Bunch, check_random_state

__all__ = ["make_moving_images", "DIRECTIONS"]

# The 8 directions of motion, counter-clockwise from "right", in degrees
# (image rows grow downwards, so "up" moves to smaller row indices).
DIRECTIONS = ("right", "up-right", "up", "up-left", "left", "down-left", "down", "down-right")


def _object_images(source):
    """The images that move, as ``(n, h, w)`` uint8, with their labels (or None)."""
    from ..datasets import load_digits_images, load_fashion_mnist

    if isinstance(source, str):
        if source == "digits":
            images, target = load_digits_images(return_X_y=True)
            return np.round(images * (255.0 / 16.0)).astype(np.uint8), target
        if source == "fashion":
            images, target = load_fashion_mnist(return_X_y=True, download=False)
            return images, target
        raise ValueError(f"source must be 'digits', 'fashion' or an array of images; got {source!r}.")
    images = np.asarray(source)
    if images.ndim != 3 or images.shape[0] == 0 or images.dtype.kind not in "uif":
        raise ValueError(f"source as an array must hold numeric (n, h, w) images; got shape {images.shape}, "
                         f"dtype {images.dtype}.")
    if images.dtype != np.uint8:
        low, high = float(images.min()), float(images.max())
        images = np.round((images - low) * (255.0 / max(high - low, 1e-12))).astype(np.uint8)
    return images, None


def _resize(images, side):
    """Bilinear resize of ``(n, h, w)`` uint8 images to ``side x side`` (torch, CPU)."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(images).float()[:, None]
    x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False, antialias=side < images.shape[1])
    return x[:, 0].round().clamp(0, 255).to(torch.uint8).numpy()


def make_moving_images(n_videos=1000, n_frames=16, size=32, *, source="digits", n_objects=1, object_size=None,
                       speeds=(1.0, 2.0), bounce=True, random_state=None):
    """Generate clips of real images moving at constant velocity and bouncing off the walls.

    Each clip shows ``n_objects`` images (sklearn's digits, Fashion-MNIST or
    your own) on a black ``size x size`` canvas, as Moving MNIST does
    (Srivastava et al., 2015): each object starts at a random position, moves
    in one of 8 directions at one of ``speeds`` pixels per frame, and
    reflects off the canvas edges; overlapping objects combine by their
    maximum. The labels say what moves (the object's class) and how (its
    initial direction among 8 and its speed), so a probe can ask an
    embedding about appearance and about motion separately.

    A bounce turns the object, so the initial direction is not the
    direction of a clip that bounces (at 32 px, 12 frames and the default
    speeds, about three clips in four). ``directions`` gives the direction
    at every frame; ``bounce=False`` instead starts every object where it
    crosses the canvas without reaching a wall, so one direction holds for
    the whole clip.

    Parameters
    ----------
    n_videos : int, default=1000
        Number of clips.
    n_frames : int, default=16
        Frames per clip.
    size : int, default=32
        Canvas side in pixels.
    source : {"digits", "fashion"} or ndarray of shape (n, h, w), default="digits"
        The images that move: scikit-learn's 8x8 digits (upsampled), the
        Fashion-MNIST training set (read from local files, never downloaded
        here) or an array of grayscale images.
    n_objects : {1, 2}, default=1
        Objects moving in each clip.
    object_size : int, default=None
        Side of each object in pixels; ``None`` is ``size * 3 // 8`` (12 px
        on a 32 px canvas), small enough to travel.
    speeds : tuple of float, default=(1.0, 2.0)
        Speeds in pixels per frame, drawn uniformly per object.
    bounce : bool, default=True
        ``True``: objects start anywhere and reflect off the walls (Moving
        MNIST). ``False``: each object's start is drawn uniformly among the
        positions from which its whole path stays on the canvas, so it never
        touches a wall; this needs ``max(speeds) * (n_frames - 1) <= size -
        object_size``.
    random_state : int, RandomState or None
        Seed of every random choice (objects, directions, speeds, starts).

    Returns
    -------
    data : sklearn.utils.Bunch
        ``clips`` uint8 of shape (n_videos, n_frames, size, size); ``target``
        the class of the first object (-1 for an unlabelled ``source``
        array), ``direction`` its initial direction (0-7, see
        ``direction_names``), ``speed`` the index of its speed in
        ``speeds``; ``bounced`` whether it reflected off a wall within the
        clip (where it did, ``direction`` holds for the first frames only);
        ``directions`` (n_videos, n_frames) its direction of motion at each
        frame (after any reflection at that frame); ``objects`` (n_videos,
        n_objects, 3) holds class, initial direction and speed index of
        every object.

    Examples
    --------
    >>> from skssl.datasets import make_moving_images
    >>> data = make_moving_images(n_videos=10, n_frames=8, random_state=0)
    >>> data.clips.shape, data.direction.shape
    ((10, 8, 32, 32), (10,))
    """
    for name, value, low in (("n_videos", n_videos, 1), ("n_frames", n_frames, 1), ("size", size, 4)):
        if not isinstance(value, Integral) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}; got {value!r}.")
    if n_objects not in (1, 2):
        raise ValueError(f"n_objects must be 1 or 2; got {n_objects!r}.")
    object_size = size * 3 // 8 if object_size is None else object_size
    if not isinstance(object_size, Integral) or not 1 <= object_size <= size:
        raise ValueError(f"object_size must be an integer from 1 to size={size}; got {object_size!r}.")
    speeds = np.asarray(speeds, dtype=np.float64).ravel()
    if speeds.size == 0 or not np.all(np.isfinite(speeds)) or np.any(speeds <= 0):
        raise ValueError(f"speeds must be positive numbers; got {speeds.tolist()!r}.")
    if not isinstance(bounce, (bool, np.bool_)):
        raise ValueError(f"bounce must be True or False; got {bounce!r}.")
    room = size - object_size  # positions run over [0, room] on each axis
    travel = float(speeds.max()) * (n_frames - 1)
    if not bounce and travel > room:
        raise ValueError(
            f"bounce=False needs room for the fastest object to cross the canvas without reaching a wall: at "
            f"{speeds.max():g} px per frame over {n_frames - 1} steps it travels {travel:g} px, but an object of "
            f"{object_size} px on a {size} px canvas has {room} px; lower speeds or n_frames, or make object_size "
            "smaller.")
    rng = check_random_state(random_state)
    images, labels = _object_images(source)
    images = _resize(images, object_size) if images.shape[1:] != (object_size, object_size) else images

    which = rng.randint(len(images), size=(n_videos, n_objects))
    direction = rng.randint(8, size=(n_videos, n_objects))
    speed = rng.randint(len(speeds), size=(n_videos, n_objects))
    start = rng.uniform(0, room, size=(n_videos, n_objects, 2))
    angle = direction * (math.pi / 4)
    # (row, col) velocity: "up" is towards row 0
    velocity = speeds[speed][..., None] * np.stack([-np.sin(angle), np.cos(angle)], axis=-1)
    if not bounce:
        # The same draw, rescaled into the starts whose straight path ends on the canvas.
        shift = (n_frames - 1) * velocity
        low, high = np.maximum(0.0, -shift), room - np.maximum(0.0, shift)
        start = low + (start / max(room, 1)) * (high - low)
    # Bouncing is a reflection: unfold the straight path over [0, 2 room) and fold it back.
    steps = np.arange(n_frames)[:, None, None, None]
    path = start[None] + steps * velocity[None]  # (t, n, k, 2)
    # A reflection happens where the unfolded path crosses a multiple of room, on either axis.
    fold = np.floor(path / room) if room > 0 and bounce else np.zeros_like(path)
    bounced = (fold != fold[:1]).any(axis=(0, 3))  # (n, k)
    # Each reflection flips that axis's velocity: an odd fold moves the other way.
    turned = velocity[None] * np.where(fold % 2 == 1, -1.0, 1.0)
    directions = np.rint(np.arctan2(-turned[..., 0], turned[..., 1]) / (math.pi / 4)).astype(np.int64) % 8
    if not bounce:
        path = np.clip(path, 0, room)  # rounding alone could cross the wall
    elif room > 0:
        path = np.mod(path, 2 * room)
        path = np.where(path > room, 2 * room - path, path)
    else:
        path = np.zeros_like(path)
    corner = np.rint(path).astype(np.int64)

    clips = np.zeros((n_videos, n_frames, size, size), dtype=np.uint8)
    rows = np.arange(object_size)
    for k in range(n_objects):
        obj = images[which[:, k]]  # (n, s, s)
        for t in range(n_frames):
            r = corner[t, :, k, 0][:, None, None] + rows[None, :, None]
            c = corner[t, :, k, 1][:, None, None] + rows[None, None, :]
            n = np.arange(n_videos)[:, None, None]
            frame = clips[:, t]  # a view
            frame[n, r, c] = np.maximum(frame[n, r, c], obj)
    classes = labels[which] if labels is not None else np.full((n_videos, n_objects), -1)
    return Bunch(
        clips=clips, target=classes[:, 0].astype(np.int64), direction=direction[:, 0].astype(np.int64),
        speed=speed[:, 0].astype(np.int64), bounced=bounced[:, 0], directions=directions[:, :, 0].T,
        objects=np.stack([classes, direction, speed], axis=-1).astype(np.int64),
        direction_names=DIRECTIONS, speeds=tuple(float(s) for s in speeds),
        DESCR=f"{n_videos} generated clips of {n_frames} frames, {size}x{size} px, {n_objects} moving object(s).",
    )
