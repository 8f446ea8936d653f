"""Streamed input in parallel grid searches: DataLoader workers start inside joblib's loky workers."""

import multiprocessing
import sys
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

from skssl import RotationSSL
from skssl.datasets import ImageFolder, load_digits_images

N = 32


class DigitImages(torch.utils.data.Dataset):
    """A torch Dataset of (image, label) pairs; module-level so that loky can pickle it."""

    def __init__(self, images, labels):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        if isinstance(i, tuple) and len(i) == 2 and i[1] is Ellipsis:
            i = i[0]
        if isinstance(i, (np.ndarray, list)):  # scikit-learn's cross-validation indexes by arrays
            return DigitImages(self.images[i], self.labels[i])
        return torch.from_numpy(self.images[i])[None], int(self.labels[i])

    @property
    def shape(self):  # what scikit-learn's cross-validation needs to split it
        return self.images.shape


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    X, y = load_digits_images(return_X_y=True)
    X, y = (X[:N] * 255 / 16).round().astype(np.uint8), y[:N] % 2
    root = tmp_path_factory.mktemp("search")
    for i, (image, label) in enumerate(zip(X, y)):
        (root / "folder" / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / "folder" / str(label) / f"{i:03d}.png")
    np.save(root / "X.npy", X)
    folder = ImageFolder(root / "folder")
    return {"folder": (folder, folder.targets), "memmap": (np.load(root / "X.npy", mmap_mode="r"), y),
            "dataset": (DigitImages(X, y), y)}


def _search(X, y, n_jobs):
    model = RotationSSL(max_epochs=1, batch_size=8, backbone="small_cnn", random_state=0, num_workers=2)
    search = GridSearchCV(make_pipeline(model, LogisticRegression(max_iter=200)),
                          {"rotationssl__lr": [1e-3, 3e-3]}, cv=2, n_jobs=n_jobs, refit=False,
                          error_score="raise")
    return search.fit(X, y)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="loky workers start DataLoader workers by fork on Linux")
@pytest.mark.parametrize("kind", ["folder", "memmap", "dataset"])
def test_grid_search_with_two_jobs_streams_through_dataloader_workers(inputs, kind):
    X, y = inputs[kind]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no fallback to reading in-process: the workers started
        warnings.filterwarnings("ignore", message=".*(resource_tracker|leaked).*")
        parallel = _search(X, y, n_jobs=2)
    serial = _search(X, y, n_jobs=1)
    np.testing.assert_allclose(parallel.cv_results_["mean_test_score"], serial.cv_results_["mean_test_score"])


def _fit_in_daemon(X):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Z = RotationSSL(max_epochs=1, batch_size=8, backbone="small_cnn", random_state=0, num_workers=2).fit(X).transform(X)
    return Z, [str(w.message) for w in caught]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a forked Pool of the test process")
def test_daemonic_worker_reads_in_process_with_a_warning(inputs):
    folder, _ = inputs["folder"]
    with multiprocessing.get_context("fork").Pool(1) as pool:  # daemonic, as Dask's default workers
        Z, messages = pool.apply(_fit_in_daemon, (folder,))
    assert any("daemonic worker" in m and "num_workers=0" in m for m in messages), messages
    expected = RotationSSL(max_epochs=1, batch_size=8, backbone="small_cnn", random_state=0, num_workers=0).fit(folder)
    np.testing.assert_array_equal(Z, expected.transform(folder))
