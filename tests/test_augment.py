"""Tests for skssl.augment.

Timing (measured once on the 2-core CPU dev box, torch 2.14, not tested): on a 512x3x32x32
float32 batch the old Augment.simclr(32, 3) took ~7 ms (~3 ms of it the blur), ~4 ms without
blur; Augment.simclr(28, 1) on 512x1x28x28 ~1.5 ms. The RGB colour jitter is now one per-sample
3x3 matrix (bmm), hue included: measured alongside other jobs, the colour step alone took ~2 ms
against ~4-5 ms for the former channel-luma path, so the hue costs nothing.
"""
import copy
import dataclasses
import math

import pytest
import torch

from skssl.augment import (Augment, color_jitter, crop_flip_affine_matrices, gaussian_blur,
                           gaussian_noise, random_affine, random_flip, random_grayscale,
                           random_resized_crop, random_solarize)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def images(b=8, c=3, h=16, w=16, seed=0, dtype=torch.float32):
    return torch.rand(b, c, h, w, generator=gen(seed)).to(dtype)


def tv(x):  # total variation: a proxy for high-frequency energy
    return (x.diff(dim=-1).abs().mean() + x.diff(dim=-2).abs().mean()).item()


OPS = [
    lambda x, g: random_resized_crop(x, g),
    lambda x, g: random_flip(x, g),
    lambda x, g: random_affine(x, g, degrees=20, translate=0.1),
    lambda x, g: color_jitter(x, g, 0.8, 0.8, 0.8, p=1.0),
    lambda x, g: random_grayscale(x, g, p=0.5),
    lambda x, g: gaussian_blur(x, g, p=1.0),
    lambda x, g: gaussian_noise(x, g, std=0.3, p=1.0),
    Augment(degrees=15, translate=0.1, blur_p=0.5, noise_std=0.1),
    lambda x, g: color_jitter(x, g, 0.4, 0.4, 0.4, p=1.0, hue=0.3),
    lambda x, g: random_solarize(x, g, p=0.5),
]


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("c", [1, 3, 4])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_shape_dtype_range_determinism(op, c, dtype):
    x = images(c=c, h=12, w=20, dtype=dtype)
    y = op(x, gen(1))
    assert y.shape == x.shape and y.dtype == dtype and y.device == x.device
    assert y.min() >= 0 and y.max() <= 1
    assert torch.equal(y, op(x, gen(1)))
    if not (op is OPS[4] and c != 3):  # grayscale is a no-op unless RGB
        assert not torch.equal(y, op(x, gen(2)))


def test_global_rng_untouched():
    torch.manual_seed(0)
    state = torch.get_rng_state()
    Augment(degrees=10, blur_p=1.0, noise_std=0.1)(images(), gen())
    assert torch.equal(state, torch.get_rng_state())


def test_identical_images_get_different_augmentations():
    x = images(b=1, h=32, w=32).expand(64, -1, -1, -1).contiguous()
    y = Augment.simclr(32, 3)(x, gen()).flatten(1)
    assert torch.cdist(y, y).add(torch.eye(64) * 1e9).min() > 1e-3


def test_none_is_identity():
    x = images()
    assert Augment.none()(x, gen()) is x
    assert Augment.none()(x.bfloat16(), gen()).dtype == torch.bfloat16


def test_flip():
    x = images()
    torch.testing.assert_close(random_flip(x, gen(), p=1.0), x.flip(-1), rtol=0, atol=0)
    assert torch.equal(random_flip(x, gen(), p=0.0), x)
    fused = dataclasses.replace(Augment.none(), flip_p=1.0)  # goes through grid_sample
    torch.testing.assert_close(fused(x, gen()), x.flip(-1), rtol=0, atol=1e-5)


def test_full_crop_is_identity():
    x = images(h=17, w=17)
    y = random_resized_crop(x, gen(), scale=(1.0, 1.0), ratio=(1.0, 1.0))
    torch.testing.assert_close(y, x, rtol=0, atol=1e-5)


def test_crop_boxes_follow_scale_ratio_and_stay_inside():
    scale, ratio, H, W = (0.2, 0.6), (0.5, 2.0), 30, 40
    th = crop_flip_affine_matrices(4096, gen(), H, W, scale=scale, ratio=ratio)
    w, h, cx, cy = th[:, 0, 0], th[:, 1, 1], th[:, 0, 2], th[:, 1, 2]
    assert (th[:, 0, 1] == 0).all() and (th[:, 1, 0] == 0).all()
    assert ((cx.abs() + w) <= 1 + 1e-6).all() and ((cy.abs() + h) <= 1 + 1e-6).all()
    unclamped = (w < 1) & (h < 1)
    assert unclamped.float().mean() > 0.8
    area, r = (w * h)[unclamped], (w * W / (h * H))[unclamped]
    assert area.min() >= scale[0] - 1e-5 and area.max() <= scale[1] + 1e-5
    assert r.min() >= ratio[0] - 1e-4 and r.max() <= ratio[1] + 1e-4
    # log-uniform aspect ratio: median near the geometric mean (1.0)
    assert abs(r.log().median().item()) < 0.1
    assert cx.std() > 0.1 and cy.std() > 0.1


def test_crop_output_size_and_batch_of_different_crops():
    # Coordinate image: each output pixel reveals where it was sampled from.
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 32), indexing="ij")
    x = torch.stack([xx, yy, xx * yy]).expand(256, -1, -1, -1).contiguous()
    y = random_resized_crop(x, gen(), size=(8, 12))
    assert y.shape == (256, 3, 8, 12)
    assert torch.unique(y.flatten(1).round(decimals=4), dim=0).shape[0] == 256
    assert (y[:, 0].amax((1, 2)) - y[:, 0].amin((1, 2))).std() > 0.05  # varied widths


def test_affine_rotates_about_centre():
    x = images(h=15, w=15)
    y = random_affine(x, gen(), degrees=40)
    torch.testing.assert_close(y[..., 7, 7], x[..., 7, 7], rtol=0, atol=1e-5)
    assert not torch.allclose(y, x, atol=1e-2)
    assert torch.equal(random_affine(x, gen()), x)


def test_rotation_is_rigid_in_pixels_for_non_square_images():
    H, W = 16, 40
    th = crop_flip_affine_matrices(64, gen(), H, W, degrees=90, flip_p=0.5)
    D = torch.diag(torch.tensor([W / 2, H / 2]))
    M = D @ th[:, :, :2] @ D.inverse()  # output->input map in pixel units
    torch.testing.assert_close(M.transpose(1, 2) @ M, torch.eye(2).expand(64, 2, 2))
    det = torch.linalg.det(M)
    assert (det < 0).any() and (det > 0).any()  # some flipped, some not


def test_translation_matrices():
    th = crop_flip_affine_matrices(1000, gen(), 16, 16, translate=0.25)
    torch.testing.assert_close(th[:, :, :2], torch.eye(2).expand(1000, 2, 2))
    shift = th[:, :, 2]  # normalised coords span 2, so 0.25 of the size is 0.5
    assert shift.abs().max() <= 0.5 and shift.abs().max() > 0.45 and shift.std() > 0.2
    # a negligible shift resamples at the pixel centres, i.e. ~identity
    x = images(b=1)
    y = random_affine(x, gen(), translate=1e-9)
    torch.testing.assert_close(y, x, rtol=0, atol=1e-5)


def test_grayscale():
    x = images(b=32)
    y = random_grayscale(x, gen(), p=1.0)
    assert torch.equal(y[:, 0], y[:, 1]) and torch.equal(y[:, 1], y[:, 2])
    luma = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    torch.testing.assert_close(y[:, 0], luma)
    assert torch.equal(random_grayscale(x, gen(), p=0.0), x)
    x1 = images(c=1)
    assert torch.equal(random_grayscale(x1, gen(), p=1.0), x1)
    # fused into Augment's colour map
    aug = dataclasses.replace(Augment.none(), grayscale_p=1.0)
    z = aug(x, gen())
    assert torch.equal(z[:, 0], z[:, 1]) and torch.equal(z[:, 1], z[:, 2])


def test_brightness_scales_each_sample():
    x = images(b=64) * 0.5  # headroom, so no clamping
    y = color_jitter(x, gen(), brightness=0.4, contrast=0, saturation=0, p=1.0)
    f = (y / x).flatten(1)
    torch.testing.assert_close(f, f[:, :1].expand_as(f))
    assert f.min() >= 0.6 - 1e-5 and f.max() <= 1.4 + 1e-5 and f[:, 0].std() > 0.1


def test_contrast_keeps_mean_luma_and_scales_deviations():
    x = 0.4 + 0.2 * images(b=64)
    y = color_jitter(x, gen(), brightness=0, contrast=0.5, saturation=0, p=1.0)
    luma = torch.tensor([0.299, 0.587, 0.114])[:, None, None]
    mx, my = (x * luma).sum(1).mean((1, 2)), (y * luma).sum(1).mean((1, 2))
    torch.testing.assert_close(my, mx)
    dx, dy = (x - mx[:, None, None, None]).flatten(1), (y - my[:, None, None, None]).flatten(1)
    f = (dx * dy).sum(1) / (dx * dx).sum(1)  # per-sample least-squares contrast factor
    torch.testing.assert_close(dy, f[:, None] * dx)
    assert f.min() >= 0.5 - 1e-5 and f.max() <= 1.5 + 1e-5 and f.std() > 0.1


def test_saturation_keeps_luma_and_ignores_gray_images():
    x = 0.4 + 0.2 * images(b=16)
    y = color_jitter(x, gen(), brightness=0, contrast=0, saturation=0.9, p=1.0)
    w = torch.tensor([0.299, 0.587, 0.114])[:, None, None]
    torch.testing.assert_close((y * w).sum(1), (x * w).sum(1))
    g = x[:, :1].expand(-1, 3, -1, -1)
    torch.testing.assert_close(color_jitter(g, gen(), 0, 0, 0.9, p=1.0), g)


def test_jitter_probability():
    x = images(b=4000, h=2, w=2)
    y = color_jitter(x, gen(), p=0.3)
    changed = (y != x).flatten(1).any(1).float().mean().item()
    assert abs(changed - 0.3) < 0.04
    assert torch.equal(color_jitter(x, gen(), p=0.0), x)


def test_blur_smooths_and_keeps_constants():
    x = images(b=16, h=32, w=32)
    y = gaussian_blur(x, gen(), sigma=(1.0, 2.0), p=1.0)
    assert tv(y) < 0.6 * tv(x)
    torch.testing.assert_close(y.mean((2, 3)), x.mean((2, 3)), atol=0.02, rtol=0)
    const = torch.full((4, 3, 20, 20), 0.3)
    torch.testing.assert_close(gaussian_blur(const, gen(), p=1.0), const)
    # unselected samples are untouched (delta kernel), selected ones are not
    z = gaussian_blur(x, gen(), p=0.5)
    same = (z == x).flatten(1).all(1)
    assert 0 < same.sum() < 16
    # per-sample sigma: stronger blur for some samples than others
    tvs = torch.tensor([tv(s) for s in gaussian_blur(x, gen(), sigma=(0.1, 3.0), p=1.0)])
    assert tvs.max() > 1.5 * tvs.min()


def test_noise_std():
    x = torch.full((64, 3, 32, 32), 0.5)
    y = gaussian_noise(x, gen(), std=0.05, p=1.0)
    assert abs((y - x).std().item() - 0.05) < 0.002 and abs((y - x).mean().item()) < 0.002
    z = gaussian_noise(x, gen(), std=0.05, p=0.5)
    assert 10 < (z == x).flatten(1).all(1).sum() < 54


def test_augment_dataclass_contract():
    a = Augment.simclr(32, 3)
    assert hash(a) == hash(copy.deepcopy(a)) and a == copy.deepcopy(a)
    for b in (a, Augment(), Augment.none(), Augment(crop_ratio=(0.5, 2), noise_std=0.1)):
        assert eval(repr(b), {"Augment": Augment}) == b
    assert repr(Augment()) == "Augment()" and repr(a) == "Augment(crop_scale=(0.08, 1.0), hue=0.1)"
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.flip_p = 0.0
    assert hash(Augment(crop_scale=[0.3, 1])) == hash(Augment(crop_scale=(0.3, 1.0)))
    for bad in ({"flip_p": 1.5}, {"brightness": -0.1}, {"saturation": 2.0}, {"degrees": -1},
                {"hue": 0.6}, {"solarize_p": 1.5}):
        with pytest.raises(ValueError):
            Augment(**bad)
    sklearn_base = pytest.importorskip("sklearn.base")

    class Est(sklearn_base.BaseEstimator):
        def __init__(self, augment=Augment()):
            self.augment = augment

    e = Est(augment=a)
    assert sklearn_base.clone(e).augment == a and "Augment(" in repr(e)


def test_simclr_recipe():
    rgb, gray, cifar = Augment.simclr(96, 3), Augment.simclr(28, 1), Augment.simclr(32, 3)
    assert rgb.crop_scale == (0.08, 1.0) and rgb.flip_p == 0.5 and rgb.jitter_p == 0.8
    assert (rgb.brightness, rgb.contrast, rgb.saturation, rgb.hue) == (0.4, 0.4, 0.4, 0.1)
    assert rgb.grayscale_p == 0.2 and rgb.blur_p == 0.5 and rgb.solarize_p == 0
    assert gray.grayscale_p == 0 and gray.saturation == 0 and gray.hue == 0 and gray.blur_p == 0
    assert cifar.blur_p == 0  # SimCLR's CIFAR recipe: no blur at 32 px
    y = gray(images(c=1, h=28, w=28), gen())
    assert y.shape == (8, 1, 28, 28)
    assert math.isclose(rgb.crop_ratio[1], 4 / 3)


def test_moco_v2_recipe_crops_less_than_simclr():
    moco, simclr = Augment.moco_v2(96, 3), Augment.simclr(96, 3)
    assert moco.crop_scale == (0.2, 1.0) and simclr.crop_scale == (0.08, 1.0)
    assert (moco.brightness, moco.contrast, moco.saturation, moco.hue) == (0.4, 0.4, 0.4, 0.1)
    assert moco.jitter_p == 0.8 and moco.grayscale_p == 0.2 and moco.blur_p == 0.5
    assert Augment.moco_v2(32, 3).blur_p == 0 and Augment.moco_v2(8, 1).hue == 0


def test_byol_recipe_is_asymmetric():
    one, two = Augment.byol(96, 3)
    for view in (one, two):
        assert view.crop_scale == (0.08, 1.0) and view.jitter_p == 0.8 and view.grayscale_p == 0.2
        assert (view.brightness, view.contrast, view.saturation, view.hue) == (0.4, 0.4, 0.2, 0.1)
    assert (one.blur_p, two.blur_p) == (1.0, 0.1) and (one.solarize_p, two.solarize_p) == (0.0, 0.2)
    small_one, small_two = Augment.byol(8, 1)
    assert small_one.blur_p == small_two.blur_p == 0 and small_two.solarize_p == 0.2
    assert small_one.saturation == small_one.hue == small_one.grayscale_p == 0


def _yiq(x):
    m = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=x.dtype)
    return torch.einsum("ij,bjhw->bihw", m, x)


def test_hue_turns_the_chroma_plane_by_one_angle_per_sample():
    x = 0.35 + 0.3 * images(b=64, h=6, w=6)  # in gamut after any turn: no clamping
    y = color_jitter(x, gen(), brightness=0, contrast=0, saturation=0, p=1.0, hue=0.5)
    yx, yy = _yiq(x), _yiq(y)
    torch.testing.assert_close(yy[:, 0], yx[:, 0])  # luma kept
    torch.testing.assert_close(yy[:, 1:].norm(dim=1), yx[:, 1:].norm(dim=1))  # chroma kept
    turn = torch.atan2(yy[:, 2], yy[:, 1]) - torch.atan2(yx[:, 2], yx[:, 1])
    turn = torch.remainder(turn + math.pi, 2 * math.pi) - math.pi  # (B, H, W)
    torch.testing.assert_close(turn, turn[:, :1, :1].expand_as(turn), atol=1e-4, rtol=0)
    assert turn[:, 0, 0].abs().max() > 2.5 and turn[:, 0, 0].std() > 1.0  # U(-pi, pi)
    # gray pixels stay gray; grayscale and non-RGB images are untouched
    g = x[:, :1].expand(-1, 3, -1, -1)
    torch.testing.assert_close(color_jitter(g, gen(), 0, 0, 0, p=1.0, hue=0.5), g)
    x1 = images(c=1)
    assert torch.equal(color_jitter(x1, gen(), 0, 0, 0, p=1.0, hue=0.5), x1)


def test_hue_moves_the_hsv_hue_like_torchvision():
    colorsys = pytest.importorskip("colorsys")
    x = torch.tensor([[0.8, 0.3, 0.2], [0.2, 0.7, 0.3], [0.3, 0.4, 0.8]])[:, :, None, None].repeat(20, 1, 1, 1)
    y = color_jitter(x, gen(), 0, 0, 0, p=1.0, hue=0.05)
    angle = 0.05 * (2 * torch.rand(60, 6, generator=gen())[:, 5] - 1)  # the turn drawn, in turns
    hsv = [(colorsys.rgb_to_hsv(*a[:, 0, 0].tolist())[0], colorsys.rgb_to_hsv(*b[:, 0, 0].tolist())[0])
           for a, b in zip(x, y)]
    moved = torch.tensor([(after - before + 0.5) % 1 - 0.5 for before, after in hsv])
    big = angle.abs() > 0.01
    assert (torch.sign(moved[big]) == torch.sign(angle[big])).all()  # positive turns: red -> yellow
    ratio = moved[big] / angle[big]
    assert 0.5 < ratio.min() and ratio.max() < 2.0


def test_colour_jitter_off_is_exactly_the_identity():
    x = images(b=256)
    y = color_jitter(x, gen(), 0.4, 0.4, 0.4, p=0.5, hue=0.1)
    same = (y == x).flatten(1).all(1)
    assert 80 < same.sum() < 176  # the jittered half changed, the rest is bit for bit
    assert torch.equal(color_jitter(x, gen(), 0.4, 0.4, 0.4, p=0.0, hue=0.1), x)
    hue_off = Augment(crop_scale=None, flip_p=0, grayscale_p=0, jitter_p=0.0, hue=0.5)
    assert torch.equal(hue_off(x, gen()), x)


def test_solarize_inverts_bright_values_of_selected_samples():
    x = images(b=400, h=4, w=4)
    y = random_solarize(x, gen(), p=1.0)
    torch.testing.assert_close(y, torch.where(x >= 0.5, 1 - x, x))
    z = random_solarize(x, gen(), p=0.2)
    changed = (z != x).flatten(1).any(1).float().mean().item()
    assert abs(changed - 0.2) < 0.06
    assert torch.equal(random_solarize(x, gen(), p=0.0), x)
    aug = dataclasses.replace(Augment.none(), solarize_p=1.0)
    torch.testing.assert_close(aug(x, gen()), y)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_stays_on_device_and_is_deterministic():
    x = images(b=64, h=32, w=32).cuda()
    aug = Augment(degrees=10, translate=0.1, blur_p=0.5, noise_std=0.05)
    g = lambda: torch.Generator(device="cuda").manual_seed(0)  # noqa: E731
    y = aug(x, g())
    assert y.is_cuda and y.shape == x.shape and torch.equal(y, aug(x, g()))
    assert aug(x.half(), g()).dtype == torch.half


def test_augment_size_resamples_the_crop_in_one_warp():
    # Multi-crop's local views: the crop goes straight to the small size.
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 16, 16, generator=g)
    out = Augment(crop_scale=(0.05, 0.4))(x, torch.Generator().manual_seed(1), size=(6, 5))
    assert out.shape == (6, 3, 6, 5) and 0 <= out.min() and out.max() <= 1
    # A full-image crop to a smaller size is a bilinear resize of the whole image.
    full = Augment(crop_scale=None, flip_p=0.0, jitter_p=0.0, grayscale_p=0.0)
    ramp = torch.linspace(0, 1, 16).expand(1, 1, 16, 16).contiguous()
    small = full(ramp, torch.Generator().manual_seed(1), size=8)
    torch.testing.assert_close(small, torch.nn.functional.interpolate(ramp, size=8, mode="bilinear", align_corners=False))
    # The working size itself draws exactly what a call without ``size`` draws.
    aug = Augment.moco_v2(16, 3)
    torch.testing.assert_close(aug(x, torch.Generator().manual_seed(2), size=16), aug(x, torch.Generator().manual_seed(2)))


def test_augment_size_rejects_bad_sizes():
    with pytest.raises(ValueError, match="size"):
        Augment()(torch.rand(2, 1, 8, 8), torch.Generator(), size=(0, 4))
