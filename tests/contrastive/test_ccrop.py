"""ContrastiveCrop: boxes from heatmaps, centre-suppressed crop centres, and the estimator option."""

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

import skssl
from skssl import SimCLR
from skssl.augment import Augment, crop_flip_affine_matrices, symmetric_beta_ppf
from skssl.contrastive._multiview import MultiViewSSL
from skssl.contrastive.ccrop import feature_map_boxes, heatmap_boxes
from skssl.datasets import load_digits_images

FULL = torch.tensor([0.0, 0.0, 1.0, 1.0])


# ------------------------------------------------------------------ boxes
def test_box_of_a_bright_blob_is_its_bounding_box():
    maps = torch.rand(2, 10, 12, generator=torch.Generator().manual_seed(0)) * 0.05
    maps[0, 2:5, 5:9] = 1.0
    maps[1, 7:, :3] = 3.0  # touching the bottom-left corner; any range works
    boxes = heatmap_boxes(maps, threshold=0.1)
    torch.testing.assert_close(boxes[0], torch.tensor([5 / 12, 2 / 10, 9 / 12, 5 / 10]))
    torch.testing.assert_close(boxes[1], torch.tensor([0.0, 7 / 10, 3 / 12, 1.0]))


@pytest.mark.parametrize("value", [0.0, 5.0])
def test_constant_or_empty_heatmap_gives_the_whole_image(value):
    boxes = heatmap_boxes(torch.full((3, 4, 4), value), threshold=0.1, size=(8, 8))
    torch.testing.assert_close(boxes, FULL.expand(3, 4))


def test_threshold_is_relative_to_the_min_max_normalised_map():
    hmap = torch.tensor([[[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.5]]]) + 7.0
    torch.testing.assert_close(heatmap_boxes(hmap, 0.6)[0], torch.tensor([1 / 3, 1 / 3, 2 / 3, 2 / 3]))
    torch.testing.assert_close(heatmap_boxes(hmap, 0.4)[0], torch.tensor([1 / 3, 1 / 3, 1.0, 1.0]))


def test_coarse_map_is_upsampled_to_the_image_before_thresholding():
    fmap = torch.zeros(1, 5, 2, 2)
    fmap[0, :, 0, 0] = 1.0  # top-left cell of a 2x2 map over an 8x8 image
    box = feature_map_boxes(fmap, threshold=0.1, size=(8, 8))[0]
    assert box[0] == 0 and box[1] == 0
    assert 0.25 < box[2] < 1 and box[2] == box[3]  # bilinear spill, not the whole image
    assert torch.equal(feature_map_boxes(torch.ones(4, 16), 0.1), FULL.expand(4, 4))  # no spatial axes


# ------------------------------------------------------- crop centres
def crop_centres(boxes, alpha, scale=(0.01, 0.01), seed=0):
    theta = crop_flip_affine_matrices(len(boxes), torch.Generator().manual_seed(seed), 32, 32, scale=scale,
                                      boxes=boxes, center_alpha=alpha, dtype=torch.float64)
    half = theta[:, 0, 0].abs(), theta[:, 1, 1].abs()  # crop half-extents, no rotation
    return (theta[:, 0, 2] + 1) / 2, (theta[:, 1, 2] + 1) / 2, half  # centres as fractions


def test_contrastive_crop_centres_lie_in_the_box_and_are_centre_suppressed():
    n, box = 4000, torch.tensor([0.2, 0.3, 0.7, 0.9], dtype=torch.float64)
    cx, cy, _ = crop_centres(box.expand(n, 4), alpha=0.6)
    tx, ty = (cx - 0.2) / 0.5, (cy - 0.3) / 0.6  # position inside the box, in [0, 1]
    for t in (tx, ty):
        assert t.min() >= 0 and t.max() <= 1
        assert stats.kstest(t.numpy(), stats.beta(0.6, 0.6).cdf).pvalue > 1e-3
        assert stats.kstest(t.numpy(), "uniform").pvalue < 1e-6
        edges, middle = ((t < 0.25) | (t > 0.75)).float().mean(), ((t > 0.25) & (t < 0.75)).float().mean()
        assert edges > middle + 0.1  # U-shaped; uniform would give 0.5 / 0.5
    assert abs(stats.pearsonr(tx.numpy(), ty.numpy())[0]) < 0.05  # axes drawn independently


def test_crops_stay_inside_the_image_whatever_the_box():
    n = 2000
    boxes = torch.tensor([[0.9, 0.0, 1.0, 0.05], [0.0, 0.0, 1.0, 1.0]], dtype=torch.float64).repeat(n // 2, 1)
    cx, cy, (hw, hh) = crop_centres(boxes, alpha=0.3, scale=(0.01, 1.0))
    assert (cx - hw / 2 >= -1e-9).all() and (cx + hw / 2 <= 1 + 1e-9).all()
    assert (cy - hh / 2 >= -1e-9).all() and (cy + hh / 2 <= 1 + 1e-9).all()
    # A box beyond the reachable centres pins the crop to the nearest image edge.
    edge, cx_edge, hw_edge = 1 - hw[::2] / 2, cx[::2], hw[::2]
    wide = hw_edge > 0.2
    assert wide.any() and (~wide).any()
    torch.testing.assert_close(cx_edge[wide], edge[wide])
    assert (cx_edge[~wide] >= 0.9 - 1e-9).all() and (cx_edge[~wide] <= edge[~wide] + 1e-9).all()


def test_whole_image_box_with_uniform_centres_is_the_random_resized_crop():
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    plain = crop_flip_affine_matrices(64, g(), 12, 20, scale=(0.2, 1.0), flip_p=0.5, degrees=10)
    boxed = crop_flip_affine_matrices(64, g(), 12, 20, scale=(0.2, 1.0), flip_p=0.5, degrees=10,
                                      boxes=FULL.expand(64, 4), center_alpha=1.0)
    torch.testing.assert_close(boxed, plain, rtol=0, atol=1e-6)


def test_augment_passes_boxes_to_the_crop():
    x = torch.rand(256, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    aug = Augment(jitter_p=0.0, flip_p=0.0)
    g = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    assert torch.equal(aug(x, g()), aug(x, g(), boxes=None))
    assert not torch.equal(aug(x, g()), aug(x, g(), boxes=FULL.expand(256, 4), center_alpha=0.3))


def test_beta_quantiles_match_scipy():
    u = torch.rand(10000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for alpha in (0.1, 0.6, 3.0):
        np.testing.assert_allclose(symmetric_beta_ppf(u, alpha).numpy(), stats.beta(alpha, alpha).ppf(u.numpy()), atol=1e-5)
    assert symmetric_beta_ppf(u, 1.0) is u


# ------------------------------------------------------------ estimator
X_DIGITS, _ = load_digits_images(return_X_y=True)


def test_random_crop_option_changes_nothing():
    X = X_DIGITS[:32]
    kwargs = dict(max_epochs=1, batch_size=16, random_state=0)
    default = SimCLR(**kwargs).fit(X)
    explicit = SimCLR(crop="random", crop_alpha=0.2, crop_warmup=0, crop_update_every=1, **kwargs).fit(X)
    contrastive = SimCLR(crop="contrastive", crop_warmup=0, **kwargs).fit(X)
    assert np.array_equal(default.transform(X), explicit.transform(X))
    assert "crop_boxes" not in explicit.networks_
    assert not np.array_equal(default.transform(X), contrastive.transform(X))


class StrokeMap(nn.Module):
    """A backbone whose feature map is known: the positive part of the standardised image
    (the digit's strokes; the blank canvas is below the mean), plus a trainable branch
    that contributes zero."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)

    def forward(self, x):
        return torch.cat([x.relu(), 0 * self.conv(x)], 1)


class RecordingSimCLR(SimCLR):
    """SimCLR that records which boxes each batch's views were cropped in."""

    def _views(self, x, n_views=2):
        boxes = self._crop_boxes()
        if boxes is not None:
            self.seen_.append((self._batch_index.clone(), boxes.clone()))
        return super()._views(x, n_views)


def digits_in_corners(n):
    """8x8 digits on a 16x16 blank canvas, image i in corner i % 4."""
    canvas = np.zeros((n, 16, 16))
    for i, digit in enumerate(X_DIGITS[:n].reshape(-1, 8, 8)):
        r, c = divmod(i % 4, 2)
        canvas[i, 8 * r:8 * r + 8, 8 * c:8 * c + 8] = digit
    return canvas


def test_contrastive_fit_refreshes_boxes_after_warmup_and_crops_in_them():
    X = digits_in_corners(48)
    est = RecordingSimCLR(crop="contrastive", crop_warmup=1, crop_update_every=1, backbone=StrokeMap(),
                          max_epochs=2, batch_size=24, random_state=0)
    est.seen_ = []
    est.fit(X)
    boxes = est.networks_["crop_boxes"].boxes
    assert boxes.shape == (48, 4)
    corner = torch.tensor([[0.0, 0.0], [0.5, 0.0], [0.0, 0.5], [0.5, 0.5]]).repeat(12, 1)  # (x, y) origins
    assert (boxes[:, :2] >= corner - 1e-6).all() and (boxes[:, 2:] <= corner + 0.5 + 1e-6).all()
    # Epoch 1 was the warm-up (plain random crops); epoch 2 cropped in each image's own box.
    assert len(est.seen_) == 2
    for index, seen in est.seen_:
        torch.testing.assert_close(seen, boxes[index])
    # Deterministic, and the boxes survive pickling with the networks.
    import pickle

    assert torch.equal(pickle.loads(pickle.dumps(est)).networks_["crop_boxes"].boxes, boxes)


def test_boxes_update_after_warmup_then_every_crop_update_every_epochs(monkeypatch):
    calls = []
    est = SimCLR(crop="contrastive", crop_warmup=1, crop_update_every=2, max_epochs=4, batch_size=16,
                 backbone=StrokeMap(), random_state=0)
    real = MultiViewSSL._locate

    def spy(self, images):
        calls.append(len(self.history_))
        return real(self, images)

    monkeypatch.setattr(MultiViewSSL, "_locate", spy)
    est.fit(X_DIGITS[:16])
    assert calls == [1, 3]


MULTI_VIEW = [cls for cls in skssl.ESTIMATORS if issubclass(cls, MultiViewSSL)]


@pytest.mark.parametrize("cls", MULTI_VIEW, ids=lambda c: c.__name__)
def test_every_multi_view_method_takes_contrastive_crops(cls):
    X = digits_in_corners(32)
    est = cls(crop="contrastive", crop_warmup=1, crop_update_every=1, backbone=StrokeMap(),
              max_epochs=2, batch_size=16, random_state=0).fit(X)
    boxes = est.networks_["crop_boxes"].boxes
    assert boxes.shape == (32, 4)
    # The boxes came from the heatmaps: none is wider or taller than a digit's quarter of the canvas.
    assert ((boxes[:, 2:] - boxes[:, :2]) <= 0.5 + 1e-6).all()
    Z = est.transform(X)
    assert Z.shape[0] == 32 and np.isfinite(Z).all()
