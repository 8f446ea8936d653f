"""Reading clips for :class:`skssl.datasets.VideoFolder`: what is a clip, and decoding one safely.

A clip is either a video file (decoded by PyAV, imported only when a video
file is read) or a folder whose files are the frames, in natural name order
(``frame2.png`` before ``frame10.png``). :func:`scan` finds them with the
image folder's walker (hidden entries, special files and looping links
handled the same way); :func:`read` decodes one into a ``(t, h, w, c)``
uint8 array of ``n_frames`` frames ``frame_stride`` apart from the middle of
the clip, every frame brought to one size by :func:`skssl._folder.fit_image`.
No torch here, as in :mod:`skssl._folder`.
"""

import os
import re

import numpy as np

from . import _folder

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ogv")


def import_av():
    """The ``av`` module (PyAV), or an ImportError saying how to install it."""
    try:
        import av
    except ImportError:
        raise ImportError("Reading video files needs PyAV, which is not installed: pip install 'skssl[video]' "
                          "(or pip install av). Folders of frame images need no extra.") from None
    return av


def natural_key(path):
    """Sort key that orders the numbers in file names by value (frame2 before frame10)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", os.path.basename(path))]


# ------------------------------------------------------------------ scanning
def scan(root, video_extensions, frame_extensions, strict):
    """Clips under ``root``, class labels from its sub-folders, and what was left out.

    A clip is a video file, or a folder holding frame images (its frames in
    natural order). A sub-folder of ``root`` that holds no frames itself is a
    class; without class sub-folders every clip at any depth is unlabelled.
    Returns ``(clips, labels, classes, loose, left_out)`` as
    :func:`skssl._folder.scan` does, ``clips`` being ``(path, frames)`` pairs
    with ``frames`` None for a video file.
    """
    walker = _folder._Walker(root, set(video_extensions) | set(frame_extensions), strict, owner="VideoFolder")

    def split(files):
        videos = [(f, None) for f in files if os.path.splitext(f)[1].lower() in video_extensions]
        frames = sorted((f for f in files if os.path.splitext(f)[1].lower() in frame_extensions), key=natural_key)
        return videos, frames

    def clips_under(folder, files=None, dirs=None):
        if files is None:
            files, dirs = walker.entries(folder)
        videos, frames = split(files)
        found = ([(folder, frames)] if frames else []) + videos
        for _, path in dirs:
            if walker.enter(path):
                found += clips_under(path)
        return found

    top_files, top_dirs = walker.entries(root)
    top_videos, top_frames = split(top_files)
    if top_frames:  # root itself is one clip's folder
        return [(str(root), top_frames)], [-1], [], [], walker.left_out
    per_class, unlabelled = {}, []
    for name, path in top_dirs:
        if not walker.enter(path):
            continue
        files, dirs = walker.entries(path)
        if split(files)[1]:  # a folder of frames directly under root: a clip, not a class
            unlabelled += clips_under(path, files, dirs)
        else:
            per_class[name] = clips_under(path, files, dirs)
    classes = [c for c, clips in per_class.items() if clips]
    if not classes:
        clips = top_videos + unlabelled
        return clips, [-1] * len(clips), [], [], walker.left_out
    clips = [clip for c in classes for clip in per_class[c]]
    labels = [i for i, c in enumerate(classes) for _ in per_class[c]]
    loose = [path for path, _ in top_videos + unlabelled]
    return clips, labels, classes, loose, walker.left_out


# ------------------------------------------------------------------ decoding
def window(total, n_frames, frame_stride):
    """Indices of ``n_frames`` frames ``frame_stride`` apart in the middle of ``total`` (all of them when None)."""
    if n_frames is None:
        return np.arange(0, total, frame_stride)
    span = (n_frames - 1) * frame_stride + 1
    if total < span:
        raise _folder.BadFile(f"has {total} frame(s), fewer than the {span} that n_frames={n_frames} at "
                              f"frame_stride={frame_stride} needs")
    start = (total - span) // 2
    return start + np.arange(n_frames) * frame_stride


def read(path, frames, n_frames, frame_stride, channels, size, limit):
    """Clip ``path`` as a ``(t, h, w, channels)`` uint8 array; every frame at ``size`` (default: its first frame's)."""
    if frames is not None:
        if not frames:
            raise _folder.BadFile("holds no frame images")
        out = []
        for i in window(len(frames), n_frames, frame_stride):
            try:
                out.append(_folder.read(frames[i], channels, size, limit, None))
            except Exception as exc:
                raise _folder.BadFile(f"frame {os.path.basename(frames[i])}: {_folder.reason(exc)}") from None
            size = size or out[0].shape[:2]
        return np.stack(out)
    return _read_video(path, n_frames, frame_stride, channels, size, limit)


def _read_video(path, n_frames, frame_stride, channels, size, limit):
    av = import_av()
    try:
        container = av.open(path)
    except av.error.FFmpegError as exc:
        raise _folder.BadFile(f"not a video PyAV can open, or cut short before its index ({_av_text(exc)})") from None
    with container:
        if not container.streams.video:
            raise _folder.BadFile("holds no video stream (or was cut short before it)")
        stream = container.streams.video[0]
        w, h = stream.codec_context.width, stream.codec_context.height
        if limit is not None and w * h > limit:
            raise _folder.BadFile(f"{w}x{h} = {w * h:,} pixels per frame, past the limit of {limit:,} (max_pixels)")
        declared = int(stream.frames or 0)  # 0 where the container does not say
        wanted = None if not declared else set(window(declared, n_frames, frame_stride).tolist())
        decoded, kept = 0, {}
        try:
            for frame in container.decode(stream):
                if wanted is None or decoded in wanted:
                    kept[decoded] = _folder.fit_image(frame.to_image(), channels, size)
                    size = size or kept[decoded].shape[:2]
                decoded += 1
                if wanted is not None and decoded > max(wanted):
                    break
        except av.error.FFmpegError as exc:
            raise _folder.BadFile(f"truncated or corrupt: decoding failed after {decoded} frame(s) "
                                  f"({_av_text(exc)})") from None
    if wanted is not None:
        if decoded <= max(wanted):
            raise _folder.BadFile(f"truncated: {decoded} of the {declared} frames it declares could be decoded")
        index = sorted(wanted)
    else:
        index = window(decoded, n_frames, frame_stride).tolist()
    if not index:
        raise _folder.BadFile("no frame could be decoded")
    return np.stack([kept[i] for i in index])


def video_channels(path):
    """1 for a video stored in a gray pixel format, else 3."""
    av = import_av()
    try:
        with av.open(path) as container:
            streams = container.streams.video
            fmt = (streams[0].codec_context.pix_fmt or "") if streams else ""
    except av.error.FFmpegError:
        return 3  # read() reports what is wrong with the file
    return 1 if fmt.startswith(("gray", "y8", "y16", "mono")) else 3


def _av_text(exc):
    text = str(exc).strip()
    return text.split("] ", 1)[-1] if text.startswith("[Errno") else text
