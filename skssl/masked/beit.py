"""BEiT: predict the discrete visual tokens of blockwise-masked patches."""

import copy
import math
from numbers import Integral, Real

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted
from torch import nn

from .._distributed import broadcast_object, broadcast_state, weighted_mean
from ..augment import Augment
from ._base import MaskedImageModel
from .tokenizer import VQTokenizer, fit_tokenizer

# BEiT's masking at 224 px: blocks of at least 16 of the 14 x 14 patches.
_MIN_BLOCK_FRACTION = 16 / 196
# Images the tokenizer is trained on, at most (a seeded sample of the training set).
TOKENIZER_SAMPLE = 20_000


def block_masks(n, grid, n_masked, min_block, generator, device, aspect=(0.3, 1 / 0.3)):
    """BEiT's blockwise masks ``(n, gh * gw)``, True on masked patches (row-major).

    Rectangles of ``min_block`` patches or more, with a log-uniform aspect
    ratio in ``aspect`` and an area uniform between ``min_block`` and what is
    left to mask, are added until ``n_masked`` patches are covered; a block
    that would overshoot is skipped, so an image ends with at most
    ``n_masked``, and usually a few fewer. Vectorised over the batch: every
    round draws one block per image (a fixed number of rounds, no host sync).
    """
    gh, gw = grid
    rows = torch.arange(gh, device=device).view(1, gh, 1)
    cols = torch.arange(gw, device=device).view(1, 1, gw)
    mask = torch.zeros(n, gh, gw, dtype=torch.bool, device=device)
    count = torch.zeros(n, device=device)
    log_lo, log_hi = math.log(aspect[0]), math.log(aspect[1])
    for _ in range(10 + 4 * math.ceil(n_masked / min_block)):
        u = torch.rand(n, 4, generator=generator, device=device)
        area = min_block + (n_masked - count - min_block).clamp_min(0) * u[:, 0]
        ratio = torch.exp(log_lo + (log_hi - log_lo) * u[:, 1])
        h = torch.sqrt(area * ratio).round().clamp(1, gh)
        w = torch.sqrt(area / ratio).round().clamp(1, gw)
        top = (u[:, 2] * (gh - h + 1)).floor().view(n, 1, 1)
        left = (u[:, 3] * (gw - w + 1)).floor().view(n, 1, 1)
        block = (rows >= top) & (rows < top + h.view(n, 1, 1)) & (cols >= left) & (cols < left + w.view(n, 1, 1))
        grown = mask | block
        new_count = grown.sum(dim=(1, 2)).float()
        accept = (new_count > count) & (new_count <= n_masked) & (h * w >= min_block)
        mask = torch.where(accept.view(n, 1, 1), grown, mask)
        count = torch.where(accept, new_count, count)
    return mask.view(n, gh * gw)


class TokenPredictor(nn.Module):
    """BEiT's learned mask token and the linear head from output tokens to visual-token logits."""

    def __init__(self, dim, n_tokens):
        super().__init__()
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.head = nn.Linear(dim, n_tokens)
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)


class BEiT(MaskedImageModel):
    """BERT pre-training of image transformers (BEiT), with a tokenizer it trains itself.

    Follows Bao, Dong, Piao & Wei, "BEiT: BERT Pre-Training of Image
    Transformers" (ICLR 2022): every image is turned into a grid of discrete
    visual tokens, one per ViT patch; about ``mask_ratio`` of the patches are
    masked in blocks (rectangles of at least 16/196 of the patches, aspect
    0.3-3.3, as in the paper), replaced by a learned mask token at the ViT's
    input, and the ViT predicts the visual token of every masked patch
    (cross-entropy over the ``n_tokens`` codes, masked patches only).

    BEiT's tokens came from DALL-E's discrete VAE, trained on 250 million
    images and not available here. So ``fit`` first trains its own
    tokenizer, a small VQ-VAE with a codebook of ``n_tokens`` codes, EMA
    codebook updates and restarts of unused codes
    (:class:`skssl.masked.tokenizer.VQTokenizer`), for ``tokenizer_epochs``
    epochs on (a seeded sample of at most 20,000 of) the training images,
    with the same augmentation; then it stays frozen. Under torchrun, rank 0
    trains the tokenizer while the other processes wait for its weights. It is kept in
    ``tokenizer_``; pass a trained one as ``tokenizer=`` to skip this step
    (for example ``tokenizer=other_beit.tokenizer_``). The paper's relative
    position bias and layer scale are not used (the ViT is shared with the
    other methods).

    ``transform`` embeds the whole, unmasked image: the mean of the patch
    tokens of backbone stage ``stage`` (``pool="mean"``) or the class token.

    Parameters
    ----------
    mask_ratio : float, default=0.4
        Fraction of the patches masked (at most; blocks that would overshoot are skipped).
    n_tokens : int, default=512
        Codebook size of the tokenizer trained by ``fit`` (ignored with ``tokenizer=``).
    tokenizer : skssl.masked.tokenizer.VQTokenizer or None, default=None
        A trained tokenizer to reuse (deep-copied; its ``patch_size`` must be
        the ViT's). ``None`` trains one at the start of ``fit``. Estimators
        holding one save with pickle or joblib; :func:`skssl.load` cannot
        rebuild the module parameter.
    tokenizer_epochs : int, default=20
        Passes of tokenizer training over its training images.
    pool : {"mean", "cls"}, default="mean"
        What ``transform`` returns: the mean of the patch tokens or the class token.
    augment : skssl.augment.Augment or None, default=None
        ``None`` is BEiT's random resized crop (scale 0.2-1 here), flip and
        colour jitter (0.4, applied to 80% of the images here, where BEiT
        jitters every image); the tokenizer sees the same view as the ViT.
    {common_parameters}
        For BEiT, ``backbone`` must be a Vision Transformer: ``"auto"`` is
        ``"vit_tiny"``; ``"vit_small"`` or a
        :class:`skssl.backbones.VisionTransformer` module also work.

    Attributes
    ----------
    tokenizer_ : skssl.masked.tokenizer.VQTokenizer
        The frozen tokenizer whose tokens the ViT learned to predict (also in
        ``networks_["tokenizer"]``). ``history_[0]`` records its final
        ``tokenizer_loss`` and the ``codebook_usage`` on its training images.
    {common_attributes}

    Examples
    --------
    >>> from skssl import BEiT
    >>> from skssl.datasets import load_digits_images
    >>> X, y = load_digits_images(return_X_y=True)
    >>> beit = BEiT(max_epochs=1, n_tokens=64, tokenizer_epochs=1, random_state=0).fit(X[:100])
    >>> beit.transform(X[:100]).shape
    (100, 192)
    >>> beit.tokenize(X[:3]).shape
    (3, 16)
    """

    _params = {"mask_ratio": 0.4, "n_tokens": 512, "tokenizer": None, "tokenizer_epochs": 20, "augment": None,
               "max_epochs": 30, "batch_size": 128, "lr": 1.5e-3, "weight_decay": 0.05}
    _parameter_constraints = {
        **MaskedImageModel._parameter_constraints,
        "mask_ratio": [Interval(Real, 0, 1, closed="neither")],
        "n_tokens": [Interval(Integral, 2, None, closed="left")],
        "tokenizer": [VQTokenizer, None],
        "tokenizer_epochs": [Interval(Integral, 1, None, closed="left")],
        "augment": [Augment, None],
    }

    @property
    def tokenizer_(self):
        check_is_fitted(self, "networks_")
        return self.networks_["tokenizer"]

    def _default_augment(self, image_size, channels):
        return Augment(crop_scale=(0.2, 1.0), flip_p=0.5, brightness=0.4, contrast=0.4,
                       saturation=0.4 if channels == 3 else 0.0, jitter_p=0.8, grayscale_p=0.0)

    def _build_networks(self):
        super()._build_networks()
        embedding, _ = self._vit_parts()
        c = self.image_shape_[2]
        if self.tokenizer is None:
            tokenizer = VQTokenizer(c, embedding.patch_size, self.n_tokens)
        else:
            tokenizer = copy.deepcopy(self.tokenizer)
            if (tokenizer.patch_size, tokenizer.in_channels) != (embedding.patch_size, c):
                raise ValueError(
                    f"tokenizer has patch_size={tokenizer.patch_size} and {tokenizer.in_channels} channel(s) but the "
                    f"ViT has patch_size={embedding.patch_size} and the images {c} channel(s)."
                )
        tokenizer.requires_grad_(False)  # frozen: the main optimiser never sees it
        self.networks_["tokenizer"] = tokenizer
        self.networks_["predictor"] = TokenPredictor(embedding.embed_dim, tokenizer.n_tokens)

    def _before_epoch(self, images, epoch):
        if epoch != 0 or self.tokenizer is not None:
            return
        if "_tokenizer_metrics" in self.__dict__:  # an out-of-memory retry restarts the epochs: train it once
            self._epoch_metrics.update(self._tokenizer_metrics)
            return
        h, w, c = self.image_shape_
        limit = max(256, min(TOKENIZER_SAMPLE, (512 << 20) // (4 * h * w * c)))
        sample = torch.Generator().manual_seed(self._generator.initial_seed())
        index = torch.randperm(len(images), generator=sample)[:limit].sort().values
        stored = images.batch(index) if hasattr(images, "batch") else images[index.to(images.device)]
        # The loop's batch size: halved by an out-of-memory retry like the main batch.
        device, batch_size = self._generator.device, min(self._batch_size, len(stored))

        def batches():
            for _ in range(self.tokenizer_epochs):
                order = torch.randperm(len(stored), generator=sample)
                for i in range(len(stored) // batch_size):
                    if self._interrupted or self._loop_time_is_up():  # Ctrl-C and max_time stop the tokenizer too
                        return
                    x = self._prepare(stored[order[i * batch_size:(i + 1) * batch_size].to(stored.device)], device)
                    yield self._augment(x)

        tokenizer = self.networks_["tokenizer"]
        tokenizer.input_mean.copy_(torch.as_tensor(self.channel_mean_))
        tokenizer.input_std.copy_(torch.as_tensor(self.channel_std_))
        # Under torchrun rank 0 trains the tokenizer while the others wait for it in the broadcast
        # (so the process group's timeout must exceed its training time).
        loss = fit_tokenizer(tokenizer, batches(), self._generator) if self._rank == 0 else None
        broadcast_state(tokenizer)
        loss = broadcast_object(loss)
        with torch.no_grad():
            ids = torch.cat([tokenizer.encode(self._prepare(chunk, device)) for chunk in stored.split(batch_size)])
        self._tokenizer_metrics = dict(tokenizer_loss=loss, codebook_usage=ids.unique().numel() / tokenizer.n_tokens)
        self._epoch_metrics.update(self._tokenizer_metrics)

    def _beit_masks(self, n, grid, generator, device):
        t = grid[0] * grid[1]
        if t < 2:
            raise ValueError(f"masking needs at least 2 patches per image; the images make {t}. Use a smaller patch_size.")
        n_masked = min(max(1, round(self.mask_ratio * t)), t - 1)
        min_block = min(n_masked, max(2, round(_MIN_BLOCK_FRACTION * t)))
        return block_masks(n, grid, n_masked, min_block, generator, device)

    def _beit_logits(self, x_std, mask):
        """Visual-token logits ``(n, t, n_tokens)`` with the ``mask``ed patches replaced by the mask token."""
        embedding, groups = self._vit_parts()
        predictor = self.networks_["predictor"]
        tokens = embedding.embed(x_std)
        tokens = torch.where(mask[..., None], predictor.mask_token.to(tokens.dtype), tokens)
        tokens = tokens + embedding.positions(embedding.grid(x_std), tokens)
        return predictor.head(self._vit_blocks(groups, embedding.with_class_token(tokens))[:, 1:])

    def _beit_targets_and_logits(self, x, generator):
        x_std = self._standardize(x)
        ids = self.networks_["tokenizer"].encode(x)
        mask = self._beit_masks(x.shape[0], self.backbone_.stages[0].grid(x), generator, x.device)
        return ids, mask, self._beit_logits(x_std, mask)

    def _loss(self, x):
        ids, mask, logits = self._beit_targets_and_logits(self._augment(x), self._generator)
        with torch.autocast(x.device.type, enabled=False):
            per_patch = F.cross_entropy(logits.float().flatten(0, 1), ids.flatten(), reduction="none")
            return weighted_mean(per_patch, mask.flatten().float())  # over the global batch's masked patches

    def tokenize(self, X):
        """Visual tokens of ``X`` from the fitted tokenizer.

        Parameters
        ----------
        X : array-like of images or a torch Dataset
            Images as ``fit`` takes them.

        Returns
        -------
        ndarray of shape (n, patches), int64
            The token of every patch, patches in row-major order.
        """
        check_is_fitted(self, "networks_")
        X = self._check_input(X, reset=False)
        return self._map_batches(X, lambda x: self.tokenizer_.encode(x)).astype(np.int64)

    _pretext_score_is_accuracy = True

    def pretext_score(self, X, random_state=0):
        """Accuracy of the predicted visual tokens of the masked patches of ``X`` (blockwise masks).

        Compare with the rate of the most frequent token. Masks are drawn from
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
            The fraction of masked patches whose token is predicted correctly.
        """
        check_is_fitted(self, "networks_")
        X = self._check_input(X, reset=False)
        seed = int(check_random_state(random_state).randint(2**31 - 1))
        generator = torch.Generator(device=self._device()).manual_seed(seed)

        def correct(x):
            ids, mask, logits = self._beit_targets_and_logits(x, generator)
            hits = (logits.argmax(-1) == ids) & mask
            return torch.stack([hits.sum(1), mask.sum(1)], 1).float()

        total = self._map_batches(X, correct).sum(0)
        return float(total[0] / max(total[1], 1))
