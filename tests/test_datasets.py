import gzip
import struct

import numpy as np
import pytest

from skssl import datasets
from skssl.datasets import load_digits_images, load_fashion_mnist, read_idx

NAMES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
CODES = {np.dtype("u1"): 0x08, np.dtype("i1"): 0x09, np.dtype("i2"): 0x0B, np.dtype("i4"): 0x0C,
         np.dtype("f4"): 0x0D, np.dtype("f8"): 0x0E}


def idx_bytes(arr):
    arr = np.asarray(arr)
    header = bytes([0, 0, CODES[arr.dtype], arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def fake_set(n_train=12, n_test=5, seed=0):
    rng = np.random.default_rng(seed)
    arrays = [rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8), np.arange(n_train, dtype=np.uint8) % 10,
              rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8), np.arange(n_test, dtype=np.uint8)[::-1] % 10]
    return dict(zip(NAMES, arrays))


def write_set(folder, gz, names=NAMES, **kw):
    folder.mkdir(parents=True, exist_ok=True)
    arrays = fake_set(**kw)
    for name in names:
        data = idx_bytes(arrays[name])
        (folder / (name + ".gz")).write_bytes(gzip.compress(data)) if gz else (folder / name).write_bytes(data)
    return arrays


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No system copy, no $SKSSL_DATA, and a fresh $HOME: only what a test writes can be found."""
    monkeypatch.setattr(datasets, "SYSTEM_DIR", tmp_path / "no-system")
    monkeypatch.delenv("SKSSL_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def test_digits():
    b = load_digits_images()
    assert b.images.shape == (1797, 8, 8) and b.images.dtype == np.float64
    assert b.images.min() == 0 and b.images.max() == 16
    assert b.target.shape == (1797,) and np.issubdtype(b.target.dtype, np.integer)
    assert set(b.target) == set(range(10)) and len(b.target_names) == 10 and b.DESCR
    X, y = load_digits_images(return_X_y=True)
    np.testing.assert_array_equal(X, b.images)
    np.testing.assert_array_equal(y, b.target)


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype", ["u1", "i1", "i2", "i4", "f4", "f8"])
def test_read_idx_roundtrip(tmp_path, gz, dtype):
    arr = (np.arange(2 * 3 * 4) - 5).reshape(2, 3, 4).astype(dtype)
    path = tmp_path / "a.idx"  # gzip is recognised by content, whatever the name
    path.write_bytes(gzip.compress(idx_bytes(arr)) if gz else idx_bytes(arr))
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative and out.flags.writeable
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize("mangle, message", [
    (lambda b: b[:-7], "corrupt or truncated"),
    (lambda b: b + b"\x00", "corrupt or truncated"),
    (lambda b: b"\x12\x34" + b[2:], "bad magic"),
    (lambda b: b[:6], "truncated IDX header"),
    (lambda b: b"", "bad magic"),
])
def test_read_idx_corrupt(tmp_path, mangle, message):
    path = tmp_path / "bad"
    path.write_bytes(mangle(idx_bytes(np.zeros((3, 4, 4), np.uint8))))
    with pytest.raises(ValueError, match=message):
        read_idx(path)


def test_read_idx_truncated_gzip(tmp_path):
    path = tmp_path / "bad.gz"
    data = np.random.default_rng(0).integers(0, 256, (50, 28, 28), dtype=np.uint8)
    path.write_bytes(gzip.compress(idx_bytes(data))[:1000])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        read_idx(path)
    path.write_bytes(gzip.compress(idx_bytes(data))[:20] + bytes(1000))  # garbage deflate stream
    with pytest.raises(ValueError, match="corrupt or truncated"):
        read_idx(path)
    path.write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(path)


@pytest.mark.parametrize("gz", [False, True])
def test_load_from_data_home(isolated, gz):
    arrays = write_set(isolated / "data", gz)
    b = load_fashion_mnist(isolated / "data", download=False)
    assert b.images.shape == (12, 28, 28) and b.images.dtype == np.uint8
    assert b.target.dtype == np.int64 and list(b.target_names)[0] == "T-shirt/top" and len(b.target_names) == 10
    np.testing.assert_array_equal(b.images, arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(b.target, arrays["train-labels-idx1-ubyte"])


def test_subsets(isolated):
    arrays = write_set(isolated / "data" / "fashion-mnist", gz=True)  # subfolder of a root is searched too
    X, y = load_fashion_mnist(str(isolated / "data"), subset="test", return_X_y=True, download=False)
    assert X.shape == (5, 28, 28)
    np.testing.assert_array_equal(y, arrays["t10k-labels-idx1-ubyte"])
    X, y = load_fashion_mnist(isolated / "data", subset="all", return_X_y=True, download=False)
    assert X.shape == (17, 28, 28) and y.shape == (17,)
    np.testing.assert_array_equal(X[12:], arrays["t10k-images-idx3-ubyte"])
    with pytest.raises(ValueError, match="subset"):
        load_fashion_mnist(isolated / "data", subset="val")


def test_subset_needs_only_its_files(isolated):
    write_set(isolated / "data", gz=False, names=NAMES[2:])
    assert load_fashion_mnist(isolated / "data", subset="test", download=False).images.shape == (5, 28, 28)
    with pytest.raises(FileNotFoundError):
        load_fashion_mnist(isolated / "data", subset="train", download=False)


@pytest.mark.parametrize("sub", ["", "fashion-mnist"])
def test_load_from_env(isolated, monkeypatch, sub):
    write_set(isolated / "env" / sub if sub else isolated / "env", gz=True)
    monkeypatch.setenv("SKSSL_DATA", str(isolated / "env"))
    assert load_fashion_mnist(download=False).images.shape == (12, 28, 28)


def test_data_home_takes_precedence(isolated, monkeypatch):
    write_set(isolated / "home_arg", gz=False, n_train=3)
    write_set(isolated / "env", gz=False, n_train=4)
    monkeypatch.setenv("SKSSL_DATA", str(isolated / "env"))
    assert len(load_fashion_mnist(isolated / "home_arg").target) == 3
    assert len(load_fashion_mnist(isolated / "elsewhere").target) == 4  # falls through to $SKSSL_DATA


def test_not_found_names_every_place(isolated, monkeypatch):
    monkeypatch.setenv("SKSSL_DATA", str(isolated / "env"))
    with pytest.raises(FileNotFoundError) as info:
        load_fashion_mnist(isolated / "dh", download=False)
    msg = str(info.value)
    for place in [isolated / "dh", isolated / "dh" / "fashion-mnist", isolated / "env",
                  isolated / "env" / "fashion-mnist", isolated / "no-system",
                  isolated / "home" / "skssl_data" / "fashion-mnist"]:
        assert str(place) in msg


def fake_fetch(calls, arrays):
    def _fetch(url, dest):
        calls.append(url)
        name = url.rsplit("/", 1)[1]
        assert url == datasets.FASHION_MNIST_URL + name and name.endswith(".gz")
        with open(dest, "wb") as f:
            f.write(gzip.compress(idx_bytes(arrays[name[:-3]])))
    return _fetch


@pytest.mark.parametrize("where", ["data_home", "env", "default"])
def test_download(isolated, monkeypatch, where):
    calls, arrays = [], fake_set()
    monkeypatch.setattr(datasets, "_fetch", fake_fetch(calls, arrays))
    data_home = None
    if where == "data_home":
        data_home, target = isolated / "dh", isolated / "dh" / "fashion-mnist"
    elif where == "env":
        monkeypatch.setenv("SKSSL_DATA", str(isolated / "env"))
        target = isolated / "env" / "fashion-mnist"
    else:
        target = isolated / "home" / "skssl_data" / "fashion-mnist"
    b = load_fashion_mnist(data_home, subset="all")
    assert len(calls) == 4
    assert sorted(p.name for p in target.iterdir()) == sorted(n + ".gz" for n in NAMES)  # no temp files left
    np.testing.assert_array_equal(b.images[:12], arrays["train-images-idx3-ubyte"])
    load_fashion_mnist(data_home, subset="all")
    assert len(calls) == 4  # second load finds the downloaded files


def test_download_failure(isolated, monkeypatch):
    def broken(url, dest):
        with open(dest, "wb") as f:
            f.write(b"partial")
        raise OSError("Network is unreachable")

    monkeypatch.setattr(datasets, "_fetch", broken)
    with pytest.raises(OSError, match="Could not download") as info:
        load_fashion_mnist(isolated / "dh", subset="test")
    assert datasets.FASHION_MNIST_URL + "t10k-images-idx3-ubyte.gz" in str(info.value)
    assert "apt-get install dataset-fashion-mnist" in str(info.value)
    assert list((isolated / "dh" / "fashion-mnist").iterdir()) == []  # the partial file was removed


@pytest.mark.skipif(not all(datasets._find(datasets.SYSTEM_DIR, n) for n in NAMES),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_real_fashion_mnist(monkeypatch):
    monkeypatch.delenv("SKSSL_DATA", raising=False)
    test = load_fashion_mnist(subset="test", download=False)
    assert test.images.shape == (10000, 28, 28) and test.images.dtype == np.uint8
    assert np.bincount(test.target).tolist() == [1000] * 10
    X, y = load_fashion_mnist(subset="train", return_X_y=True, download=False)
    assert X.shape == (60000, 28, 28) and y.shape == (60000,) and y.max() == 9
