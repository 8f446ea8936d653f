"""The estimator contract that BaseSSL gives every method."""

import pickle
import subprocess
import sys
import textwrap

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from torch import nn

from skssl import RotationSSL, SimCLR
from skssl._images import infer_image_shape
from skssl.datasets import load_digits_images

TINY = dict(max_epochs=1, batch_size=32, random_state=0)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits_images(return_X_y=True)
    return X[:120], y[:120]


@pytest.mark.parametrize(
    "n_features, shape",
    [(64, (8, 8, 1)), (3 * 16, (4, 4, 3)), (5, (3, 3, 1)), (1, (1, 1, 1)), (784, (28, 28, 1))],
)
def test_image_shape_is_inferred_from_the_feature_count(n_features, shape):
    assert infer_image_shape(n_features) == shape


def test_2d_3d_and_4d_inputs_give_the_same_embedding(digits):
    X, _ = digits
    flat = RotationSSL(**TINY).fit(X.reshape(len(X), -1)).transform(X.reshape(len(X), -1))
    images = RotationSSL(**TINY).fit(X).transform(X)
    channel_last = RotationSSL(**TINY).fit(X[..., None]).transform(X[..., None])
    np.testing.assert_array_equal(flat, images)
    np.testing.assert_array_equal(flat, channel_last)


def test_uint8_and_float_images_are_scaled_to_the_same_range(digits):
    X, _ = digits
    as_uint8 = np.round(X * 255 / 16).astype(np.uint8)
    est_u8 = RotationSSL(**TINY).fit(as_uint8)
    est_float = RotationSSL(**TINY).fit(as_uint8.astype(np.float64))
    assert est_u8.scale_ == (0.0, 255.0)
    np.testing.assert_allclose(est_u8.channel_mean_, est_float.channel_mean_, rtol=1e-5)
    np.testing.assert_allclose(est_u8.transform(as_uint8), est_float.transform(as_uint8.astype(np.float64)), atol=1e-4)


def test_rgb_non_square_and_tabular_inputs_fit_and_transform():
    rng = np.random.RandomState(0)
    for X, shape in [
        (rng.randint(0, 256, (20, 10, 14, 3)).astype(np.uint8), (10, 14, 3)),  # RGB, not square
        (rng.randn(20, 7), (3, 3, 1)),  # tabular rows, padded into 3x3
        (rng.rand(20, 4, 4), (4, 4, 1)),  # smaller than the network needs: upsampled
    ]:
        est = SimCLR(**TINY).fit(X)
        Z = est.transform(X)
        assert est.image_shape_ == shape
        assert Z.shape == (20, est.embedding_dim_) and Z.dtype == np.float32
        assert np.isfinite(Z).all()


def test_explicit_image_shape_reads_rows_as_rgb():
    X = np.random.RandomState(0).rand(10, 2 * 6 * 3)
    est = RotationSSL(image_shape=(2, 6, 3), **TINY).fit(X)
    assert est.image_shape_ == (2, 6, 3)
    assert est.transform(X).shape == (10, est.embedding_dim_)


@pytest.mark.parametrize(
    "X, match",
    [
        (np.full((10, 64), np.nan), "NaN"),
        (np.full((10, 64), np.inf), "infinity"),
        (np.zeros((0, 64)), "0 sample"),
        (np.zeros((1, 64)), "1 sample"),
        (np.zeros((3, 2, 2, 2, 2)), "5-D"),
    ],
)
def test_bad_training_input_gets_an_error_naming_the_problem(X, match):
    with pytest.raises(ValueError, match=match):
        RotationSSL(**TINY).fit(X)


def test_wrong_image_shape_parameter_is_refused():
    with pytest.raises(ValueError, match="image_shape=.*holds 49 values but X has 64 features"):
        RotationSSL(image_shape=(7, 7), **TINY).fit(np.zeros((4, 64)))
    with pytest.raises(ValueError, match="does not match the shape of the images"):
        RotationSSL(image_shape=(4, 16), **TINY).fit(np.zeros((4, 8, 8)))


def test_transform_checks_fitted_state_and_feature_count(digits):
    X, _ = digits
    with pytest.raises(NotFittedError):
        SimCLR().transform(X)
    est = SimCLR(**TINY).fit(X)
    with pytest.raises(ValueError, match="X has 63 features, but SimCLR is expecting 64"):
        est.transform(X.reshape(len(X), -1)[:, :63])
    with pytest.raises(ValueError, match=r"images of shape \(9, 9, 1\).*fitted on \(8, 8, 1\)"):
        est.transform(np.zeros((2, 9, 9)))


def test_invalid_hyper_parameters_are_named():
    with pytest.raises(ValueError, match="'max_epochs' parameter"):
        SimCLR(max_epochs=0).fit(np.zeros((4, 64)))
    with pytest.raises(ValueError, match="stage=7 but the backbone has 3 stages"):
        SimCLR(stage=7, **TINY).fit(np.random.rand(4, 64))
    with pytest.raises(ValueError, match="CUDA is not available|invalid|not a valid"):
        if torch.cuda.is_available():
            raise ValueError("invalid: skip on a GPU machine")
        SimCLR(device="cuda", **TINY).fit(np.random.rand(4, 64))
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        SimCLR(epochs=3)


def test_same_seed_same_embedding_and_global_rng_untouched(digits):
    X, _ = digits
    torch.manual_seed(123)
    np.random.seed(123)
    before = (torch.rand(1).item(), np.random.rand())
    torch.manual_seed(123)
    np.random.seed(123)
    a = SimCLR(**TINY).fit_transform(X)
    after = (torch.rand(1).item(), np.random.rand())
    b = SimCLR(**TINY).fit_transform(X)
    c = SimCLR(**{**TINY, "random_state": 1}).fit_transform(X)
    assert before == after
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_warm_start_continues_training(digits):
    X, _ = digits
    est = RotationSSL(warm_start=True, **TINY).fit(X)
    weights = est.backbone_.stages[0][0].weight.detach().clone()
    est.fit(X)
    assert [h["epoch"] for h in est.history_] == [1, 2]
    assert not torch.equal(weights, est.backbone_.stages[0][0].weight)
    cold = RotationSSL(**TINY).fit(X).fit(X)
    assert len(cold.history_) == 1


def test_stage_selects_the_backbone_stage_transform_returns(digits):
    X, _ = digits
    dims = [RotationSSL(stage=s, **TINY).fit(X).transform(X).shape[1] for s in (0, 1, 2, -1)]
    assert dims == [32, 64, 128, 128]


def test_history_records_a_finite_loss_per_epoch(digits):
    X, _ = digits
    est = SimCLR(max_epochs=3, batch_size=32, random_state=0).fit(X)
    assert [h["epoch"] for h in est.history_] == [1, 2, 3]
    assert all(np.isfinite(h["loss"]) and h["seconds"] > 0 for h in est.history_)


def test_user_module_backbone_and_resnet18():
    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 6, 3, padding=1)

        def forward(self, x):
            return torch.relu(self.conv(x))

    X = np.random.RandomState(0).rand(12, 8, 8)
    template = Tiny()
    est = SimCLR(backbone=template, **TINY).fit(X)
    assert est.transform(X).shape == (12, 6)
    assert est.backbone_.stages[0] is not template  # the parameter is never trained in place
    X32 = np.random.RandomState(0).randint(0, 256, (4, 32, 32, 3)).astype(np.uint8)
    est = RotationSSL(backbone="resnet18", max_epochs=1, batch_size=4, random_state=0).fit(X32)
    assert est.transform(X32).shape == (4, 512)


def test_pipeline_gridsearch_cross_val_and_clone(digits):
    X, y = digits
    pipe = make_pipeline(RotationSSL(**TINY), LogisticRegression(max_iter=500))
    search = GridSearchCV(pipe, {"rotationssl": [RotationSSL(**TINY), SimCLR(**TINY)]}, cv=2)
    search.fit(X, y)
    assert type(search.best_params_["rotationssl"]) in (RotationSSL, SimCLR)
    scores = search.cv_results_["mean_test_score"]
    assert search.best_score_ == scores.max() and search.best_index_ == scores.argmax()
    assert type(search.best_params_["rotationssl"]) is type(search.cv_results_["param_rotationssl"][scores.argmax()])
    # best_score_ is the winner's own cross-validated score (fits are seeded: exactly equal)
    winner = clone(pipe).set_params(**search.best_params_)
    assert cross_val_score(winner, X, y, cv=2).mean() == search.best_score_
    assert cross_val_score(pipe, X, y, cv=2).shape == (2,)
    est = SimCLR(temperature=0.2, **TINY)
    assert clone(est).get_params() == est.get_params()
    assert SimCLR(**TINY).fit(X).get_feature_names_out()[:2].tolist() == ["simclr0", "simclr1"]


def test_pickle_and_joblib_round_trip(digits, tmp_path):
    X, _ = digits
    est = SimCLR(**TINY).fit(X)
    Z = est.transform(X)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(est)).transform(X), Z)
    joblib.dump(est, tmp_path / "model.joblib")
    np.testing.assert_array_equal(joblib.load(tmp_path / "model.joblib").transform(X), Z)


def test_model_loads_and_transforms_in_a_fresh_process_without_cuda(digits, tmp_path):
    X, _ = digits
    est = RotationSSL(**TINY).fit(X)
    joblib.dump(est, tmp_path / "model.joblib")
    np.save(tmp_path / "X.npy", X)
    code = textwrap.dedent(f"""
        import joblib, numpy as np, torch
        assert not torch.cuda.is_available()
        est = joblib.load({str(tmp_path / 'model.joblib')!r})
        np.save({str(tmp_path / 'Z.npy')!r}, est.transform(np.load({str(tmp_path / 'X.npy')!r})))
    """)
    subprocess.run([sys.executable, "-c", code], check=True, env={"CUDA_VISIBLE_DEVICES": "", "PATH": ""}, timeout=120)
    np.testing.assert_array_equal(np.load(tmp_path / "Z.npy"), est.transform(X))


def test_pickled_state_holds_weights_on_the_cpu(digits):
    X, _ = digits
    est = SimCLR(**TINY).fit(X)
    state = est.__getstate__()
    assert all(t.device.type == "cpu" for t in state["networks_"].state_dict().values())
