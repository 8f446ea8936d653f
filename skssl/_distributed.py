"""torchrun / DDP: process group, rank slices, gathers with gradients.

skssl never launches processes: ``torchrun`` (or any launcher that sets
``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``)
starts one process per device, and ``fit`` joins the process group it finds,
or initialises it from those variables (nccl on CUDA, gloo on the CPU).
Without them every function here is the identity of a world of one.
"""

import os

import torch
import torch.distributed as dist
from torch import nn


def launched():
    """True when the environment says this process is one of several (torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device):
    """Join (or start) the process group; returns ``(rank, world_size)``."""
    if not dist.is_available():
        return 0, 1
    if not dist.is_initialized():
        if not launched():
            return 0, 1
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", init_method="env://")
    elif device.type == "cuda":  # a group the script started: collectives use this process's GPU
        torch.cuda.set_device(device)
    return dist.get_rank(), dist.get_world_size()


def world():
    """``(rank, world_size)`` of an initialised process group, else ``(0, 1)``."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def local_device():
    """The CUDA device torchrun gave this process (``LOCAL_RANK``), for ``device="auto"``."""
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))


class _GatherWithGradient(torch.autograd.Function):
    """All-gather whose backward sums the gradients of every rank and keeps this rank's slice.

    Every rank computes the loss over the gathered batch; DDP then averages
    the parameter gradients, which gives exactly the single-process gradient
    (the raw ``all_gather`` would drop every other rank's contribution).
    """

    @staticmethod
    def forward(ctx, x):
        ctx.rank, ctx.n = dist.get_rank(), x.shape[0]
        out = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(out, x.contiguous())
        return torch.cat(out)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.n:(ctx.rank + 1) * ctx.n]


def gather(x):
    """Concatenate ``x`` (same shape on every rank) over ranks, rank 0 first; differentiable."""
    if world()[1] == 1:
        return x
    if x.requires_grad:
        return _GatherWithGradient.apply(x)
    out = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(out, x.contiguous())
    return torch.cat(out)


def gather_uneven(x):
    """Concatenate ``x`` over ranks when the first dimension differs (no gradient)."""
    rank, size = world()
    if size == 1:
        return x
    device = x.device
    if dist.get_backend() == "nccl":  # nccl moves CUDA tensors only
        x = x.to(torch.device("cuda", torch.cuda.current_device()))
    n = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.zeros_like(n) for _ in range(size)]
    dist.all_gather(sizes, n)
    sizes = [int(s) for s in sizes]
    padded = torch.zeros((max(sizes),) + tuple(x.shape[1:]), dtype=x.dtype, device=x.device)
    padded[:x.shape[0]] = x
    out = [torch.empty_like(padded) for _ in range(size)]
    dist.all_gather(out, padded)
    return torch.cat([o[:s] for o, s in zip(out, sizes)]).to(device)


def broadcast_state(module, src=0):
    """Copy every parameter and buffer of ``module`` from rank ``src`` to all ranks."""
    if world()[1] == 1:
        return
    with torch.no_grad():
        for t in module.state_dict().values():
            dist.broadcast(t, src)


def broadcast_buffers(module, src=0):
    """Copy every buffer of ``module`` (BatchNorm statistics, banks, queues) from rank ``src`` to all ranks."""
    if world()[1] == 1:
        return
    with torch.no_grad():
        for t in module.buffers():
            dist.broadcast(t, src)


def broadcast_object(obj, src=0):
    """Rank ``src``'s ``obj`` (picklable) on every rank; ``obj`` itself in one process."""
    if world()[1] == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src)
    return box[0]


def all_reduce(x, op="sum"):
    """A copy of tensor ``x`` reduced over ranks (``"sum"`` or ``"max"``, no gradient); ``x`` in one process."""
    if world()[1] == 1:
        return x
    x = x.detach().clone()
    dist.all_reduce(x, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
    return x


def weighted_mean(values, weights):
    """``sum(weights * values) / sum(weights)`` over the global batch, as this rank's share of it.

    The denominator is the all-reduced weight sum (times the world size,
    which DDP's gradient average divides out again), so N processes give the
    gradient and the averaged loss of one process on the same global batch.
    """
    _, size = world()
    total = all_reduce(weights.detach().sum().float()) / size
    return (weights * values).sum() / total.clamp_min(1e-12)


def mean_over_ranks(x):
    """The mean of tensor ``x`` over ranks (no gradient); ``x`` itself in one process."""
    if world()[1] == 1:
        return x
    x = x.clone()
    dist.all_reduce(x)
    return x / dist.get_world_size()


def gather_objects(obj):
    """``[obj of rank 0, obj of rank 1, ...]`` (picklable objects); ``[obj]`` in one process."""
    if world()[1] == 1:
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier():
    if world()[1] > 1:
        dist.barrier()


class _GlobalBatchNorm(nn.BatchNorm1d):
    """BatchNorm over the batches of every rank, on any device (torch's SyncBatchNorm is GPU-only).

    Batch sums and sums of squares are all-reduced with the autograd-aware
    collective, so gradients flow through the global statistics.
    """

    def forward(self, x):
        if not (self.training and world()[1] > 1):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        dims = [0] + list(range(2, x.ndim))
        count = torch.tensor([float(x.numel() // x.shape[1])], device=x.device)
        stats = torch.cat([x.float().sum(dims), x.float().square().sum(dims), count])
        stats = all_reduce(stats)
        c = x.shape[1]
        n = stats[-1]
        mean, var = stats[:c] / n, stats[c:2 * c] / n - (stats[:c] / n) ** 2
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                # momentum=None: a cumulative average, as torch's BatchNorm
                momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), momentum)
                self.running_var.lerp_((var.detach() * n / (n - 1)).to(self.running_var.dtype), momentum)
        shape = [1, c] + [1] * (x.ndim - 2)
        y = (x - mean.view(shape).to(x.dtype)) * torch.rsqrt(var.view(shape) + self.eps).to(x.dtype)
        return y * self.weight.view(shape) + self.bias.view(shape) if self.affine else y

    def _check_input_dim(self, x):
        pass


_PLAIN_BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def sync_batchnorm(module, device):
    """Replace every plain BatchNorm by one over all ranks' batches (in place); returns ``module``.

    On CUDA this is torch's ``SyncBatchNorm``; elsewhere :class:`_GlobalBatchNorm`.
    The replacement holds the very same parameters and buffers (as
    ``nn.SyncBatchNorm.convert_sync_batchnorm`` does), so the optimiser,
    ``requires_grad`` of frozen target networks and state dict keys are
    unchanged. Subclasses (MoCo's split BatchNorm) are left as they are.
    :func:`plain_batchnorm` puts the original modules back.
    """
    cls = nn.SyncBatchNorm if device.type == "cuda" else _GlobalBatchNorm

    def make(bn):
        new = cls(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
        new.weight, new.bias = bn.weight, bn.bias
        new.running_mean, new.running_var, new.num_batches_tracked = bn.running_mean, bn.running_var, bn.num_batches_tracked
        new.train(bn.training)
        object.__setattr__(new, "_skssl_original", bn)  # not a submodule: kept out of the state dict
        return new

    return _swap(module, lambda m: type(m) in _PLAIN_BATCHNORM, make)


def plain_batchnorm(module):
    """Undo :func:`sync_batchnorm`: the original BatchNorm modules, which shared every tensor (in place)."""

    def original(new):
        return new._skssl_original.train(new.training)

    return _swap(module, lambda m: "_skssl_original" in m.__dict__, original)


def _swap(module, match, make):
    for name, child in module.named_children():
        if match(child):
            setattr(module, name, make(child))
        else:
            _swap(child, match, make)
    return module
