import sys

import numpy as np
import pytest
import torch

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from skssl import RotationSSL, SimCLR, load_digits_images  # noqa: E402
from skssl.augment import Augment  # noqa: E402
from skssl.diagnostics import PretextComparison  # noqa: E402
from skssl.plotting import plot_augmentations, plot_comparison, plot_embedding, plot_history  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    return load_digits_images(return_X_y=True)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_plot_comparison_draws_one_curve_per_method_with_random_labels_dashed():
    curves = {"raw pixels": {1: (0.4, 0.05), 5: (0.7, 0.02), 10: (0.8, 0.01)},
              "RotationSSL": {1: (0.5, 0.05), 5: (0.8, 0.02), 10: (0.9, 0.01)},
              "RotationSSL (random labels)": {1: (0.3, 0.05), 5: (0.6, 0.02), 10: (0.7, 0.01)}}
    fig = plot_comparison(PretextComparison({"method": list(curves)}, curves, {}))
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == set(curves)
    assert lines["RotationSSL (random labels)"].get_linestyle() == "--"
    assert lines["RotationSSL (random labels)"].get_color() == lines["RotationSSL"].get_color()
    assert list(lines["RotationSSL"].get_ydata()) == [0.5, 0.8, 0.9]
    assert lines["raw pixels"].get_color() == "black" and lines["raw pixels"].get_linestyle() == ":"
    assert len(ax.collections) == 3  # one standard-deviation band per curve (few curves)
    assert ax.get_xlabel() == "labelled images per class"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == list(curves)
    # Plain accuracies (what few_label_score returns) work too.
    assert plot_comparison({"a": {1: 0.5, 10: 0.9}}).axes[0].get_lines()[0].get_ydata().tolist() == [0.5, 0.9]
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_comparison({})


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_plot_embedding_colours_points_by_label(digits, method):
    X, y = digits[0][:150], digits[1][:150]
    Z = X.reshape(150, -1).astype(float)
    fig = plot_embedding(Z, None, y, method=method)
    ax = fig.axes[0]
    assert len(ax.collections) == 10  # one scatter per class
    assert sum(len(c.get_offsets()) for c in ax.collections) == 150
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [str(c) for c in range(10)]
    assert ("PC 1" in ax.get_xlabel()) == (method == "pca")


def test_plot_embedding_of_an_estimator_and_into_given_axes(digits):
    X, y = digits[0][:64], digits[1][:64]
    est = RotationSSL(max_epochs=1, batch_size=32, random_state=0).fit(X)
    fig, axes = plt.subplots(1, 2)
    assert plot_embedding(est, X, y, method="pca", ax=axes[1]) is fig
    assert axes[1].get_title().startswith("RotationSSL") and not axes[0].collections
    with pytest.raises(ValueError, match="method"):
        plot_embedding(est, X, y, method="umap")


def test_plot_history_of_one_estimator_adds_a_panel_per_metric():
    history = [{"epoch": e, "loss": 3.0 / e, "seconds": 1.0, "nmi_next": 0.5 + e / 10} for e in (1, 2, 3)]
    fig = plot_history(history)
    assert len(fig.axes) == 2
    assert [ax.get_ylabel() for ax in fig.axes] == ["loss", "nmi next"]
    assert fig.axes[0].get_lines()[0].get_ydata().tolist() == [3.0, 1.5, 1.0]
    assert len(plot_history(history, metrics=[]).axes) == 1


def test_plot_history_of_several_estimators_is_a_grid(digits):
    X = digits[0][:64]
    models = {name: cls(max_epochs=2, batch_size=32, random_state=0).fit(X)
              for name, cls in (("rotation", RotationSSL), ("simclr", SimCLR))}
    fig = plot_history({**models, "history": [{"epoch": 1, "loss": 1.0}]}, ncols=2)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == ["rotation", "simclr", "history"]
    assert visible[0].get_lines()[0].get_ydata().tolist() == models["rotation"].loss_curve_
    with pytest.raises(ValueError, match="no training history"):
        plot_history([])


def test_plot_augmentations_grid_shows_the_original_then_its_views(digits):
    X = digits[0][:3]
    fig = plot_augmentations(Augment(crop_scale=(0.5, 1.0), flip_p=0.0, degrees=15, jitter_p=0.0, grayscale_p=0.0),
                             X, n_views=4)
    assert len(fig.axes) == 3 * 5
    first = fig.axes[0].get_images()[0].get_array()
    np.testing.assert_allclose(first, X[0] / 16.0, atol=1e-6)  # digits' scale is their 0-16 range
    views = [ax.get_images()[0].get_array() for ax in fig.axes[1:5]]
    assert not any(np.allclose(v, first) for v in views)
    assert fig.axes[0].get_title() == "original" and fig.axes[1].get_title() == "view 1"


def _drawn_views(fig, n_images, n_views):
    return np.stack([[fig.axes[i * (1 + n_views) + 1 + j].get_images()[0].get_array() for j in range(n_views)]
                     for i in range(n_images)])


def _expected_views(augment, X, n_views, random_state):
    """The views plot_augmentations must show: ``augment`` applied with its seeded generator."""
    from sklearn.utils import check_random_state

    x = torch.as_tensor(X / 16.0, dtype=torch.float32).view(-1, 1, 8, 8)
    generator = torch.Generator().manual_seed(int(check_random_state(random_state).randint(2**31 - 1)))
    views = torch.stack([augment(x, generator) for _ in range(n_views)], 1).clamp(0, 1)  # (n, views, 1, h, w)
    return views[:, :, 0].numpy()


def test_plot_augmentations_of_estimators_uses_their_augmentation(digits):
    X = digits[0][:2]
    unfitted = plot_augmentations(SimCLR(), X, n_views=3)  # its default recipe at the digits' size
    assert len(unfitted.axes) == 2 * 4
    recipe = SimCLR()._default_augment((8, 8), 1)
    np.testing.assert_allclose(_drawn_views(unfitted, 2, 3), _expected_views(recipe, X, 3, 0), atol=1e-6)
    own = Augment(crop_scale=(0.5, 1.0), flip_p=0.0, degrees=30, jitter_p=0.0, grayscale_p=0.0)
    est = RotationSSL(augment=own, max_epochs=1, batch_size=32, random_state=0).fit(digits[0][:64])
    fitted = plot_augmentations(est, X, n_views=2, random_state=1)
    assert len(fitted.axes) == 2 * 3
    # The fitted estimator's augment_, not a default recipe: the same views, drawn the same way.
    np.testing.assert_allclose(_drawn_views(fitted, 2, 2), _expected_views(est.augment_, X, 2, 1), atol=1e-6)
    assert not np.allclose(_drawn_views(fitted, 2, 2), _expected_views(recipe, X, 2, 1), atol=1e-3)
    # Seeded: the same call draws the same views.
    again = plot_augmentations(est, X, n_views=2, random_state=1)
    np.testing.assert_array_equal(fitted.axes[1].get_images()[0].get_array(), again.axes[1].get_images()[0].get_array())
    with pytest.raises(TypeError, match="Augment"):
        plot_augmentations("crop", X)


def test_plots_ask_for_matplotlib_when_it_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"pip install skssl\[plots\]"):
        plot_history([{"epoch": 1, "loss": 1.0}])


def test_plot_pretext_shows_what_the_backbone_received_in_one_training_step(digits):
    from skssl.plotting import _record_first_step, plot_pretext

    X = digits[0][:64]
    model = RotationSSL(max_epochs=1, batch_size=8, random_state=0)
    batch, inputs, at_backbone = _record_first_step(model, X, n_show=32)
    # RotNet's one backbone call: the 8 images, then the same 8 turned by 90, 180 and 270 degrees.
    assert at_backbone and len(inputs) == 1 and inputs[0].shape[0] == 32 and batch.shape[0] == 8
    quarter = inputs[0]
    for k in (1, 2, 3):
        torch.testing.assert_close(quarter[8 * k:8 * (k + 1)], torch.rot90(quarter[:8], k, dims=(2, 3)))

    estimator = SimCLR(max_epochs=7)
    fig = plot_pretext(estimator, X, n_show=6)
    assert isinstance(fig, Figure)
    assert estimator.max_epochs == 7 and not hasattr(estimator, "networks_")  # a clone trained, not this one
    # The batch, then SimCLR's one backbone call (both views in one pass), 6 images each.
    assert len(fig.axes) == 2 and "input 1" in fig.axes[1].get_ylabel()
    assert fig.axes[1].images[0].get_array().shape[1] == 6 * (8 + 1) - 1  # six 8-px views, 1-px gaps


def test_plot_pretext_refuses_what_is_not_an_skssl_estimator(digits):
    from sklearn.decomposition import PCA

    from skssl.plotting import plot_pretext

    with pytest.raises(TypeError, match="skssl estimator"):
        plot_pretext(PCA(), digits[0][:16])
    with pytest.raises(ValueError, match="n_show"):
        plot_pretext(RotationSSL(), digits[0][:16], n_show=0)
