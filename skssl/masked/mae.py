"""MAE: hide most patches of an image, encode the rest, predict the hidden pixels."""

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted
from torch import nn

from .._vit import Block, init_vit_weights, patchify, position_table, unpatchify
from ..augment import Augment
from ._base import MaskedImageModel


def random_masking(n, t, mask_ratio, generator, device):
    """MAE's per-image random masking of ``t`` patches.

    Exactly ``t - round(t * (1 - mask_ratio))`` patches are hidden in every
    image (at least one hidden and one visible). Returns ``keep`` ``(n, k)``,
    the indices of the visible patches, ``restore`` ``(n, t)``, the
    permutation that puts ``[visible, hidden]`` tokens back in grid order, and
    ``mask`` ``(n, t)``, True on hidden patches.
    """
    if t < 2:
        raise ValueError(f"masking needs at least 2 patches per image; the images make {t}. Use a smaller patch_size.")
    n_keep = min(max(1, round(t * (1 - mask_ratio))), t - 1)
    shuffle = torch.rand(n, t, generator=generator, device=device).argsort(dim=1)
    restore = shuffle.argsort(dim=1)
    mask = torch.ones(n, t, dtype=torch.bool, device=device)
    mask[:, :n_keep] = False
    return shuffle[:, :n_keep], restore, torch.gather(mask, 1, restore)


def normalize_patches(patches, eps=1e-6):
    """Per-patch normalised pixels ``(p - mean) / sqrt(var + eps)``, with the mean and that std.

    The variance is the unbiased one, as in the authors' code.
    """
    mean = patches.mean(dim=-1, keepdim=True)
    std = (patches.var(dim=-1, keepdim=True, unbiased=True) + eps).sqrt()
    return (patches - mean) / std, mean, std


def masked_patch_loss(pred, target, mask, norm_pix_loss=True):
    """Mean squared error over the hidden patches only; ``(n, t, p*p*c)`` pairs, ``mask`` ``(n, t)``."""
    if norm_pix_loss:
        target = normalize_patches(target)[0]
    per_patch = (pred - target).pow(2).mean(dim=-1)
    weight = mask.to(per_patch.dtype)
    return (per_patch * weight).sum() / weight.sum().clamp_min(1)


class MAEDecoder(nn.Module):
    """MAE's light decoder: visible latents plus mask tokens, in grid order, through a few blocks.

    ``pixels`` predicts each patch's pixels; ``stats`` (with normalised
    targets) predicts each patch's mean and std from the detached decoder
    output, only so that :meth:`MAE.reconstruct` can return pixel values.
    """

    def __init__(self, encoder_dim, patch_dim, dim=128, depth=2, num_heads=4, predict_stats=True):
        super().__init__()
        if dim % 4:
            raise ValueError(f"decoder_dim must be divisible by 4 (sin-cos position embeddings); got {dim}.")
        self.dim = dim
        self.embed = nn.Linear(encoder_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = nn.Sequential(*[Block(dim, num_heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pixels = nn.Linear(dim, patch_dim)
        self.stats = nn.Linear(dim, 2) if predict_stats else None
        init_vit_weights(self)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, latent, restore, grid):
        """Latents ``(n, 1 + k, d)`` (class token first) -> pixels ``(n, t, p*p*c)`` and decoder tokens."""
        x = self.embed(latent)
        n, t = restore.shape
        patches = torch.cat([x[:, 1:], self.mask_token.to(x.dtype).expand(n, t + 1 - x.shape[1], -1)], dim=1)
        patches = torch.gather(patches, 1, restore[..., None].expand(-1, -1, self.dim))
        patches = patches + position_table(grid, self.dim, x.device).to(x.dtype)
        hidden = self.norm(self.blocks(torch.cat([x[:, :1], patches], dim=1)))[:, 1:]
        return self.pixels(hidden), hidden


class MAE(MaskedImageModel):
    """Masked autoencoder (MAE).

    Follows He, Chen, Xie, Li, Dollár & Girshick, "Masked Autoencoders Are
    Scalable Vision Learners" (CVPR 2022): ``mask_ratio`` of the patches of
    each image are hidden at random (exactly the same number in every image);
    the ViT encoder sees only the visible patches (no mask tokens), and a
    light decoder of its own width and depth, given the encoded patches plus
    a shared mask token at every hidden position, predicts the hidden
    patches' pixels. The loss is the mean squared error on the hidden patches
    only, against each patch's pixels normalised by its own mean and std
    (``norm_pix_loss=True``, the paper's better-transferring target, with
    the unbiased per-patch variance as in the authors' code). AdamW runs with
    the paper's betas (0.9, 0.95).

    ``transform`` embeds the whole, unmasked image: the mean of the patch
    tokens of backbone stage ``stage`` (``pool="mean"``) or the class token
    (``pool="cls"``). MAE features are known to be weak for a linear probe
    and strong after fine-tuning; a kNN or fine-tuned evaluation is fairer.

    With normalised targets the hidden patches' mean and contrast cannot be
    read off the prediction, so a one-layer head on the detached decoder
    output also learns them (its gradient reaches nothing else, and the loss
    that ``history_`` records is the paper's loss alone);
    :meth:`reconstruct` uses it to return pixels. The paper's visualisations
    used a model trained on raw pixels instead.

    Parameters
    ----------
    mask_ratio : float, default=0.75
        Fraction of the patches hidden in every image.
    norm_pix_loss : bool, default=True
        Predict per-patch normalised pixels (the paper's default); False
        predicts the standardised pixels themselves.
    decoder_dim, decoder_depth, decoder_heads : int, default=128, 2, 4
        Width, blocks and attention heads of the decoder (the paper's ViT-B
        decoder is 512 wide and 8 deep; this one is sized for small ViTs).
    pool : {"mean", "cls"}, default="mean"
        What ``transform`` returns: the mean of the patch tokens or the class token.
    augment : skssl.augment.Augment or None, default=None
        ``None`` is the paper's random resized crop (scale 0.2-1) and
        horizontal flip.
    {common_parameters}
        For MAE, ``backbone`` must be a Vision Transformer: ``"auto"`` is
        ``"vit_tiny"``; ``"vit_small"`` or a
        :class:`skssl.backbones.VisionTransformer` module also work.

    Attributes
    ----------
    {common_attributes}

    Examples
    --------
    >>> from skssl import MAE
    >>> from skssl.datasets import load_digits_images
    >>> X, y = load_digits_images(return_X_y=True)
    >>> mae = MAE(max_epochs=1, random_state=0).fit(X[:100])
    >>> mae.transform(X[:100]).shape
    (100, 192)
    >>> mae.reconstruct(X[:4]).shape
    (4, 8, 8, 1)
    """

    _params = {"mask_ratio": 0.75, "norm_pix_loss": True, "decoder_dim": 128, "decoder_depth": 2, "decoder_heads": 4,
               "augment": None, "max_epochs": 50, "batch_size": 128, "lr": 1.5e-3, "weight_decay": 0.05}
    _parameter_constraints = {
        **MaskedImageModel._parameter_constraints,
        "mask_ratio": [Interval(Real, 0, 1, closed="neither")],
        "norm_pix_loss": ["boolean"],
        "decoder_dim": [Interval(Integral, 4, None, closed="left")],
        "decoder_depth": [Interval(Integral, 0, None, closed="left")],
        "decoder_heads": [Interval(Integral, 1, None, closed="left")],
        "augment": [Augment, None],
    }

    # The paper's AdamW betas (its appendix A.1).
    _adam_betas = (0.9, 0.95)

    def _default_augment(self, image_size, channels):
        return Augment(crop_scale=(0.2, 1.0), flip_p=0.5, jitter_p=0.0, grayscale_p=0.0)

    @property
    def _fitted_norm_pix(self):
        """Whether the fit predicted normalised pixels (its decoder has the stats head), whatever
        ``norm_pix_loss`` says now: scoring and reconstruction use what the model learned."""
        return self.networks_["decoder"].stats is not None

    def _build_networks(self):
        super()._build_networks()
        embedding, _ = self._vit_parts()
        patch_dim = embedding.patch_size ** 2 * self.image_shape_[2]
        self.networks_["decoder"] = MAEDecoder(embedding.embed_dim, patch_dim, self.decoder_dim, self.decoder_depth,
                                               self.decoder_heads, predict_stats=self.norm_pix_loss)

    def _mae_predict(self, x_std, generator):
        """Mask, encode the visible patches, decode: ``(pixels, decoder tokens, mask)``."""
        embedding, groups = self._vit_parts()
        tokens = embedding.patch_tokens(x_std)
        n, t, d = tokens.shape
        keep, restore, mask = random_masking(n, t, self.mask_ratio, generator, x_std.device)
        visible = torch.gather(tokens, 1, keep[..., None].expand(-1, -1, d))
        latent = self._vit_blocks(groups, embedding.with_class_token(visible))
        pixels, hidden = self.networks_["decoder"](latent, restore, embedding.grid(x_std))
        return pixels, hidden, mask

    def _mae_stats(self, hidden):
        """Predicted per-patch (mean, std) of the standardised pixels, from detached decoder tokens."""
        stats = self.networks_["decoder"].stats(hidden.detach().float())
        return stats[..., :1], stats[..., 1:]

    def _loss(self, x):
        x_std = self._standardize(self._augment(x))
        pixels, hidden, mask = self._mae_predict(x_std, self._generator)
        target = patchify(x_std, self.backbone_.stages[0].patch_size)
        with torch.autocast(x.device.type, enabled=False):
            loss = masked_patch_loss(pixels.float(), target.float(), mask, self._fitted_norm_pix)
            if self._fitted_norm_pix:
                _, mean, std = normalize_patches(target.float())
                mean_hat, std_hat = self._mae_stats(hidden)
                weight = mask[..., None].float()
                stats_loss = (((mean_hat - mean) ** 2 + (std_hat - std) ** 2) * weight).sum() / weight.sum().clamp_min(1)
                # Trains the stats head without changing the recorded value of the paper's loss.
                loss = loss + (stats_loss - stats_loss.detach())
        return loss

    def _mae_generator(self, random_state):
        seed = int(check_random_state(random_state).randint(2**31 - 1))
        return torch.Generator(device=self._device()).manual_seed(seed)

    def pretext_score(self, X, random_state=0):
        """The training loss on ``X``: error on hidden patches (normalised pixels if the fit used them).

        Lower is better; predicting every hidden patch as flat at its own mean
        scores the fraction of non-flat patches. Masks are drawn from
        ``random_state``, so repeated calls score the same masks.

        Parameters
        ----------
        X : array-like of images or a torch Dataset
            Images as ``fit`` takes them (held-out images measure generalisation).
        random_state : int, RandomState or None, default=0
            Seeds the random draws of the score (masks, samples), so
            repeated calls score the same ones.

        Returns
        -------
        float
            The mean squared error on the hidden patches.
        """
        check_is_fitted(self, "networks_")
        X = self._check_input(X, reset=False)
        generator, p = self._mae_generator(random_state), self.backbone_.stages[0].patch_size

        def errors(x):
            x_std = self._standardize(x)
            pixels, _, mask = self._mae_predict(x_std, generator)
            target = normalize_patches(patchify(x_std, p))[0] if self._fitted_norm_pix else patchify(x_std, p)
            per_patch = (pixels.float() - target.float()).pow(2).mean(-1)
            return torch.stack([(per_patch * mask).sum(1), mask.sum(1).float()], 1)

        total = self._map_batches(X, errors).sum(0)
        return float(total[0] / max(total[1], 1))

    def reconstruct(self, X, random_state=0, return_mask=False):
        """Reconstruct images: their hidden patches replaced by the model's prediction.

        Parameters
        ----------
        X : array-like of images
            Images as ``transform`` takes them.
        random_state : int, RandomState or None, default=0
            Seeds the masks (``mask_ratio`` of the patches of each image).
        return_mask : bool, default=False
            Also return which pixels were hidden.

        Returns
        -------
        images : ndarray of shape (n, h, w, c), float32
            In the input's value range (0-255 for uint8 input); ``h, w`` are
            the working size (the input size unless it is under 8 pixels).
        mask : ndarray of shape (n, h, w), bool
            True on the hidden pixels; only with ``return_mask=True``.
        """
        check_is_fitted(self, "networks_")
        X = self._check_input(X, reset=False)
        generator, p, c = self._mae_generator(random_state), self.backbone_.stages[0].patch_size, self.image_shape_[2]
        mean = torch.as_tensor(self.channel_mean_).view(1, -1, 1, 1)
        std = torch.as_tensor(self.channel_std_).view(1, -1, 1, 1)

        def fill(x):
            h, w = x.shape[-2:]
            x_std = self._standardize(x)
            pixels, hidden, mask = self._mae_predict(x_std, generator)
            pixels = pixels.float()
            if self._fitted_norm_pix:
                mean_hat, std_hat = self._mae_stats(hidden)
                pixels = pixels * std_hat.clamp_min(0) + mean_hat
            patches = torch.where(mask[..., None], pixels, patchify(x_std.float(), p))
            grid = self.backbone_.stages[0].grid(x)
            images = unpatchify(patches, p, grid, c)[..., :h, :w] * std.to(x.device) + mean.to(x.device)
            hidden_pixels = mask.view(-1, 1, *grid).repeat_interleave(p, 2).repeat_interleave(p, 3)[..., :h, :w]
            return torch.cat([images.clamp(0, 1), hidden_pixels.float()], 1)

        out = self._map_batches(X, fill)
        low, high = self.scale_
        images = (low + out[:, :c] * (high - low)).transpose(0, 2, 3, 1).astype(np.float32)
        return (images, out[:, c] > 0.5) if return_mask else images
