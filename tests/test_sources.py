"""Real data: memmaps, h5py-like arrays, torch Datasets and image folders stream through one loop."""

import os
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skssl import RotationSSL, SimCLR
from skssl._images import SampleLayout
from skssl._sources import is_streaming_input, open_source
from skssl.backbones import build_backbone
from skssl.datasets import ImageFolder, load_digits_images, load_image_folder

TINY = dict(max_epochs=2, batch_size=32, random_state=0)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits_images(return_X_y=True)
    return (X * 255 / 16).round().astype(np.uint8), y


class IncreasingOnly:
    """An h5py-like array: integer-array reads must be strictly increasing."""

    def __init__(self, array):
        self.array, self.shape, self.dtype = array, array.shape, array.dtype
        self.reads = 0

    def __getitem__(self, index):
        index = np.asarray(index)
        if index.ndim != 1 or np.any(np.diff(index) <= 0):
            raise TypeError("Indexing elements must be in increasing order")
        self.reads += 1
        return self.array[index]


class Images(torch.utils.data.Dataset):
    def __init__(self, images, labels):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return torch.from_numpy(self.images[i])[None], int(self.labels[i])


@pytest.mark.parametrize("cls", [RotationSSL, SimCLR])
def test_memmap_fit_equals_the_in_memory_fit(cls, digits, tmp_path):
    X = digits[0][:160]
    path = tmp_path / "X.npy"
    np.save(path, X)
    mm = np.load(path, mmap_mode="r")
    assert is_streaming_input(mm) and not is_streaming_input(X) and not is_streaming_input(mm[[0, 1]])
    in_memory = cls(**TINY).fit(X)
    streamed = cls(**TINY).fit(mm)
    np.testing.assert_array_equal(in_memory.transform(X), streamed.transform(mm))
    assert in_memory.history_[-1]["loss"] == streamed.history_[-1]["loss"]
    np.testing.assert_array_equal(in_memory.channel_mean_, streamed.channel_mean_)


def test_float_memmap_scale_comes_from_a_sample_and_nan_rows_are_named(digits, tmp_path):
    X = digits[0][:64].astype(np.float32) / 255
    mm = np.lib.format.open_memmap(tmp_path / "f.npy", mode="w+", dtype=np.float32, shape=X.shape)
    mm[:] = X
    est = RotationSSL(**TINY).fit(mm)
    assert est.scale_ == (float(X.min()), float(X.max()))
    mm[5, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinity in rows \[5\]"):
        est.transform(mm)


def test_h5py_like_array_is_read_in_increasing_order(digits):
    X = digits[0][:96]
    array = IncreasingOnly(X)
    est = RotationSSL(**TINY).fit(array)
    assert array.reads > 0
    np.testing.assert_array_equal(est.transform(array), RotationSSL(**TINY).fit(X).transform(X))


def test_h5py_dataset_when_installed(digits, tmp_path):
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["images"] = digits[0][:64]
    with h5py.File(tmp_path / "d.h5", "r") as f:
        Z = RotationSSL(**TINY).fit(f["images"]).transform(f["images"])
    assert Z.shape == (64, 128)


def test_torch_dataset_of_image_label_pairs(digits):
    X, y = digits[0][:96], digits[1][:96]
    est = RotationSSL(**TINY, num_workers=0).fit(Images(X, y))
    np.testing.assert_array_equal(est.transform(Images(X, y)), RotationSSL(**TINY).fit(X).transform(X))
    assert est.n_features_in_ == 64


def test_dataset_of_mixed_sizes_needs_image_size(digits):
    class Mixed(torch.utils.data.Dataset):
        def __len__(self):
            return 40

        def __getitem__(self, i):
            side = 16 + (i % 3) * 4
            return torch.full((1, side, side), i, dtype=torch.uint8)

    with pytest.raises(ValueError, match="set image_size"):
        RotationSSL(**TINY).fit(Mixed())
    est = RotationSSL(**TINY, image_size=12).fit(Mixed())
    assert est.image_shape_ == (12, 12, 1) and est.transform(Mixed()).shape == (40, 128)


def _write_folder(root, images, labels, sizes, rng):
    for i, (image, label) in enumerate(zip(images, labels)):
        size = int(sizes[i])
        pil = Image.fromarray(image).resize((size, size + (i % 2) * 8), Image.BILINEAR)
        folder = root / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        if i % 2:
            pil.save(folder / f"{i:05d}.jpg", quality=90)
        else:
            pil.save(folder / f"{i:05d}.png")


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory, digits):
    """1,200 PNG and JPEG files of 64-160 px (digits, and Fashion-MNIST where installed), class sub-folders."""
    rng = np.random.default_rng(0)
    X, y = digits
    images, labels = list(X[:1000]), list(y[:1000])
    fashion = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
    if os.path.exists(fashion):
        from skssl.datasets import load_fashion_mnist

        F, fy = load_fashion_mnist(subset="test", return_X_y=True, download=False)
        images += list(F[:200])
        labels += list(fy[:200] + 10)
    else:
        images += list(X[1000:1200])
        labels += list(y[1000:1200])
    root = tmp_path_factory.mktemp("photos")
    _write_folder(root, images, labels, rng.integers(64, 161, len(images)), rng)
    return root


def test_image_folder_reads_classes_shapes_and_indexes_lazily(photo_folder):
    folder = ImageFolder(photo_folder, image_size=32)
    assert len(folder) == 1200 and folder.shape == (1200, 32, 32, 1) and folder.targets.shape == (1200,)
    image, target = folder[3]
    assert image.dtype == torch.uint8 and image.shape == (1, 32, 32) and target == folder.targets[3]
    subset = folder[np.array([5, 1, 7]), ...]
    assert isinstance(subset, ImageFolder) and subset.files == [folder.files[i] for i in (5, 1, 7)]
    assert list(subset.targets) == [folder.targets[i] for i in (5, 1, 7)]
    X, y = load_image_folder(photo_folder, image_size=32, return_X_y=True)
    assert np.array_equal(y, folder.targets)


def test_pipeline_cross_validates_on_a_folder_of_photos(photo_folder):
    X, y = load_image_folder(photo_folder, return_X_y=True)  # mixed sizes: the estimator resizes
    # The setting was SimCLR(image_size=64); 32 px, the small CNN and one epoch keep the
    # suite quick (measured at 64 px: 0.72 and 0.70 against chance 0.05, about 100 s on one thread).
    model = SimCLR(image_size=32, backbone="small_cnn", max_epochs=1, batch_size=64, random_state=0, num_workers=2)
    scores = cross_val_score(make_pipeline(model, StandardScaler(), LogisticRegression(max_iter=300)), X, y, cv=2)
    chance = 1 / len(np.unique(y))
    assert scores.mean() > 5 * chance, scores


def test_corrupt_file_is_named_or_skipped_with_one_warning(tmp_path, digits):
    X, y = digits
    _write_folder(tmp_path, X[:40], y[:40] % 2, np.full(40, 24), np.random.default_rng(0))
    bad = tmp_path / "class_1" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(ValueError, match="broken.png"):
        RotationSSL(**TINY, num_workers=0).fit(ImageFolder(tmp_path, image_size=24))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        folder = ImageFolder(tmp_path, image_size=24, on_error="skip")
    assert [str(w.message) for w in caught if "left out 1 entry" in str(w.message) and "broken.png" in str(w.message)]
    assert len(folder) == 40 and list(folder.skipped) == [str(bad)]
    RotationSSL(**TINY, num_workers=0).fit(folder)


def test_empty_folder_is_a_clear_error(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match="no image files"):
        ImageFolder(tmp_path)


def test_folder_reads_16_bit_gif_and_leaves_out_what_is_not_an_image(tmp_path):
    ramp = (np.arange(32 * 32).reshape(32, 32) * 64).astype(np.uint16)  # 16-bit, 0..65472
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir(), (tmp_path / "thumbs").mkdir()
    Image.fromarray(ramp).save(tmp_path / "a" / "deep.png")
    Image.fromarray(ramp).save(tmp_path / "a" / "deep.tif")  # the PIL path
    Image.fromarray((ramp >> 8).astype(np.uint8)).save(tmp_path / "b" / "flat.png")
    frames = [Image.fromarray(np.full((32, 32), v, np.uint8)) for v in (10, 200)]
    frames[0].save(tmp_path / "b" / "anim.gif", save_all=True, append_images=frames[1:])
    (tmp_path / "b" / "report.pdf").write_bytes(b"%PDF-1.4")  # PIL registers .pdf, but only writes it
    Image.fromarray((ramp >> 8).astype(np.uint8)).save(tmp_path / "loose.png")
    with pytest.warns(UserWarning, match="1 image file.*in no class sub-folder"):
        folder = ImageFolder(tmp_path)
    assert folder.classes == ["a", "b"]  # the empty sub-folder is no class
    assert sorted(os.path.basename(f) for f in folder.files) == ["anim.gif", "deep.png", "deep.tif", "flat.png"]
    images = {os.path.basename(f): folder.read_image(i) for i, f in enumerate(folder.files)}
    assert all(x.dtype == torch.uint8 and x.shape == (1, 32, 32) for x in images.values())
    flat = images["flat.png"]
    for name in ("deep.png", "deep.tif"):  # scaled to 8 bits like the 8-bit copy, not clipped at 255
        assert (images[name].int() - flat.int()).abs().max() <= 1, name
    assert int(images["anim.gif"].max()) == 10  # the first frame


def test_float_dataset_scale_comes_from_the_raw_items():
    class Floats(torch.utils.data.Dataset):  # float images in 0..255, as some pipelines give them
        def __len__(self):
            return 32

        def __getitem__(self, i):
            return torch.linspace(0, 255, 64).view(1, 8, 8) * (0.5 + i / 64)

    est = RotationSSL(**TINY).fit(Floats())
    assert est.scale_[0] == 0 and est.scale_[1] == pytest.approx(255 * (0.5 + 31 / 64))


def test_auto_backbone_by_working_size():
    assert isinstance(build_backbone("auto", 1, (28, 28)).stages[0][0], torch.nn.Conv2d)
    assert type(build_backbone("auto", 3, (40, 40)).stages[0][0]).__name__ == "Conv2d"
    small = build_backbone("auto", 3, (31, 31))
    cifar = build_backbone("auto", 3, (32, 32))
    imagenet = build_backbone("auto", 3, (64, 64))
    assert small.stages[0][0].in_channels == 3 and len(small.stages) == 3
    assert cifar.stages[0][0].kernel_size == (3, 3) and len(cifar.stages[0]) == 3
    assert imagenet.stages[0][0].kernel_size == (7, 7) and isinstance(imagenet.stages[0][-1], torch.nn.MaxPool2d)
    assert build_backbone("resnet50", 1, (64, 64)).stage_dims(1, (64, 64))[-1] == 2048


def test_image_size_resizes_on_the_device(digits):
    X = digits[0][:64]
    est = RotationSSL(**TINY, image_size=20).fit(X)
    assert est._working_size() == (20, 20) and est.transform(X).shape == (64, 128)


def test_loader_workers_leave_ctrl_c_to_the_training_process():
    # A terminal's Ctrl-C reaches every process of the group, DataLoader workers included.
    import subprocess
    import sys

    code = ("import os, signal, time\nfrom skssl._sources import _ignore_ctrl_c\n_ignore_ctrl_c(0)\n"
            "os.kill(os.getpid(), signal.SIGINT)\ntime.sleep(0.2)\nprint('alive')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "alive", done.stderr


def test_a_clip_layout_is_the_image_layout_with_a_time_axis_in_front():
    images, clips = SampleLayout("Est"), SampleLayout("Est", frames=(3, "n_frames=3"))
    assert images.in_array((5, 8, 6)) == (8, 6, 1) and clips.in_array((5, 4, 8, 6)) == (4, *images.in_array((5, 8, 6)))
    assert images.in_array((5, 8, 6, 3)) == (8, 6, 3) and clips.in_array((5, 4, 8, 6, 3)) == (4, 8, 6, 3)
    for n_features in (64, 75, 50):  # a square, three times a square, neither (padded)
        assert clips.of_rows(3 * n_features) == (3, *images.of_rows(n_features))
    assert images.in_array((5, 64)) is None and clips.in_array((5, 64)) is None  # rows: read by of_rows
    with pytest.raises(ValueError, match="needs clips of at least 3 frames with these parameters .n_frames=3."):
        clips.check_trainable((2, 8, 8, 1))
    with pytest.raises(ValueError, match=r"video_shape must be \(t, h, w\) or \(t, h, w, c\)"):
        SampleLayout("Est", (8, 8), frames=(1, "")).of_rows(64)


def test_one_source_gives_the_same_shape_scale_and_statistics_for_an_array_and_its_memmap(digits, tmp_path):
    X = digits[0][:40].astype(np.float32) / 3
    mm = np.lib.format.open_memmap(tmp_path / "f.npy", mode="w+", dtype=np.float32, shape=X.shape)
    mm[:] = X
    est = RotationSSL()
    in_memory = open_source(X, est, SampleLayout("RotationSSL"), reset=True)
    streamed = open_source(mm, est, SampleLayout("RotationSSL"), reset=True)
    assert not in_memory.streaming and streamed.streaming
    assert in_memory.sample_shape == streamed.sample_shape == (8, 8, 1)
    assert in_memory.value_range() == streamed.value_range() == (0.0, float(X.max()))
    in_memory.scale = streamed.scale = in_memory.value_range()
    np.testing.assert_array_equal(in_memory.statistics_sample(), streamed.statistics_sample())
    assert in_memory.data_key() != open_source(X[::-1], est, SampleLayout("RotationSSL"), reset=True).data_key()
