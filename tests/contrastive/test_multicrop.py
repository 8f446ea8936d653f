"""Multi-crop views: global and local crops, batched, local ones at their own resolution."""

import pytest
import torch
from sklearn.utils._param_validation import InvalidParameterError

from skssl.backbones import VisionTransformer
from skssl.contrastive.dino import DINO
from skssl.contrastive.swav import SwAV
from skssl.datasets import load_digits_images

X_DIGITS, _ = load_digits_images(return_X_y=True)


def _views(est, x):
    calls = []
    real = est._augment

    def counting(*args, **kwargs):
        calls.append(args[0].shape[0])
        return real(*args, **kwargs)

    est._augment = counting
    try:
        return est._multi_crop_views(x), calls
    finally:
        del est._augment


@pytest.mark.parametrize("cls", [SwAV, DINO])
def test_global_and_local_crops_have_their_counts_sizes_and_one_call_for_all_locals(cls):
    est = cls(max_epochs=1, batch_size=32, n_global_crops=3, n_local_crops=4, local_crop_size=5,
              hidden_dim=16, random_state=0).fit(X_DIGITS[:32])
    est._generator = torch.Generator().manual_seed(0)
    x = torch.rand(10, 1, 8, 8)
    (globals_, locals_), calls = _views(est, x)
    assert globals_.shape == (30, 1, 8, 8) and locals_.shape == (40, 1, 5, 5)
    assert calls == [10, 10, 10, 40]  # one batched call per global view, one for every local crop
    # Every local crop of one image differs (per-sample random parameters within the one call).
    per_image = locals_.view(4, 10, -1)
    assert not torch.allclose(per_image[0], per_image[1])
    # Local crops cover less of the image than global ones: crops of a smooth ramp vary less.
    ramp = torch.linspace(0, 1, 8).expand(10, 1, 8, 8).contiguous()
    est.local_augment_ = est.augment_ = type(est.local_augment_)(crop_scale=(0.05, 0.1), jitter_p=0.0)
    small = est._multi_crop_views(ramp)[1]
    est.augment_ = type(est.local_augment_)(crop_scale=(0.9, 1.0), jitter_p=0.0)
    large = est._multi_crop_views(ramp)[0]
    spread = lambda v: (v.amax(dim=(1, 2, 3)) - v.amin(dim=(1, 2, 3))).mean()  # noqa: E731
    assert spread(small) < 0.5 * spread(large)


def test_default_local_crops_follow_the_papers_ratio_from_28_pixels():
    est = DINO()
    est.image_shape_ = (28, 28, 1)
    assert est._local_size() == (12, 12) and est._n_local() == 6  # round(28 * 96 / 224)
    est.image_shape_ = (27, 27, 1)
    assert est._n_local() == 0  # local crops would be 3-4 pixels
    est = DINO(n_local_crops=3)
    est.image_shape_ = (8, 8, 1)
    assert est._local_size() == (4, 4) and est._n_local() == 3


def test_without_local_crops_only_global_views_are_made():
    est = SwAV(max_epochs=1, batch_size=16, n_local_crops=0, n_prototypes=8, hidden_dim=8, random_state=0)
    est.fit(X_DIGITS[:16])
    est._generator = torch.Generator().manual_seed(0)
    globals_, locals_ = est._multi_crop_views(torch.rand(4, 1, 8, 8))
    assert globals_.shape == (8, 1, 8, 8) and locals_ is None


def test_local_crops_train_a_vit_at_a_smaller_patch_grid():
    vit = VisionTransformer(patch_size=2, embed_dim=16, depth=1, num_heads=2)
    est = DINO(backbone=vit, max_epochs=1, batch_size=16, n_local_crops=2, local_crop_size=4, out_dim=16,
               hidden_dim=16, bottleneck_dim=8, random_state=0).fit(X_DIGITS[:16])
    assert len(est.history_) == 1 and torch.isfinite(torch.tensor(est.history_[0]["loss"]))


@pytest.mark.parametrize("params, match", [
    (dict(global_crop_scale=(0.5, 0.2)), "global_crop_scale"),
    (dict(local_crop_scale=(0.0, 0.2)), "local_crop_scale"),
    (dict(local_crop_size=(4, 0)), "local_crop_size"),
    (dict(n_global_crops=1), "n_global_crops"),
])
def test_bad_multi_crop_parameters_are_named(params, match):
    with pytest.raises((ValueError, InvalidParameterError), match=match):
        SwAV(max_epochs=1, **params).fit(X_DIGITS[:16])
