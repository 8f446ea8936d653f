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
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend, init_method="env://")
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
            return nn.functional.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                            False, 0.0, self.eps)
        from torch.distributed.nn.functional import all_reduce

        dims = [0] + list(range(2, x.ndim))
        count = torch.tensor([float(x.numel() // x.shape[1])], device=x.device)
        stats = torch.cat([x.float().sum(dims), x.float().square().sum(dims), count])
        stats = all_reduce(stats)
        c = x.shape[1]
        n = stats[-1]
        mean, var = stats[:c] / n, stats[c:2 * c] / n - (stats[:c] / n) ** 2
        with torch.no_grad():
            self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), self.momentum)
            self.running_var.lerp_((var.detach() * n / (n - 1)).to(self.running_var.dtype), self.momentum)
            self.num_batches_tracked += 1
        shape = [1, c] + [1] * (x.ndim - 2)
        y = (x - mean.view(shape).to(x.dtype)) * torch.rsqrt(var.view(shape) + self.eps).to(x.dtype)
        return y * self.weight.view(shape) + self.bias.view(shape) if self.affine else y

    def _check_input_dim(self, x):
        pass


def sync_batchnorm(module, device):
    """Replace every BatchNorm by one over all ranks' batches (in place); returns ``module``.

    On CUDA this is torch's ``SyncBatchNorm``; elsewhere :class:`_GlobalBatchNorm`.
    State dict keys are kept; :func:`plain_batchnorm` undoes it.
    """
    cls = nn.SyncBatchNorm if device.type == "cuda" else _GlobalBatchNorm
    return _swap(module, lambda m: isinstance(m, nn.modules.batchnorm._BatchNorm) and not hasattr(m, "_skssl_original"),
                 lambda m: cls(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats), mark=True)


def plain_batchnorm(module):
    """Undo :func:`sync_batchnorm`: the original BatchNorm classes with the same state (in place)."""
    return _swap(module, lambda m: hasattr(m, "_skssl_original"),
                 lambda m: m._skssl_original(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats))


def _swap(module, match, make, mark=False):
    for name, child in module.named_children():
        if match(child):
            new = make(child)
            new.load_state_dict(child.state_dict())
            new.to(child.running_mean.device if child.running_mean is not None else child.weight.device)
            new.train(child.training)
            if mark:
                new._skssl_original = type(child)
            setattr(module, name, new)
        else:
            _swap(child, match, make, mark)
    return module
