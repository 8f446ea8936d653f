"""MoCo's shuffling BatchNorm, emulated on one device with split BatchNorm.

With BatchNorm over the whole batch, a query and its positive key (two views
of the same images) are normalised with statistics of the same set of
images; the network can then recognise its key by that shared batch
signature instead of by content (He et al. 2020, section 3.3). MoCo computes
BatchNorm per GPU and shuffles the key batch across GPUs. On one device, the
same is done by normalising sub-batches separately (``SplitBatchNorm2d``,
after the ``SplitBatchNorm`` of MoCo's CIFAR-10 demo notebook) and by
reordering the keys so that every key lands in another sub-batch than its
query (:func:`key_order`).

Sub-batches are interleaved: sample ``i`` of a batch split in ``s`` belongs
to sub-batch ``i % s``, so the split is a reshape, not a copy.
"""

import torch
import torch.nn.functional as F
from torch import nn


def n_splits(batch_size, max_splits):
    """The largest ``s <= max_splits`` splitting ``batch_size`` into equal sub-batches of >= 2."""
    for s in range(min(max_splits, batch_size // 2), 1, -1):
        if batch_size % s == 0:
            return s
    return 1


class SplitBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d that, in training, normalises ``splits`` interleaved sub-batches separately.

    The running statistics are updated with the mean over sub-batches of
    each one's update, so eval mode (``transform``) is plain BatchNorm. The
    parameters and buffers are BatchNorm2d's own, so state dicts are
    interchangeable with it.
    """

    def __init__(self, num_features, splits=1, **kwargs):
        super().__init__(num_features, **kwargs)
        self.splits = splits

    def forward(self, x):
        s = n_splits(x.shape[0], self.splits)
        if not self.training or s == 1:
            return super().forward(x)
        self._check_input_dim(x)
        n, c = x.shape[:2]
        momentum = self.momentum
        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if momentum is None:  # cumulative moving average, as BatchNorm
                momentum = 1.0 / float(self.num_batches_tracked)
        running = self.track_running_stats and self.running_mean is not None
        mean = self.running_mean.repeat(s) if running else None
        var = self.running_var.repeat(s) if running else None
        weight = self.weight.repeat(s) if self.affine else None
        bias = self.bias.repeat(s) if self.affine else None
        # (n, c, h, w) -> (n / s, s * c, h, w): channel block j holds samples j, j + s, ...
        y = F.batch_norm(x.reshape(n // s, s * c, *x.shape[2:]), mean, var, weight, bias,
                         True, momentum or 0.0, self.eps)
        if running:
            with torch.no_grad():
                self.running_mean.copy_(mean.view(s, c).mean(0))
                self.running_var.copy_(var.view(s, c).mean(0))
        return y.view_as(x)

    def extra_repr(self):
        return f"{super().extra_repr()}, splits={self.splits}"


def split_batch_norm(module, splits):
    """``module`` with every ``nn.BatchNorm2d`` replaced by a :class:`SplitBatchNorm2d`.

    The new layers share the old ones' parameters and buffers (as
    ``nn.SyncBatchNorm.convert_sync_batchnorm`` does); ``splits=1`` changes
    nothing but the class.
    """
    out = module
    if isinstance(module, nn.BatchNorm2d):
        out = SplitBatchNorm2d(module.num_features, splits, eps=module.eps, momentum=module.momentum,
                               affine=module.affine, track_running_stats=module.track_running_stats)
        if module.affine:
            out.weight, out.bias = module.weight, module.bias
        out.running_mean, out.running_var = module.running_mean, module.running_var
        out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, split_batch_norm(child, splits))
    return out


def key_order(batch_size, splits, generator):
    """A permutation putting every key in another sub-batch than its query.

    Returns ``order`` such that ``keys[order]`` places key ``i`` at a
    position ``j`` with ``j % s != i % s`` (``s = n_splits(batch_size,
    splits)``): each run of ``s`` consecutive samples is rotated by its own
    random shift in ``1 .. s - 1``, so every key sub-batch mixes images of
    several query sub-batches. Undo with ``argsort(order)``.
    """
    s = n_splits(batch_size, splits)
    device = generator.device
    if s == 1:
        return torch.arange(batch_size, device=device)
    rows = batch_size // s
    shift = torch.randint(1, s, (rows, 1), generator=generator, device=device)
    columns = torch.arange(s, device=device)
    # position (row, col) holds the image of (row, col - shift[row])
    return (torch.arange(rows, device=device)[:, None] * s + (columns - shift) % s).flatten()
