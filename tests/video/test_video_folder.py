"""Folders of clips: video files (PyAV) and folders of frame images, streamed into the video methods."""

import re
import sys
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from skssl import RotationSSL, TemporalClassificationSSL, TemporalContrastiveSSL
from skssl.datasets import VideoFolder, load_image_folder, load_video_folder, make_moving_images

TINY = dict(max_epochs=1, batch_size=4, backbone="small_cnn", random_state=0, num_workers=0)


def write_mp4(path, frames, fps=8):
    """Gray ``(t, h, w)`` uint8 frames as an H.264 (or MPEG-4 part 2) MP4 file."""
    av = pytest.importorskip("av")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for frame in frames:
            rgb = np.repeat(frame[..., None], 3, axis=-1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.fixture(scope="module")
def mp4_folder(tmp_path_factory):
    """6 clips of 8 frames at 16 px in two class folders; ``truncated`` keeps 60% of its bytes."""
    root = tmp_path_factory.mktemp("videos")
    clips = make_moving_images(6, 8, 16, random_state=0).clips
    for i, clip in enumerate(clips):
        write_mp4(root / f"class{i % 2}" / f"clip{i}.mp4", clip)
    truncated = root / "class1" / "clip3.mp4"
    data = truncated.read_bytes()
    truncated.write_bytes(data[: int(len(data) * 0.6)])
    return root, clips, truncated


def test_mp4_folder_with_a_truncated_clip_skips_it_and_trains_a_pipeline(mp4_folder):
    root, clips, truncated = mp4_folder
    with pytest.warns(UserWarning, match="left out 1"):
        X, y = load_video_folder(root, channels=1, on_error="skip", return_X_y=True)
    assert len(X) == 5 and list(X.skipped) == [str(truncated)]
    assert X.shape == (5, 8, 16, 16, 1) and y.tolist() == [0, 0, 0, 1, 1]
    # Decoded frames are the frames written, in order (lossy codec: close, not equal).
    decoded = X.read_clip(0)[:, 0].numpy().astype(float)
    assert np.abs(decoded - clips[0]).mean() < 3
    assert np.abs(decoded - clips[0][::-1]).mean() > 3 * np.abs(decoded - clips[0]).mean()
    # DataLoader workers decode the clips (num_workers=1), as they do image files.
    pipe = make_pipeline(TemporalContrastiveSSL(**{**TINY, "num_workers": 1}), LogisticRegression())
    predicted = pipe.fit(X, y).predict(X)
    assert predicted.shape == (5,) and set(predicted) <= {0, 1}
    assert pipe[0].video_shape_ == (8, 16, 16, 1)


def test_truncated_mp4_with_on_error_raise_names_the_file(mp4_folder):
    root, _, truncated = mp4_folder
    X = VideoFolder(root, channels=1)  # opening reads one clip; the bad one is found when read
    assert len(X) == 6
    with pytest.raises(ValueError, match=re.escape(str(truncated))):
        TemporalContrastiveSSL(**TINY).fit(X)


def test_reading_video_files_without_pyav_says_how_to_install_it(mp4_folder, monkeypatch):
    root, _, _ = mp4_folder
    monkeypatch.setitem(sys.modules, "av", None)  # import av now raises ImportError
    with pytest.raises(ImportError, match=re.escape("pip install 'skssl[video]'")):
        VideoFolder(root, channels=1, on_error="skip")


def save_frames(folder, values, size=16):
    """Frames named frame1.png ... frameN.png whose constant gray value is ``values[i]``."""
    folder.mkdir(parents=True, exist_ok=True)
    for t, v in enumerate(values):
        Image.fromarray(np.full((size, size), v, np.uint8)).save(folder / f"frame{t + 1}.png")


def test_frame_folders_read_in_natural_order_at_one_shape(tmp_path):
    # Two classes; clips of 12, 10 and 3 frames, one at another size; frames named frame1 .. frame12.
    save_frames(tmp_path / "up" / "a", [10 * t for t in range(12)])
    save_frames(tmp_path / "up" / "b", [10 * t for t in range(10)], size=24)
    save_frames(tmp_path / "down" / "c", [200 - 10 * t for t in range(10)])
    save_frames(tmp_path / "down" / "short", [0, 1, 2])
    with pytest.warns(UserWarning, match="fewer than"):
        X, y = load_video_folder(tmp_path, n_frames=8, image_size=16, on_error="skip", return_X_y=True)
    assert X.classes == ["down", "up"] and y.tolist() == [0, 1, 1]
    assert "fewer than the 8" in X.skipped[str(tmp_path / "down" / "short")]
    assert X.shape == (3, 8, 16, 16, 1)
    # The middle 8 frames in natural order (frame10 after frame9): 12 frames -> frames 3..10.
    assert X.read_clip(1)[:, 0, 8, 8].tolist() == [10 * t for t in range(2, 10)]
    assert X.read_clip(2)[:, 0, 8, 8].tolist() == [10 * t for t in range(1, 9)]
    assert X.read_clip(0)[:, 0, 8, 8].tolist() == [200 - 10 * t for t in range(1, 9)]
    Z = TemporalClassificationSSL(n_segments=2, n_frames=1, **TINY).fit(X).transform(X)
    assert Z.shape == (3, 128) and np.isfinite(Z).all()


def test_frame_folder_shorter_than_n_frames_raises_naming_it(tmp_path):
    save_frames(tmp_path / "a", range(8))
    save_frames(tmp_path / "b", range(4))
    X = VideoFolder(tmp_path, n_frames=6)
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "b")) + ".*fewer than the 6"):
        X.read_clip(1)


def test_image_and_clip_folders_are_refused_by_the_other_kind_of_method(tmp_path):
    save_frames(tmp_path / "clips" / "a", range(4))
    save_frames(tmp_path / "clips" / "b", range(4))
    with pytest.raises(ValueError, match="a VideoFolder of clips; train a video method"):
        RotationSSL(**TINY).fit(VideoFolder(tmp_path / "clips"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        images = load_image_folder(tmp_path / "clips").images
    with pytest.raises(ValueError, match="ImageFolder of images; open clips with"):
        TemporalContrastiveSSL(**TINY).fit(images)


class ClipDataset(torch.utils.data.Dataset):
    """Clips as ``(t, h, w)`` float arrays with labels, as a user's own Dataset would give them."""

    def __init__(self, clips):
        self.clips = clips

    def __len__(self):
        return len(self.clips)

    def __getitem__(self, i):
        return self.clips[i].astype(np.float32) / 255.0, 0


def test_a_torch_dataset_of_clips_streams_like_the_array():
    clips = make_moving_images(8, 6, 16, random_state=0).clips
    model = TemporalContrastiveSSL(**TINY, max_offset=1)
    from_dataset = model.fit(ClipDataset(clips)).transform(ClipDataset(clips))
    from_array = model.fit(clips.astype(np.float32) / 255.0).transform(clips.astype(np.float32) / 255.0)
    assert model.video_shape_ == (6, 16, 16, 1)
    np.testing.assert_allclose(from_dataset, from_array, rtol=1e-4, atol=1e-5)
