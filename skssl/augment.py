"""Batched image augmentations with per-sample random parameters.

Every op takes a float tensor ``x`` of shape (B, C, H, W) with values in [0, 1]
and a ``torch.Generator`` on ``x.device``; all randomness comes from that
generator (never from the global RNG) and nothing loops over samples in Python.
Half/bfloat16 inputs are processed in float32 and cast back.
"""
import functools
import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["Augment", "crop_flip_affine_matrices", "symmetric_beta_ppf", "random_resized_crop", "random_flip",
           "random_affine", "color_jitter", "random_grayscale", "gaussian_blur", "random_solarize", "gaussian_noise"]

_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601


def _upcast(fn):
    # grid_sample / conv have patchy low-precision CPU kernels; doing the maths in
    # float32 also avoids banding from repeated bf16 rounding.
    @functools.wraps(fn)
    def wrapper(x, *args, **kwargs):
        if x.dtype in (torch.float16, torch.bfloat16):
            return fn(x.float(), *args, **kwargs).to(x.dtype)
        return fn(x, *args, **kwargs)
    return wrapper


def _rand(x, generator, *shape):
    return torch.rand(*shape, generator=generator, device=x.device, dtype=x.dtype)


def _pair(size):
    return (size, size) if isinstance(size, int) else tuple(size)


def _col(t):  # (B,) -> (B, 1, 1, 1) for per-sample broadcasting
    return t[:, None, None, None]


@functools.lru_cache(maxsize=16)
def _beta_ppf_table(alpha, points=2049):
    from scipy.special import betaincinv

    # Half of the symmetric quantile function on u = 0.5 * s**p: near u = 0 it behaves
    # like u**(1 / alpha), so p = max(1, alpha) keeps it smooth in s for alpha > 1 too.
    s = torch.linspace(0, 1, points, dtype=torch.float64)
    return torch.from_numpy(betaincinv(alpha, alpha, (0.5 * s ** max(1.0, alpha)).numpy()))


def symmetric_beta_ppf(u, alpha):
    """Quantile function of Beta(alpha, alpha) at ``u`` in [0, 1], elementwise.

    Inverse-CDF sampling turns uniforms from a ``torch.Generator`` into Beta
    variates with exactly one draw each (``torch.distributions.Beta`` cannot
    take a generator). Interpolates a table; absolute error below 1e-5 for
    alpha in [0.05, 20]. ``alpha=1`` returns ``u`` itself.

    Parameters
    ----------
    u : torch.Tensor
        Probabilities in [0, 1].
    alpha : float
        Both shape parameters of the Beta distribution.

    Returns
    -------
    torch.Tensor
        The quantiles, of the shape and dtype of ``u``.

    Examples
    --------
    >>> import torch
    >>> from skssl.augment import symmetric_beta_ppf
    >>> symmetric_beta_ppf(torch.tensor([0.0, 0.5, 1.0]), 0.6)
    tensor([0.0000, 0.5000, 1.0000])
    """
    if alpha == 1:
        return u
    table = _beta_ppf_table(float(alpha)).to(u.device, u.dtype)
    n = len(table) - 1
    v = torch.minimum(u, 1 - u).clamp(0, 0.5)
    pos = (2 * v) ** (1 / max(1.0, alpha)) * n
    i = pos.floor().long().clamp(max=n - 1)
    half = torch.lerp(table[i], table[i + 1], pos - i)
    return torch.where(u <= 0.5, half, 1 - half)


def crop_flip_affine_matrices(batch_size, generator, height, width, *, scale=None,
                              ratio=(3 / 4, 4 / 3), flip_p=0.0, degrees=0.0, translate=0.0,
                              out_size=None, dtype=torch.float32, boxes=None, center_alpha=1.0):
    """Per-sample ``F.affine_grid`` matrices fusing crop, flip, rotation and translation.

    Parameters
    ----------
    batch_size : int
        Number of matrices.
    generator : torch.Generator
        Source of randomness; the matrices are created on its device.
    height, width : int
        Input image size.
    scale, ratio : tuple of float
        Random resized crop: area fraction and (log-uniform) aspect ratio, as in
        torchvision. ``scale=None`` keeps the full image.
    flip_p, degrees, translate : float
        Horizontal-flip probability, rotation range (+-degrees) and shift range
        (+-translate times the output size, per axis).
    out_size : int or tuple of int, optional
        Output size (defaults to the input size); sets the pixel aspect of the rotation.
    dtype : torch.dtype, default=torch.float32
        Dtype of the matrices.
    boxes : Tensor (batch_size, 4), optional
        Per-sample regions ``(x0, y0, x1, y1)`` as fractions of the width and
        height, where the crop centres are drawn (ContrastiveCrop, Peng et al.
        2022): each centre coordinate is ``lo + (hi - lo) * Beta(center_alpha,
        center_alpha)`` with ``[lo, hi]`` the box's extent clipped to the centres
        that keep the crop inside the image. Only used with ``scale``; ``None``
        draws centres uniformly over the whole image (as torchvision) and uses
        exactly the same random numbers as before this option existed.
    center_alpha : float, default=1.0
        Beta shape for the centres inside ``boxes``: below 1 favours the box's
        edges (views of one image overlap less), 1 is uniform.

    Returns
    -------
    theta : Tensor (batch_size, 2, 3)
        Output-to-input maps in normalised coordinates (``align_corners=False``).

    Examples
    --------
    >>> import torch
    >>> from skssl.augment import crop_flip_affine_matrices
    >>> crop_flip_affine_matrices(4, torch.Generator().manual_seed(0), 16, 16, scale=(0.5, 1.0)).shape
    torch.Size([4, 2, 3])
    """
    H2, W2 = _pair(out_size) if out_size is not None else (height, width)
    u = torch.rand(batch_size, 8, generator=generator, device=generator.device, dtype=dtype)
    w = h = torch.ones_like(u[:, 0])
    cx = cy = torch.zeros_like(w)
    if scale is not None:
        area = scale[0] + (scale[1] - scale[0]) * u[:, 0]
        lo, hi = math.log(ratio[0]), math.log(ratio[1])
        r = torch.exp(lo + (hi - lo) * u[:, 1])
        # Half-extents in normalised coords == crop side / image side; clamping instead of
        # torchvision's rejection loop keeps it vectorised (only extreme boxes differ).
        w = torch.sqrt(area * r * (height / width)).clamp(max=1.0)
        h = torch.sqrt(area / r * (width / height)).clamp(max=1.0)
        if boxes is None:
            cx = (1 - w) * (2 * u[:, 2] - 1)
            cy = (1 - h) * (2 * u[:, 3] - 1)
        else:
            b = boxes.to(u.device, dtype) * 2 - 1  # -> normalised [-1, 1] coordinates
            cx = _center_in(b[:, 0], b[:, 2], 1 - w, symmetric_beta_ppf(u[:, 2], center_alpha))
            cy = _center_in(b[:, 1], b[:, 3], 1 - h, symmetric_beta_ppf(u[:, 3], center_alpha))
    f = 1 - 2 * (u[:, 4] < flip_p).to(dtype)
    a = math.radians(degrees) * (2 * u[:, 5] - 1)
    cos, sin = torch.cos(a), torch.sin(a)
    tx, ty = 2 * translate * (2 * u[:, 6] - 1), 2 * translate * (2 * u[:, 7] - 1)
    # theta = S @ R @ Flip with S = diag(w, h); R rotates in output *pixel* units so
    # non-square outputs are not sheared.
    row0 = torch.stack([w * cos * f, -w * sin * (H2 / W2), cx + w * tx], -1)
    row1 = torch.stack([h * sin * f * (W2 / H2), h * cos, cy + h * ty], -1)
    return torch.stack([row0, row1], 1)


def _center_in(lo, hi, limit, t):
    # As the authors' code: the box's extent clipped to the feasible centres
    # [-limit, limit]; a box wholly outside them collapses to the nearest one.
    lo, hi = torch.clamp(lo, -limit, limit), torch.clamp(hi, -limit, limit)
    return lo + (hi - lo) * t


def _warp(x, theta, out_size=None, inside=False):
    H2, W2 = _pair(out_size) if out_size is not None else x.shape[-2:]
    # Same grid as F.affine_grid(align_corners=False), but by broadcasting: affine_grid's
    # bmm with inner size 3 is ~3x slower on CPU.
    xs = (torch.arange(W2, device=x.device, dtype=x.dtype) * 2 + 1) / W2 - 1
    ys = (torch.arange(H2, device=x.device, dtype=x.dtype) * 2 + 1) / H2 - 1
    t = theta.to(x.dtype)[:, :, None, None, :]
    grid = (t[..., 0] * xs + t[..., 1] * ys[:, None] + t[..., 2]).permute(0, 2, 3, 1)
    # Rotation/translation sample outside the image: "reflection" avoids black corners (an
    # easy shortcut cue for SSL losses that also skews colour statistics). Crops stay
    # inside, where "border" gives the same values and is ~1.5x faster.
    pad = "border" if inside else "reflection"
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=pad, align_corners=False)


@_upcast
def random_resized_crop(x, generator, scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3), size=None):
    """Random crop (area fraction in `scale`, aspect in `ratio`) resized to `size`.

    Semantics of ``torchvision.transforms.RandomResizedCrop``, except that an infeasible
    box is clamped to the image instead of re-drawn.

    Parameters
    ----------
    x : torch.Tensor of shape (B, C, H, W)
        Float images in [0, 1].
    generator : torch.Generator
        Source of randomness, on ``x.device``.
    scale : tuple of float, default=(0.2, 1.0)
        Range of the crop's area as a fraction of the image.
    ratio : tuple of float, default=(3/4, 4/3)
        Range of the crop's aspect ratio (drawn log-uniformly).
    size : int, tuple (h, w) or None, default=None
        Output size; ``None`` keeps (H, W).

    Returns
    -------
    torch.Tensor of shape (B, C, h, w)
        The resized crops.

    Examples
    --------
    >>> import torch
    >>> from skssl.augment import random_resized_crop
    >>> x = torch.rand(4, 3, 16, 16)
    >>> random_resized_crop(x, torch.Generator().manual_seed(0), size=8).shape
    torch.Size([4, 3, 8, 8])
    """
    B, _, H, W = x.shape
    theta = crop_flip_affine_matrices(B, generator, H, W, scale=scale, ratio=ratio,
                                      out_size=size, dtype=x.dtype)
    return _warp(x, theta, size, inside=True)


def random_flip(x, generator, p=0.5):
    """Flip each sample horizontally with probability `p` (exact, no resampling).

    Parameters
    ----------
    x : torch.Tensor of shape (B, C, H, W)
        Float images in [0, 1].
    generator : torch.Generator
        Source of randomness, on ``x.device``.
    p : float, default=0.5
        Probability of flipping a sample.

    Returns
    -------
    torch.Tensor of shape (B, C, H, W)
        The augmented batch.

    Examples
    --------
    >>> import torch
    >>> from skssl.augment import random_flip
    >>> x = torch.rand(4, 3, 16, 16)
    >>> random_flip(x, torch.Generator().manual_seed(0)).shape
    torch.Size([4, 3, 16, 16])
    """
    mask = _rand(x, generator, x.shape[0]) < p
    return torch.where(_col(mask), x.flip(-1), x)


@_upcast
def random_affine(x, generator, degrees=0.0, translate=0.0):
    """Rotate by U(-degrees, degrees) and shift by U(-translate, translate) x size, per sample.

    Parameters
    ----------
    x : torch.Tensor of shape (B, C, H, W)
        Float images in [0, 1].
    generator : torch.Generator
        Source of randomness, on ``x.device``.
    degrees : float, default=0.0
        Largest rotation, in degrees.
    translate : float, default=0.0
        Largest shift, as a fraction of the image size.

    Returns
    -------
    torch.Tensor of shape (B, C, H, W)
        The augmented batch.

    Examples
    --------
    >>> import torch
    >>> from skssl.augment import random_affine
    >>> x = torch.rand(4, 3, 16, 16)
    >>> random_affine(x, torch.Generator().manual_seed(0), degrees=15).shape
    torch.Size([4, 3, 16, 16])
    """
    if degrees == 0 and translate == 0:
        return x
    B, _, H, W = x.shape
    theta = crop_flip_affine_matrices(B, generator, H, W, degrees=degrees,
                                      translate=translate, dtype=x.dtype)
    return _warp(x, theta)


def _gray(x):
    """Luma for RGB, channel mean otherwise; shape (B, 1, H, W)."""
    if x.shape[1] != 3:
        return x.mean(1, keepdim=True)
    return torch.einsum("bchw,c->bhw", x, x.new_tensor(_LUMA)).unsqueeze(1)


@functools.lru_cache(maxsize=4)
def _hue_basis(dtype, device):
    """``(1 luma^T, P)``: the hue rotation by ``t`` radians is ``1 luma^T + cos t (I - 1 luma^T) + sin t P``.

    The rotation turns the chroma plane (I, Q) of YIQ about the luma axis, in RGB:
    ``P = T^-1 J T`` with ``T`` the RGB->YIQ matrix (FCC NTSC, whose Y is ITU-R 601 luma)
    and ``J`` the quarter turn, signed so that positive angles move the HSV hue forward
    (red towards yellow), as torchvision's ``adjust_hue`` with a positive factor.
    """
    yiq = torch.tensor((_LUMA, (0.596, -0.274, -0.322), (0.211, -0.523, 0.312)), dtype=torch.float64)
    quarter = torch.tensor(((0.0, 0.0, 0.0), (0.0, 0.0, 1.0), (0.0, -1.0, 0.0)), dtype=torch.float64)
    gray = torch.ones(3, 1, dtype=torch.float64) @ yiq[:1]
    return gray.to(device, dtype), (yiq.inverse() @ quarter @ yiq).to(device, dtype)


def _color(x, generator, brightness, contrast, saturation, p, gray_p=0.0, hue=0.0):
    rgb = x.shape[1] == 3
    saturation, gray_p, hue = (saturation, gray_p, hue) if rgb else (0.0, 0.0, 0.0)
    if (p <= 0 or brightness == contrast == saturation == hue == 0) and gray_p <= 0:
        return x
    u = _rand(x, generator, x.shape[0], 6 if hue else 5)  # hue=0 keeps the old random stream
    on = (u[:, 0] < p).to(x.dtype)
    b, c, s = (1 + on * f * (2 * u[:, i] - 1)
               for i, f in enumerate((brightness, contrast, saturation), 1))
    s = torch.where(u[:, 4] < gray_p, 0.0, s)  # grayscale == saturation factor 0
    # brightness -> contrast -> saturation composes to alpha*x + beta*gray(x) + gamma
    # per sample (gray is linear and luma weights sum to 1), i.e. ~3 passes over the batch
    # instead of ~12. Unlike torchvision we clamp once at the end, not after every op.
    alpha, beta = s * c * b, (1 - s) * c * b
    if not rgb:
        g = _gray(x)
        gamma = (1 - c) * b * g.mean((1, 2, 3))
        return torch.addcmul(g * _col(beta) + _col(gamma), x, _col(alpha)).clamp_(0, 1)
    # RGB: the hue turn R keeps luma and maps gray to gray, so it commutes with the rest:
    # R(alpha x + beta gray + gamma) = (alpha R + beta 1 luma^T) x + gamma, one 3x3 matrix
    # per sample and one bmm (~2x faster on CPU than the path above). Jitter off: identity.
    gray, turn = _hue_basis(x.dtype, x.device)
    angle = (2 * math.pi * hue) * on * (2 * u[:, 5] - 1) if hue else torch.zeros_like(on)
    cos, sin = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
    a = alpha[:, None, None]
    eye = torch.eye(3, dtype=x.dtype, device=x.device)
    matrix = a * cos * eye + (a * (1 - cos) + beta[:, None, None]) * gray + a * sin * turn
    gamma = (1 - c) * b * (x.mean((2, 3)) @ gray[0])
    B, C, H, W = x.shape
    y = torch.baddbmm(gamma[:, None, None], matrix, x.reshape(B, C, H * W))
    return y.view(B, C, H, W).clamp_(0, 1)


@_upcast
def color_jitter(x, generator, brightness=0.4, contrast=0.4, saturation=0.4, p=0.8, hue=0.0):
    """Brightness, contrast, saturation and hue jitter (in that order) with probability `p` per sample.

    Brightness, contrast and saturation factors are uniform in [1 - s, 1 + s]. Brightness
    multiplies, contrast blends with the per-sample mean luma, saturation with the luma image
    (C == 3 only; for other C "luma" is the channel mean). The result is clamped to [0, 1].
    The hue (C == 3 only) turns by U(-hue, hue) of a full turn, ``hue`` in [0, 0.5], as
    a rotation of the YIQ chroma plane about the luma axis (NVIDIA DALI's hue op): luma
    and chroma are kept (up to the final clamp) and gray stays gray. torchvision's
    ``ColorJitter(hue=...)`` turns the HSV hexagon instead, keeping HSV value and
    saturation. On mid-range colours a YIQ turn moves the HSV hue by 0.7 to 1.5 times its
    angle (median 1.05); being linear, it keeps the whole jitter one 3x3 matrix per sample.

    Parameters
    ----------
    x : torch.Tensor of shape (B, C, H, W)
        Float images in [0, 1].
    generator : torch.Generator
        Source of randomness, on ``x.device``.
    brightness, contrast, saturation : float, default=0.4
        Jitter strengths ``s``: factors are drawn from [1 - s, 1 + s].
    p : float, default=0.8
        Probability of jittering a sample.
    hue : float, default=0.0
        Largest hue turn, as a fraction of a full turn, in [0, 0.5].

    Returns
    -------
    torch.Tensor of shape (B, C, H, W)
        The jittered batch.

    Examples
    --------
    >>> import torch
    >>> from skssl.augment import color_jitter
    >>> x = torch.rand(4, 3, 16, 16)
    >>> color_jitter(x, torch.Generator().manual_seed(0), hue=0.1).shape
    torch.Size([4, 3, 16, 16])
    """
    return _color(x, generator, brightness, contrast, saturation, p, hue=hue)


def random_grayscale(x, generator, p=0.2):
    """Replace each 3-channel sample by its luma (repeated) with probability `p`.

    Parameters
    ----------
    x : torch.Tensor of shape (B, C, H, W)
        Float images in [0, 1].
    generator : torch.Generator
        Source of randomness, on ``x.device``.
    p : float, default=0.2
        Probability of turning a sample gray.

    Returns
    -------
    torch.Tensor of shape (B, C, H, W)
        The augmented batch.

    Examples
    --------
    >>> import torch
    >>> from skssl.augment import random_grayscale
    >>> x = torch.rand(4, 3, 16, 16)
    >>> random_grayscale(x, torch.Generator().manual_seed(0)).shape
    torch.Size([4, 3, 16, 16])
    """
    if x.shape[1] != 3 or p <= 0:
        return x
    mask = _rand(x, generator, x.shape[0]) < p
    return torch.where(_col(mask), _gray(x).expand_as(x), x)


@_upcast
def gaussian_blur(x, generator, sigma=(0.1, 2.0), p=0.5, kernel_size=None):
    """Separable Gaussian blur with per-sample sigma ~ U(sigma), applied with probability `p`.

    Borders are reflect-padded so constant images stay constant.

    Parameters
    ----------
    x : torch.Tensor of shape (B, C, H, W)
        Float images in [0, 1].
    generator : torch.Generator
        Source of randomness, on ``x.device``.
    sigma : tuple of float, default=(0.1, 2.0)
        Range of the standard deviation, in pixels.
    p : float, default=0.5
        Probability of blurring a sample.
    kernel_size : int or None, default=None
        Kernel width (made odd); ``None``: about 10% of min(H, W), at least 3 (as in SimCLR).

    Returns
    -------
    torch.Tensor of shape (B, C, H, W)
        The augmented batch.

    Examples
    --------
    >>> import torch
    >>> from skssl.augment import gaussian_blur
    >>> x = torch.rand(4, 3, 16, 16)
    >>> gaussian_blur(x, torch.Generator().manual_seed(0)).shape
    torch.Size([4, 3, 16, 16])
    """
    B, C, H, W = x.shape
    k = kernel_size or max(3, round(0.1 * min(H, W)))
    k = min(k // 2 * 2 + 1, 2 * min(H, W) - 1)  # odd; reflect padding needs pad < side
    if p <= 0 or k < 3:
        return x
    u = _rand(x, generator, B, 2)
    s = sigma[0] + (sigma[1] - sigma[0]) * u[:, 1:]
    d = torch.arange(k, device=x.device, dtype=x.dtype) - k // 2
    kern = torch.exp(-d ** 2 / (2 * s ** 2))
    kern = kern / kern.sum(1, keepdim=True)
    # Unselected samples get a delta kernel (exact identity) so the whole batch is one conv.
    kern = torch.where((u[:, :1] < p), kern, (d == 0).to(x.dtype))
    kern = kern.repeat_interleave(C, 0)[:, None]  # (B*C, 1, k)
    # Separable depthwise conv, padding each axis just before its pass (~2x cheaper).
    y = F.pad(x.reshape(1, B * C, H, W), [0, 0, k // 2, k // 2], mode="reflect")
    y = F.conv2d(y, kern[..., None], groups=B * C)
    y = F.pad(y, [k // 2, k // 2, 0, 0], mode="reflect")
    return F.conv2d(y, kern[:, :, None], groups=B * C).reshape(B, C, H, W)


def random_solarize(x, generator, p=0.2, threshold=0.5):
    """Solarize each sample with probability `p`: values >= `threshold` become ``1 - x``.

    As PIL's ``ImageOps.solarize`` at 128 (BYOL's and Barlow Twins' solarization).

    Parameters
    ----------
    x : torch.Tensor of shape (B, C, H, W)
        Float images in [0, 1].
    generator : torch.Generator
        Source of randomness, on ``x.device``.
    p : float, default=0.2
        Probability of solarizing a sample.
    threshold : float, default=0.5
        Values at or above it are inverted.

    Returns
    -------
    torch.Tensor of shape (B, C, H, W)
        The augmented batch.

    Examples
    --------
    >>> import torch
    >>> from skssl.augment import random_solarize
    >>> x = torch.rand(4, 3, 16, 16)
    >>> random_solarize(x, torch.Generator().manual_seed(0)).shape
    torch.Size([4, 3, 16, 16])
    """
    if p <= 0:
        return x
    on = _col(_rand(x, generator, x.shape[0]) < p)
    return torch.where(on & (x >= threshold), 1 - x, x)


def gaussian_noise(x, generator, std=0.05, p=0.5):
    """Add N(0, std^2) noise to each sample with probability `p`; clamped to [0, 1].

    Parameters
    ----------
    x : torch.Tensor of shape (B, C, H, W)
        Float images in [0, 1].
    generator : torch.Generator
        Source of randomness, on ``x.device``.
    std : float, default=0.05
        Standard deviation of the noise.
    p : float, default=0.5
        Probability of noising a sample.

    Returns
    -------
    torch.Tensor of shape (B, C, H, W)
        The augmented batch.

    Examples
    --------
    >>> import torch
    >>> from skssl.augment import gaussian_noise
    >>> x = torch.rand(4, 3, 16, 16)
    >>> gaussian_noise(x, torch.Generator().manual_seed(0)).shape
    torch.Size([4, 3, 16, 16])
    """
    if std <= 0 or p <= 0:
        return x
    on = (_rand(x, generator, x.shape[0]) < p).to(x.dtype)
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return (x + noise * _col(std * on)).clamp_(0, 1)


@dataclass(frozen=True)
class Augment:
    """Immutable augmentation pipeline: geometry (one fused warp), colour, blur, solarization, noise.

    Calling ``aug(x, generator)`` on a (B, C, H, W) batch is deterministic given the
    generator's state; ops run in the order crop/flip/affine, jitter (brightness,
    contrast, saturation, hue), grayscale, blur, solarization, noise.

    The classmethods give the published recipes, adapted to the image size and channel
    count: :meth:`simclr`, :meth:`moco_v2` (also SimSiam's) and :meth:`byol` (also Barlow
    Twins' and VICReg's; one pipeline per view).

    Parameters
    ----------
    crop_scale, crop_ratio : tuple of float
        Random resized crop (see `random_resized_crop`); ``crop_scale=None`` disables it.
    flip_p, degrees, translate : float
        Horizontal flip probability, rotation range, shift range (fraction of size).
    brightness, contrast, saturation : float
        Colour jitter strengths in [0, 1].
    hue : float
        Hue jitter in [0, 0.5]: a jittered RGB sample's colours turn about the gray
        axis (in YIQ) by U(-hue, hue) of a full turn, which moves its HSV hue by
        about as much (see `color_jitter`); ignored for other channel counts.
    jitter_p : float
        Probability of jittering a sample's colours.
    grayscale_p, blur_p : float
        Probabilities of grayscale (RGB only) and Gaussian blur.
    blur_sigma : tuple of float
        Range of the blur's standard deviation, in pixels.
    noise_std : float
        Standard deviation of the additive noise; 0 disables it.
    noise_p : float
        Probability of adding noise to a sample.
    solarize_p : float
        Probability of solarizing a sample (values >= 0.5 become ``1 - x``).

    Examples
    --------
    >>> import torch
    >>> from skssl.augment import Augment
    >>> augment = Augment(crop_scale=(0.6, 1.0), flip_p=0.0, degrees=10)
    >>> augment(torch.rand(4, 1, 8, 8), torch.Generator().manual_seed(0)).shape
    torch.Size([4, 1, 8, 8])
    >>> Augment.simclr(32, 3).crop_scale
    (0.08, 1.0)
    """
    crop_scale: tuple = (0.2, 1.0)
    crop_ratio: tuple = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    degrees: float = 0.0
    translate: float = 0.0
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.0
    jitter_p: float = 0.8
    grayscale_p: float = 0.2
    blur_p: float = 0.0
    blur_sigma: tuple = (0.1, 2.0)
    noise_std: float = 0.0
    noise_p: float = 0.5
    solarize_p: float = 0.0

    def __post_init__(self):
        # Lists would make the instance unhashable; normalise to tuples of floats.
        for name in ("crop_scale", "crop_ratio", "blur_sigma"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, tuple(float(t) for t in getattr(self, name)))
        for name in ("flip_p", "jitter_p", "grayscale_p", "blur_p", "noise_p", "solarize_p",
                     "brightness", "contrast", "saturation"):  # factors 1 +- s must stay >= 0
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"Augment.{name} must be in [0, 1], got {getattr(self, name)!r}")
        if not 0 <= self.hue <= 0.5:
            raise ValueError(f"Augment.hue must be in [0, 0.5], got {self.hue!r}")
        if self.degrees < 0 or self.translate < 0 or self.noise_std < 0:
            raise ValueError("Augment.degrees, translate and noise_std must be >= 0")

    def __repr__(self):
        # Only non-default fields, so estimator reprs stay short; still eval()-able.
        changed = (f"{f.name}={getattr(self, f.name)!r}" for f in fields(self)
                   if getattr(self, f.name) != f.default)
        return f"{type(self).__name__}({', '.join(changed)})"

    def __call__(self, x: Tensor, generator: torch.Generator, boxes=None,
                 center_alpha: float = 1.0, size=None) -> Tensor:
        """Augment a batch (B, C, H, W); returns `x` itself when every op is disabled.

        ``boxes`` (B, 4) and ``center_alpha`` place the crop centres as in
        :func:`crop_flip_affine_matrices` (ContrastiveCrop); ``None`` is the
        plain random resized crop. ``size`` (int or (h, w)) resamples the crop
        to that output size in the same warp (multi-crop's small local views);
        ``None`` keeps (H, W). The blur kernel follows the output size.
        """
        if x.dtype in (torch.float16, torch.bfloat16) and self != Augment.none():
            return self(x.float(), generator, boxes, center_alpha, size).to(x.dtype)
        B, _, H, W = x.shape
        size = None if size is None else _pair(size)
        if size is not None and (len(size) != 2 or min(size) < 1):
            raise ValueError(f"Augment size must be a positive int or (h, w); got {size!r}.")
        size = size if size is not None and tuple(size) != (H, W) else None
        if size is not None or self.crop_scale is not None or self.flip_p > 0 or self.degrees or self.translate:
            theta = crop_flip_affine_matrices(
                B, generator, H, W, scale=self.crop_scale, ratio=self.crop_ratio,
                flip_p=self.flip_p, degrees=self.degrees, translate=self.translate, dtype=x.dtype,
                boxes=boxes, center_alpha=center_alpha, out_size=size)
            x = _warp(x, theta, size, inside=not (self.degrees or self.translate))
        # Grayscale is fused into the colour map (saturation 0), after jitter as in SimCLR.
        x = _color(x, generator, self.brightness, self.contrast, self.saturation,
                   self.jitter_p, self.grayscale_p, self.hue)
        if self.blur_p > 0:
            x = gaussian_blur(x, generator, self.blur_sigma, self.blur_p)
        x = random_solarize(x, generator, self.solarize_p)
        return gaussian_noise(x, generator, self.noise_std, self.noise_p)

    # Published recipes. Every one drops what a channel count cannot express (saturation,
    # hue and grayscale need RGB) and blurs only images larger than 32 px: SimCLR's CIFAR-10
    # recipe drops the blur at 32 px, where a 10%-of-the-side kernel is 3 px.
    @classmethod
    def _recipe(cls, image_size, channels, *, crop_scale, saturation, hue, blur_p, solarize_p=0.0):
        rgb = channels == 3
        return cls(crop_scale=crop_scale, flip_p=0.5, brightness=0.4, contrast=0.4,
                   saturation=saturation if rgb else 0.0, hue=hue if rgb else 0.0, jitter_p=0.8,
                   grayscale_p=0.2 if rgb else 0.0, blur_p=blur_p if image_size > 32 else 0.0,
                   solarize_p=solarize_p)

    @classmethod
    def simclr(cls, image_size: int, channels: int) -> "Augment":
        """Augmentation of SimCLR (Chen et al., ICML 2020, appendix A).

        Crop scale (0.08, 1), flip, colour jitter (0.4, 0.4, 0.4, 0.1) with
        p=0.8 (colour strength 0.5, the paper's CIFAR-10 setting; its ImageNet
        strength 1.0 doubles each), grayscale p=0.2, blur p=0.5 (none at 32 px
        and below).

        Parameters
        ----------
        image_size : int
            Working image size in pixels (blur only above 32).
        channels : int
            Image channels (saturation, hue and grayscale only for 3).

        Returns
        -------
        Augment
            The recipe.
        """
        return cls._recipe(image_size, channels, crop_scale=(0.08, 1.0), saturation=0.4, hue=0.1, blur_p=0.5)

    @classmethod
    def moco_v2(cls, image_size: int, channels: int) -> "Augment":
        """Augmentation of MoCo v2 (Chen et al. 2020), also SimSiam's (Chen & He, CVPR 2021).

        ``aug_plus`` in facebookresearch/moco: crop scale (0.2, 1), colour
        jitter (0.4, 0.4, 0.4, 0.1) with p=0.8, grayscale p=0.2, blur sigma
        0.1-2 with p=0.5 (none at 32 px and below), flip.

        Parameters
        ----------
        image_size : int
            Working image size in pixels (blur only above 32).
        channels : int
            Image channels (saturation, hue and grayscale only for 3).

        Returns
        -------
        Augment
            The recipe.
        """
        return cls._recipe(image_size, channels, crop_scale=(0.2, 1.0), saturation=0.4, hue=0.1, blur_p=0.5)

    @classmethod
    def byol(cls, image_size: int, channels: int) -> tuple:
        """BYOL's asymmetric pair of augmentations (Grill et al., NeurIPS 2020, table 6).

        Also used by Barlow Twins (Zbontar et al. 2021) and VICReg (Bardes et
        al. 2022): both views get crop scale (0.08, 1), flip, colour jitter
        (0.4, 0.4, 0.2, 0.1) with p=0.8 and grayscale p=0.2; blur p=1.0 on the
        first view and 0.1 on the second (none at 32 px and below),
        solarization p=0 and 0.2.

        Parameters
        ----------
        image_size : int
            Working image size in pixels (blur only above 32).
        channels : int
            Image channels (saturation, hue and grayscale only for 3).

        Returns
        -------
        tuple of Augment
            ``(view_1, view_2)``.
        """
        common = dict(crop_scale=(0.08, 1.0), saturation=0.2, hue=0.1)
        return (cls._recipe(image_size, channels, blur_p=1.0, **common),
                cls._recipe(image_size, channels, blur_p=0.1, solarize_p=0.2, **common))

    @classmethod
    def none(cls) -> "Augment":
        """The identity pipeline."""
        return cls(crop_scale=None, flip_p=0.0, jitter_p=0.0, grayscale_p=0.0)
