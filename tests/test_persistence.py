"""save/load: plain-data files that round-trip estimators and never run code on load."""

import os
import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from torch import nn

import skssl
from skssl import RotationSSL, SimCLR
from skssl.augment import Augment
from skssl.base import BaseSSL
from skssl.persistence import load, save

X = np.random.default_rng(0).random((32, 8, 8)).astype(np.float32)
TINY = dict(max_epochs=1, batch_size=16, random_state=0)


@pytest.fixture(scope="module", params=["rotation", "simclr"])
def fitted(request):
    if request.param == "rotation":
        est = RotationSSL(**TINY, stage=1, augment=Augment(crop_scale=(0.5, 1.0), flip_p=0.25, jitter_p=0.0))
    else:
        est = SimCLR(**TINY, temperature=0.2, projection_dim=16, optimizer=torch.optim.SGD,
                     device=torch.device("cpu"), image_shape=(8, 8), augment=Augment(degrees=10.0, blur_p=0.5))
    return est.fit(X)


def _rewrite(path, edit):
    """Load a valid save as plain data, apply ``edit`` and write it back."""
    payload = torch.load(path, weights_only=True)
    edit(payload)
    torch.save(payload, path)


def _plain(value):
    """True when ``value`` holds only plain containers, scalars, strings and tensors."""
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


# ------------------------------------------------------------------ round trip
def test_round_trip_gives_identical_embeddings_and_params(fitted, tmp_path):
    path = tmp_path / "model.skssl"
    save(fitted, path)
    loaded = load(path)

    assert type(loaded) is type(fitted)
    assert loaded.get_params() == fitted.get_params()
    assert isinstance(loaded.augment, Augment) and loaded.augment == fitted.augment
    np.testing.assert_array_equal(loaded.transform(X), fitted.transform(X))
    assert not loaded.networks_.training
    for name in ("image_shape_", "scale_", "embedding_dim_", "n_features_in_", "augment_", "history_", "_n_train"):
        assert getattr(loaded, name) == getattr(fitted, name), name
    for name in ("channel_mean_", "channel_std_"):
        assert getattr(loaded, name).dtype == getattr(fitted, name).dtype
        np.testing.assert_array_equal(getattr(loaded, name), getattr(fitted, name))


def test_non_default_parameters_keep_their_types(tmp_path):
    est = SimCLR(max_epochs=1, image_shape=(8, 8, 1), optimizer=torch.optim.SGD, device=torch.device("cpu"),
                 augment=Augment.none(), random_state=np.random.RandomState(3))
    save(est, tmp_path / "m.skssl")
    loaded = load(tmp_path / "m.skssl")
    assert loaded.image_shape == (8, 8, 1) and isinstance(loaded.image_shape, tuple)
    assert loaded.optimizer is torch.optim.SGD
    assert loaded.device == torch.device("cpu")
    assert loaded.augment == Augment.none()
    a, b = est.random_state.get_state(), loaded.random_state.get_state()
    assert a[0] == b[0] and np.array_equal(a[1], b[1]) and a[2:] == b[2:]
    with pytest.raises(NotFittedError):
        loaded.transform(X)


def test_loaded_estimator_fits_again(fitted, tmp_path):
    save(fitted, tmp_path / "m.skssl")
    loaded = load(tmp_path / "m.skssl")
    loaded.set_params(warm_start=True).fit(X)
    assert len(loaded.history_) == len(fitted.history_) + 1
    assert loaded.transform(X).shape == (len(X), fitted.embedding_dim_)
    # A cold refit from the loaded parameters matches a cold refit of the original.
    cold = load(tmp_path / "m.skssl").fit(X)
    np.testing.assert_array_equal(cold.transform(X), clone(fitted).fit(X).transform(X))


def test_file_holds_only_plain_data_and_tensors(fitted, tmp_path):
    path = tmp_path / "m.skssl"
    save(fitted, path)
    payload = torch.load(path, weights_only=True, map_location="cpu")
    assert payload["format"] == "skssl" and payload["version"] == 1
    assert payload["class"] == f"{type(fitted).__module__}.{type(fitted).__name__}"
    assert _plain(payload)
    assert set(payload["state_dict"]) == set(fitted.networks_.state_dict())


def test_load_does_not_touch_the_global_rng(fitted, tmp_path):
    save(fitted, tmp_path / "m.skssl")
    before = torch.get_rng_state()
    load(tmp_path / "m.skssl")
    assert torch.equal(before, torch.get_rng_state())


def test_save_is_atomic(fitted, tmp_path, monkeypatch):
    path = tmp_path / "m.skssl"
    save(fitted, path)
    original = path.read_bytes()

    def broken(obj, f, *args, **kwargs):
        f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        save(fitted, path)
    assert path.read_bytes() == original
    assert os.listdir(tmp_path) == ["m.skssl"]


# ------------------------------------------------------------- custom backbone
def _tiny_net():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())


def test_custom_module_backbone_needs_backbone_argument(tmp_path):
    torch.manual_seed(0)
    est = RotationSSL(backbone=_tiny_net(), **TINY).fit(X)
    path = tmp_path / "m.skssl"
    save(est, path)

    with pytest.raises(ValueError, match="backbone="):
        load(path)
    with pytest.raises(ValueError, match="architecture"):
        load(path, backbone=nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU()))

    user_module = _tiny_net()
    user_weights = {k: v.clone() for k, v in user_module.state_dict().items()}
    loaded = load(path, backbone=user_module)
    np.testing.assert_array_equal(loaded.transform(X), est.transform(X))
    # The saved (untrained) parameter module comes back; the user's module is untouched.
    for k, v in est.backbone.state_dict().items():
        assert torch.equal(loaded.backbone.state_dict()[k], v)
    for k, v in user_module.state_dict().items():
        assert torch.equal(user_weights[k], v)


def test_backbone_argument_refused_for_named_backbones(fitted, tmp_path):
    save(fitted, tmp_path / "m.skssl")
    with pytest.raises(ValueError, match="backbone="):
        load(tmp_path / "m.skssl", backbone=_tiny_net())


# ----------------------------------------------------------- hostile files
class _Payload:
    """Unpickling this calls ``os.mkdir(marker)``: code execution on load."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_pickled_code_is_refused_and_never_executed(fitted, tmp_path):
    path, marker = tmp_path / "evil.skssl", tmp_path / "pwned"
    save(fitted, path)
    _rewrite(path, lambda p: p["fitted"].update(history_=_Payload(marker)))

    with pytest.raises(ValueError, match="not a valid skssl save") as info:
        load(path)
    assert isinstance(info.value.__cause__, (pickle.UnpicklingError, RuntimeError))
    assert not marker.exists()

    # The payload is live: an unsafe load does run it.
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_raw_pickle_is_refused_and_never_executed(tmp_path):
    path, marker = tmp_path / "evil.pkl", tmp_path / "pwned"
    path.write_bytes(pickle.dumps({"format": "skssl", "version": 1, "x": _Payload(marker)}, protocol=2))
    with pytest.raises(ValueError, match="not a valid skssl save"):
        load(path)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["os.system", "sklearn.decomposition.PCA", "skssl.base.BaseSSL",
                                  "skssl.pretext.rotation.Nope", "skssl.nonexistent_module.RotationSSL", 42])
def test_unknown_class_is_refused(fitted, tmp_path, name):
    path = tmp_path / "m.skssl"
    save(fitted, path)
    _rewrite(path, lambda p: p.update({"class": name}))
    with pytest.raises(ValueError, match="class"):
        load(path)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda p: p.update(format="pickle"), "format"),
        (lambda p: p.update(version=2), "version"),
        (lambda p: p.pop("state_dict"), "missing"),
        (lambda p: p.pop("params"), "missing"),
        (lambda p: p.update(fitted=[1, 2]), "dicts"),
        (lambda p: p["params"].update(not_a_parameter=1), "no parameter"),
        (lambda p: p["params"].update(max_epochs=-3), "invalid parameters"),
        (lambda p: p["params"].update(optimizer={"__optimizer__": "Evil"}), "torch.optim"),
        (lambda p: p["fitted"].update(transform=1), "hide a method"),
        (lambda p: p["fitted"].pop("image_shape_"), "networks"),
        (lambda p: p["state_dict"].popitem(), "networks"),
        (lambda p: p["state_dict"].update({k: torch.zeros(3) for k in list(p["state_dict"])[:1]}), "networks"),
        (lambda p: p["state_dict"].update(extra=torch.zeros(1)), "networks"),
    ],
)
def test_tampered_file_is_refused(fitted, tmp_path, edit, message):
    path = tmp_path / "m.skssl"
    save(fitted, path)
    _rewrite(path, edit)
    with pytest.raises(ValueError, match=message):
        load(path)


@pytest.mark.parametrize("content", [b"", b"not a torch file", b"PK\x03\x04broken zip"])
def test_garbage_file_is_refused(tmp_path, content):
    (tmp_path / "m.skssl").write_bytes(content)
    with pytest.raises(ValueError, match="not a valid skssl save"):
        load(tmp_path / "m.skssl")


def test_non_dict_payload_is_refused(tmp_path):
    torch.save([1, 2, 3], tmp_path / "m.skssl")
    with pytest.raises(ValueError, match="format"):
        load(tmp_path / "m.skssl")


def test_save_refuses_foreign_classes_and_objects(tmp_path):
    class MyRotation(RotationSSL):
        pass

    with pytest.raises(ValueError, match="skssl's own"):
        save(MyRotation(), tmp_path / "m.skssl")
    with pytest.raises(ValueError, match="plain data"):
        save(RotationSSL(verbose=object()), tmp_path / "m.skssl")
    assert not os.listdir(tmp_path)


# Every public estimator must round-trip: its ``_build_networks`` has to rebuild
# every network it trains (momentum encoders and decoders included).
PUBLIC = [obj for name in skssl.__all__
          if isinstance(obj := getattr(skssl, name), type) and issubclass(obj, BaseSSL) and obj is not BaseSSL]


@pytest.mark.parametrize("cls", PUBLIC, ids=lambda cls: cls.__name__)
def test_every_public_estimator_round_trips(cls, tmp_path):
    X_rgb = np.random.default_rng(1).random((16, 8, 8, 3)).astype(np.float32)
    if cls in skssl.VIDEO_ESTIMATORS:  # clips of 8 RGB frames (as many as FrameOrderSSL samples)
        X_rgb = np.random.default_rng(1).random((16, 8, 8, 8, 3)).astype(np.float32)
    est = cls(max_epochs=1, batch_size=8, random_state=0).fit(X_rgb)
    save(est, tmp_path / "m.skssl")
    np.testing.assert_array_equal(load(tmp_path / "m.skssl").transform(X_rgb), est.transform(X_rgb))


def _as_if_written_by_0_1(path, drop=()):
    payload = torch.load(path, weights_only=True)
    payload["skssl_version"] = "0.1.0"
    for name in drop:  # parameters skssl 0.1 did not have
        del payload["params"][name]
    torch.save(payload, path)


def test_files_of_skssl_0_1_load_as_the_networks_they_hold(tmp_path):
    X = skssl.load_digits_images(return_X_y=True)[0][:64]
    old_cluster = skssl.DeepClusterSSL(sobel=False, n_clusters=4, pca_dim=4, **TINY).fit(X)
    save(old_cluster, tmp_path / "dc.skssl")
    _as_if_written_by_0_1(tmp_path / "dc.skssl", drop=["sobel"])  # 0.1 had no Sobel filter
    loaded = load(tmp_path / "dc.skssl")
    assert loaded.sobel is False
    np.testing.assert_allclose(loaded.transform(X), old_cluster.transform(X), rtol=1e-5, atol=1e-6)

    save(skssl.JigsawSSL(), tmp_path / "jigsaw.skssl")
    _as_if_written_by_0_1(tmp_path / "jigsaw.skssl", drop=["permutation_selection"])
    assert load(tmp_path / "jigsaw.skssl").permutation_selection == "min"  # 0.1's selection

    save(SimCLR(backbone="resnet18"), tmp_path / "resnet.skssl")
    _as_if_written_by_0_1(tmp_path / "resnet.skssl")  # 0.1's "resnet18" had the CIFAR stem
    assert load(tmp_path / "resnet.skssl").backbone == "resnet18_cifar"
