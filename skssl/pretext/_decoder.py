"""A small upsampling decoder and a per-image reconstruction error.

Shared by the pretext tasks that predict pixels from an encoder feature map
(colorization, split-brain, denoising autoencoder, inpainting, super-resolution).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


def as_feature_map(features, grid=None):
    """Backbone output -> ``(n, c, h, w)``.

    Vectors ``(n, d)`` become ``(n, d, 1, 1)``; tokens ``(n, t, d)`` become
    the ``grid`` ``(gh, gw)`` of patches they came from, after dropping a
    leading class token (``t == gh * gw + 1``). Without a grid only a square
    number of tokens (no class token) can be read: guessing from the count
    would take a class token into a grid whenever ``1 + t`` is square.
    """
    if features.ndim == 4:
        return features
    if features.ndim == 2:
        return features[:, :, None, None]
    if features.ndim == 3:
        n, t, d = features.shape
        if grid is None:
            side = math.isqrt(t)
            grid = (side, side)
        gh, gw = grid
        if t in (gh * gw, gh * gw + 1):
            return features[:, t - gh * gw:].transpose(1, 2).reshape(n, d, gh, gw)
        raise ValueError(f"backbone output of shape {tuple(features.shape)} is not a {gh}x{gw} grid of tokens "
                         "(with or without a class token).")
    raise ValueError(f"cannot read backbone output of shape {tuple(features.shape)} as a feature map (n, c, h, w).")


def token_grid(backbone, image_size):
    """The patch grid of a ViT backbone at ``image_size``; None for other networks."""
    from .._vit import PatchEmbedding, patch_grid

    first = backbone.stages[0]
    return patch_grid(image_size, first.patch_size) if isinstance(first, PatchEmbedding) else None


class Decoder(nn.Module):
    """Upsample+Conv-BN-ReLU stages, a 3x3 output conv, then an exact resize.

    Bilinear upsampling followed by a convolution avoids the checkerboard
    artefacts of transposed convolutions (Odena, Dumoulin & Olah, 2016). The
    output is linear (no final activation): callers choose the target scale.
    """

    def __init__(self, in_channels, out_channels, in_size, out_size, min_width=16, max_width=256):
        super().__init__()
        in_size, out_size = _pair(in_size, "in_size"), _pair(out_size, "out_size")
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"in_channels and out_channels must be >= 1; got {in_channels} and {out_channels}.")
        factor = max(out_size[0] / in_size[0], out_size[1] / in_size[1])
        n_up = max(0, math.ceil(math.log2(factor) - 1e-9)) if factor > 1 else 0
        layers, c = [], in_channels
        for i in range(max(n_up, 1)):
            width = max(min_width, min(max_width, in_channels >> (i + 1)))
            if i < n_up:
                layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            layers += [nn.Conv2d(c, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            c = width
        layers.append(nn.Conv2d(c, out_channels, 3, padding=1))
        self.body = nn.Sequential(*layers)
        self.in_size, self.out_size = in_size, out_size

    def forward(self, features):
        y = self.body(as_feature_map(features, self.in_size))
        if tuple(y.shape[-2:]) != self.out_size:
            y = F.interpolate(y, size=self.out_size, mode="bilinear", align_corners=False)
        return y


def _pair(size, name):
    size = (size, size) if isinstance(size, int) else tuple(int(s) for s in size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"{name} must be a positive int or an (h, w) pair; got {size!r}.")
    return size


def make_decoder(in_channels, out_channels, in_size, out_size):
    """Decoder from a ``(n, in_channels, *in_size)`` feature map to ``(n, out_channels, *out_size)`` images.

    ``log2`` of the upsampling factor (rounded up) stages of bilinear x2
    upsampling + 3x3 Conv-BN-ReLU, halving the width each time (16 to 256
    channels), a linear 3x3 output conv, and a final bilinear resize to exactly
    ``out_size`` when the factor is not a power of two.
    """
    return Decoder(in_channels, out_channels, in_size, out_size)


def reconstruction_error(pred, target):
    """Mean squared error of each image: ``(n, ...)`` pairs -> ``(n,)``."""
    if pred.shape != target.shape:
        raise ValueError(f"pred has shape {tuple(pred.shape)} but target has {tuple(target.shape)}.")
    return (pred.float() - target.float()).pow(2).flatten(1).mean(1)


def feature_map_shape(backbone, in_channels, image_size):
    """``(channels, (h, w))`` of the backbone's last unpooled map, by a dummy forward pass."""
    was_training = backbone.training
    backbone.eval()
    with torch.no_grad():
        f = as_feature_map(backbone.feature_maps(torch.zeros(2, in_channels, *image_size), -1),
                           token_grid(backbone, image_size))
    backbone.train(was_training)
    return f.shape[1], tuple(f.shape[-2:])


def build_encoder(spec, in_channels, image_size, stage):
    """A backbone for ``in_channels`` inputs and the width of its stage ``stage``.

    For methods whose encoder does not see the images' own channels
    (colorization reads only L; split-brain's halves read channel groups).
    """
    from ..backbones import build_backbone

    backbone = build_backbone(spec, in_channels, image_size)
    dims = backbone.stage_dims(in_channels, image_size)
    if not -len(dims) <= stage < len(dims):
        raise ValueError(f"stage={stage} but the backbone has {len(dims)} stages (valid: {-len(dims)} to {len(dims) - 1}).")
    return backbone, int(dims[stage])


def input_stats(images, to_input):
    """Per-channel mean and std (float32 numpy) of ``to_input(unit_range(chunk))`` over stored images."""
    import numpy as np

    from .._images import unit_range

    sums = squares = None
    count = 0
    for chunk in images.split(4096):
        x = to_input(unit_range(chunk)).double()
        s, q = x.sum(dim=(0, 2, 3)), (x * x).sum(dim=(0, 2, 3))
        sums, squares = (s, q) if sums is None else (sums + s, squares + q)
        count += x.shape[0] * x.shape[2] * x.shape[3]
    mean = sums / count
    std = np.sqrt(np.maximum((squares / count - mean * mean).numpy(), 1e-12))
    return mean.numpy().astype(np.float32), std.astype(np.float32).clip(1e-3)
