"""Self-supervised losses as small pure functions, testable on their own."""

import functools
import math

import torch
import torch.nn.functional as F


def fp32_loss(fn):
    """Run a loss in float32 with autocast disabled, whatever region calls it.

    Inside ``torch.autocast`` a matmul casts its inputs to bf16 even after
    ``.float()``, which rounds logits at temperature 0.07 in steps of about
    0.06; the networks stay in bf16, only the loss leaves the region.
    Floating tensor arguments are cast to float32.
    """

    def cast(a):
        return a.float() if torch.is_tensor(a) and a.is_floating_point() else a

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        device = next((a.device.type for a in (*args, *kwargs.values()) if torch.is_tensor(a)), "cpu")
        with torch.autocast(device, enabled=False):
            return fn(*map(cast, args), **{k: cast(v) for k, v in kwargs.items()})

    return wrapper


@fp32_loss
def nt_xent(z1, z2, temperature=0.5):
    """SimCLR's normalised-temperature cross entropy over a batch of pairs.

    Row ``i`` of ``z1`` and of ``z2`` are two views of one image (positives);
    the other ``2n - 2`` embeddings in the batch are its negatives.

    Parameters
    ----------
    z1, z2 : Tensor of shape (n, d)
    temperature : float

    Returns
    -------
    Tensor, scalar: mean loss over the ``2n`` anchors.
    """
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    n = z1.shape[0]
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n, device=z.device), torch.arange(n, device=z.device)])
    return F.cross_entropy(logits, targets)


def _all_reduce(x, max_=False):
    """Sum (or maximum) of ``x`` over torchrun ranks, outside autograd; ``x`` in one process."""
    from . import _distributed

    if _distributed.world()[1] == 1:
        return x
    import torch.distributed as dist

    x = x.clone()
    dist.all_reduce(x, op=dist.ReduceOp.MAX if max_ else dist.ReduceOp.SUM)
    return x


@torch.no_grad()
@fp32_loss
def sinkhorn_knopp(scores, epsilon=0.05, n_iters=3):
    """SwAV's equipartitioned soft assignments of samples to prototypes (Sinkhorn-Knopp).

    Finds ``Q = diag(u) exp(scores / epsilon) diag(v)`` whose rows (samples)
    each sum to 1 and whose columns (prototypes) each sum to ``B / K``, so
    that the batch is spread evenly over the prototypes (Caron et al. 2020,
    section 3.1; ``n_iters`` alternating normalisations, 3 in the paper).
    Runs in float32 outside autocast. Under torchrun the sums run over the
    global batch of every process (``B`` is the global batch size), so N
    processes give exactly the assignments of one process on the same global
    batch; each process gets the rows of its own samples.

    Parameters
    ----------
    scores : Tensor of shape (B_local, K)
        Scores of the samples against the prototypes (cosines in SwAV).
    epsilon : float, default=0.05
        Entropic regularisation: smaller gives harder assignments.
    n_iters : int, default=3

    Returns
    -------
    Tensor of shape (B_local, K)
        Assignments; every row sums to 1 (exactly, up to rounding), every
        column of the global batch to about ``B / K`` (exactly in the limit of
        many iterations). No gradient.
    """
    if scores.ndim != 2:
        raise ValueError(f"sinkhorn_knopp expects (samples, prototypes) scores, got shape {tuple(scores.shape)}.")
    if not epsilon > 0 or int(n_iters) < 1:
        raise ValueError(f"sinkhorn_knopp needs epsilon > 0 and n_iters >= 1; got {epsilon} and {n_iters}.")
    # In the log domain: exp(scores / epsilon) overflows float32 once epsilon is small, and
    # shifting by a maximum underflows whole rows to 0 instead. Same iterates as algorithm 1.
    log_q = scores.T / epsilon  # (K, B_local)
    k = log_q.shape[0]
    b = _all_reduce(torch.tensor([float(log_q.shape[1])], device=log_q.device))
    for _ in range(int(n_iters)):
        log_q = log_q - _global_logsumexp(log_q) - math.log(k)  # each prototype gets 1/K of the mass
        log_q = log_q - torch.logsumexp(log_q, dim=0, keepdim=True) - torch.log(b)  # each sample 1/B; local
    return (log_q + torch.log(b)).exp().T


def _global_logsumexp(x):
    """``logsumexp`` of each row of ``x`` over its columns on every torchrun rank, shape (rows, 1)."""
    top = _all_reduce(x.amax(dim=1, keepdim=True), max_=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    return top + _all_reduce((x - top).exp().sum(dim=1, keepdim=True)).log()


@fp32_loss
def swapped_prediction_loss(scores, assignments, temperature=0.1):
    """SwAV's cross entropy between one crop's assignments and another crop's prototype scores.

    ``-mean_i sum_k q_ik log softmax(scores_i / temperature)_k``.

    Parameters
    ----------
    scores : Tensor of shape (n, K)
        Prototype scores of the predicting crop.
    assignments : Tensor of shape (n, K)
        Sinkhorn-Knopp codes of another crop of the same images (no gradient).
    temperature : float, default=0.1

    Returns
    -------
    Tensor, scalar
    """
    if scores.shape != assignments.shape or scores.ndim != 2:
        raise ValueError(f"swapped_prediction_loss expects two (n, K) tensors of equal shape, got "
                         f"{tuple(scores.shape)} and {tuple(assignments.shape)}.")
    return -(assignments.detach() * F.log_softmax(scores / temperature, dim=1)).sum(dim=1).mean()


@fp32_loss
def dino_loss(student, teacher, center, student_temperature=0.1, teacher_temperature=0.04):
    """DINO's cross entropy from the centred, sharpened teacher to the student, one crop pair.

    ``-mean_i sum_k softmax((t_i - c) / tau_t)_k log softmax(s_i / tau_s)_k``
    (Caron et al. 2021, algorithm 1). The teacher gets no gradient.

    Parameters
    ----------
    student, teacher : Tensor of shape (n, K)
        Head outputs of two crops of the same ``n`` images.
    center : Tensor of shape (K,)
        Running mean of the teacher's outputs.
    student_temperature, teacher_temperature : float

    Returns
    -------
    Tensor, scalar
    """
    if student.shape != teacher.shape or student.ndim != 2 or center.shape != student.shape[1:]:
        raise ValueError(f"dino_loss expects student and teacher (n, K) and a (K,) center, got "
                         f"{tuple(student.shape)}, {tuple(teacher.shape)} and {tuple(center.shape)}.")
    targets = F.softmax((teacher.detach() - center) / teacher_temperature, dim=1)
    return -(targets * F.log_softmax(student / student_temperature, dim=1)).sum(dim=1).mean()
