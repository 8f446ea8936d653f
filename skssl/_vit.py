"""Vision Transformer backbone (Dosovitskiy et al., ICLR 2021), in the form MAE and BEiT use.

Images are cut into ``patch_size`` squares (zero-padded at the bottom and
right to a whole number of patches), each linearly embedded; fixed 2-D sin-cos
position embeddings are added and a learned class token is prepended; pre-norm
transformer blocks follow, with attention computed by
``torch.nn.functional.scaled_dot_product_attention`` (flash attention on
CUDA). The network is split into stages, the patch embedding and then groups
of blocks, so :class:`skssl.backbones.Backbone` can read any of them: every
stage outputs tokens ``(n, 1 + t, d)`` (class token first), which
:func:`skssl.backbones.pool` averages. The last stage ends with the final
LayerNorm.

Position embeddings are computed from the patch grid, so one network accepts
any image size; the patch size is fixed when the network is built.
"""

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["VisionTransformer", "PatchEmbedding", "Block", "auto_patch_size", "sincos_position_embedding", "position_table",
           "patchify", "unpatchify", "vit_tiny", "vit_small"]

# DeiT's names for the two smallest ViTs.
VIT_SIZES = {
    "vit_tiny": dict(embed_dim=192, depth=12, num_heads=3),
    "vit_small": dict(embed_dim=384, depth=12, num_heads=6),
}


def auto_patch_size(image_size):
    """Patch side for an image: 2 px under 16 px, 4 px under 64 (28-32 px), 8 under 128, else 16 (224)."""
    side = min(image_size) if isinstance(image_size, (tuple, list)) else int(image_size)
    return 2 if side < 16 else 4 if side < 64 else 8 if side < 128 else 16


def sincos_position_embedding(grid, dim, device=None, dtype=torch.float32):
    """Fixed 2-D sin-cos embeddings ``(gh * gw, dim)`` of a row-major patch grid (as in MAE).

    Half of the channels encode the row, half the column, each as sines and
    cosines at ``dim / 4`` frequencies from 1 to 1/10000. Computed in float64
    on the CPU (MPS has no float64) and then moved; :func:`position_table`
    caches the result.
    """
    if dim % 4:
        raise ValueError(f"2-D sin-cos position embeddings need a width divisible by 4; got {dim}.")
    gh, gw = grid
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    rows = torch.arange(gh, dtype=torch.float64).repeat_interleave(gw)
    cols = torch.arange(gw, dtype=torch.float64).repeat(gh)
    parts = []
    for pos in (rows, cols):
        angle = pos[:, None] * omega[None]
        parts += [angle.sin(), angle.cos()]
    return torch.cat(parts, dim=1).to(device=device, dtype=dtype)


@functools.lru_cache(maxsize=64)
def _cached_table(grid, dim, device):
    # Outside inference mode, so a table first built in transform can be reused in training.
    with torch.inference_mode(False), torch.no_grad():
        return sincos_position_embedding(grid, dim, device=device)


def position_table(grid, dim, device):
    """:func:`sincos_position_embedding` in float32, built once per grid, width and device."""
    return _cached_table(tuple(int(g) for g in grid), int(dim), torch.device(device))


def _pad_to_patches(x, patch_size):
    h, w = x.shape[-2:]
    pad_h, pad_w = -h % patch_size, -w % patch_size
    return F.pad(x, (0, pad_w, 0, pad_h)) if pad_h or pad_w else x


def patch_grid(image_size, patch_size):
    """Patches per column and per row of an image (partial patches count: they are padded)."""
    return (math.ceil(image_size[0] / patch_size), math.ceil(image_size[1] / patch_size))


def patchify(x, patch_size):
    """Images ``(n, c, h, w)`` -> patches ``(n, t, p * p * c)``, row-major, zero-padded like the ViT."""
    x = _pad_to_patches(x, patch_size)
    n, c, h, w = x.shape
    p = patch_size
    x = x.reshape(n, c, h // p, p, w // p, p)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(n, (h // p) * (w // p), p * p * c)


def unpatchify(patches, patch_size, grid, channels):
    """Inverse of :func:`patchify`: ``(n, t, p * p * c)`` -> ``(n, c, gh * p, gw * p)``."""
    n, p = patches.shape[0], patch_size
    gh, gw = grid
    x = patches.reshape(n, gh, gw, p, p, channels)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(n, channels, gh * p, gw * p)


def _xavier_patch_projection(conv):
    nn.init.xavier_uniform_(conv.weight.view(conv.weight.shape[0], -1))
    nn.init.zeros_(conv.bias)


class _LazyPatchProjection(nn.LazyConv2d):
    """The patch projection of a ViT built without ``in_channels``: sized at its first call."""

    cls_to_become = nn.Conv2d

    def reset_parameters(self):
        if not self.has_uninitialized_params() and self.in_channels != 0:
            _xavier_patch_projection(self)


class PatchEmbedding(nn.Module):
    """Stage 0 of the ViT: patch embedding, position embedding and class token.

    ``embed`` gives the raw patch embeddings ``(n, t, d)``; ``positions`` the
    fixed position embeddings of a grid; ``with_class_token`` prepends the
    class token. MAE drops tokens between the first two steps and the last,
    BEiT replaces some with a mask token; ``forward`` does all three.
    """

    def __init__(self, in_channels, embed_dim, patch_size):
        super().__init__()
        self.patch_size, self.embed_dim = int(patch_size), int(embed_dim)
        if in_channels is None:
            self.proj = _LazyPatchProjection(embed_dim, patch_size, stride=patch_size)
        else:
            self.proj = nn.Conv2d(in_channels, embed_dim, patch_size, stride=patch_size)
        self.class_token = nn.Parameter(torch.zeros(1, 1, embed_dim))

    def grid(self, x):
        return patch_grid(x.shape[-2:], self.patch_size)

    def embed(self, x):
        return self.proj(_pad_to_patches(x, self.patch_size)).flatten(2).transpose(1, 2)

    def positions(self, grid, like):
        """Position embeddings of ``grid``, from the table cache (fixed, so the same weights serve any image size)."""
        return position_table(grid, self.embed_dim, like.device).to(like.dtype)

    def patch_tokens(self, x):
        """Patch embeddings plus position embeddings ``(n, t, d)``, no class token."""
        tokens = self.embed(x)
        return tokens + self.positions(self.grid(x), tokens)

    def with_class_token(self, tokens):
        return torch.cat([self.class_token.to(tokens.dtype).expand(tokens.shape[0], -1, -1), tokens], dim=1)

    def forward(self, x):
        return self.with_class_token(self.patch_tokens(x))


class Attention(nn.Module):
    def __init__(self, dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        n, t, d = x.shape
        q, k, v = self.qkv(x).reshape(n, t, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(n, t, d))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm(x))``, then ``x + mlp(norm(x))``."""

    def __init__(self, dim, num_heads, mlp_ratio=4.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embedding width {dim} is not divisible by num_heads={num_heads}.")
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def init_vit_weights(module):
    """DeiT's and BEiT's initialisation: truncated-normal (std 0.02) linears, N(0, 0.02) tokens.

    The patch projection is Xavier-uniform over its flattened kernel, as in
    MAE; MAE also initialises its linear layers Xavier-uniform, which this
    shared ViT does not.
    """
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, PatchEmbedding):
            if not nn.parameter.is_lazy(m.proj.weight):
                _xavier_patch_projection(m.proj)
            nn.init.normal_(m.class_token, std=0.02)


class VisionTransformer(nn.Module):
    """A ViT split into stages: patch embedding, then ``n_stages`` groups of blocks.

    Parameters
    ----------
    in_channels : int or None, default=None
        None sizes the patch projection at the first call, so one module
        serves grayscale and colour images. As an estimator's ``backbone``
        it is a custom module to :func:`skssl.load`: pass an equal one as
        ``load(path, backbone=...)``.
    image_size : int, (h, w) or None
        Used to pick ``patch_size`` when it is None; any image size works
        (position tables are built once per patch grid and cached).
    patch_size : int or None
        Patch side in pixels; None uses :func:`auto_patch_size` of ``image_size``
        (4 px for 28-32 px images, 16 px at 224 px, 2 px for 8 px digits).
    embed_dim, depth, num_heads, mlp_ratio : transformer sizes
        ``vit_tiny`` is 192 / 12 / 3, ``vit_small`` 384 / 12 / 6.
    n_stages : int, default=4
        Groups the blocks are split into (as evenly as possible); with the
        patch embedding this makes ``n_stages + 1`` stages for ``stage``.
    """

    def __init__(self, in_channels=None, image_size=None, patch_size=None, embed_dim=192, depth=12, num_heads=3,
                 mlp_ratio=4.0, n_stages=4):
        super().__init__()
        if isinstance(image_size, int):
            image_size = (image_size, image_size)
        if patch_size is None:
            if image_size is None:
                raise ValueError("VisionTransformer needs patch_size or image_size (to choose the patch size).")
            patch_size = auto_patch_size(image_size)
        if patch_size < 1 or depth < 1 or n_stages < 1:
            raise ValueError(f"patch_size, depth and n_stages must be >= 1; got {patch_size}, {depth}, {n_stages}.")
        if embed_dim % 4:
            raise ValueError(f"embed_dim must be divisible by 4 (2-D sin-cos position embeddings); got {embed_dim}.")
        self.patch_size, self.embed_dim, self.depth, self.num_heads = int(patch_size), embed_dim, depth, num_heads
        blocks = [Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth)]
        groups = min(n_stages, depth)
        bounds = [round(i * depth / groups) for i in range(groups + 1)]
        stages = [nn.Sequential(*blocks[a:b]) for a, b in zip(bounds, bounds[1:])]
        stages[-1].append(nn.LayerNorm(embed_dim, eps=1e-6))
        self.stages = nn.ModuleList([PatchEmbedding(in_channels, embed_dim, patch_size), *stages])
        init_vit_weights(self)

    def forward(self, x):
        for stage in self.stages:
            x = stage(x)
        return x


def vit_tiny(in_channels=3, image_size=None, patch_size=None):
    """ViT-Tiny (DeiT): width 192, 12 blocks, 3 heads."""
    return VisionTransformer(in_channels, image_size, patch_size, **VIT_SIZES["vit_tiny"])


def vit_small(in_channels=3, image_size=None, patch_size=None):
    """ViT-Small (DeiT): width 384, 12 blocks, 6 heads."""
    return VisionTransformer(in_channels, image_size, patch_size, **VIT_SIZES["vit_small"])


def vit_parts(backbone, method):
    """``(patch_embedding, block_groups)`` of a :class:`~skssl.backbones.Backbone` wrapping a ViT.

    Raises a ValueError naming ``method`` for any other backbone.
    """
    embedding = backbone.stages[0]
    if not isinstance(embedding, PatchEmbedding):
        raise ValueError(
            f"{method} needs a Vision Transformer backbone: backbone='vit_tiny', 'vit_small' or a "
            f"skssl._vit.VisionTransformer module; got {type(embedding).__name__} as its first stage."
        )
    return embedding, backbone.stages[1:]
