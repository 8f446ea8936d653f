"""Momentum (EMA) target networks, shared by BYOL, MoCo and their relatives.

A target network is a frozen copy of an online network whose weights follow
the online ones as an exponential moving average. It is kept in the
estimator's ``networks_`` like any other module, so devices, pickling and
checkpoints cover it; ``requires_grad=False`` keeps it out of the optimiser.
"""

import copy
import math

import torch
from torch import nn


def frozen_copy(module):
    """A deep copy of ``module`` with every parameter's ``requires_grad`` off.

    Parameters
    ----------
    module : nn.Module

    Returns
    -------
    nn.Module
        Independent copy (same weights, buffers and train/eval mode) that the
        optimiser skips.
    """
    if not isinstance(module, nn.Module):
        raise ValueError(f"frozen_copy expects an nn.Module, got {type(module).__name__}.")
    target = copy.deepcopy(module)
    target.requires_grad_(False)
    return target


def _pairs(target, online, kind):
    t = list(target.parameters() if kind == "parameters" else target.buffers())
    o = list(online.parameters() if kind == "parameters" else online.buffers())
    if len(t) != len(o) or any(a.shape != b.shape for a, b in zip(t, o)):
        raise ValueError(f"ema_update_: target and online networks have different {kind} "
                         f"({len(t)} vs {len(o)} tensors or mismatched shapes).")
    return t, o


@torch.no_grad()
def ema_update_(target, online, momentum):
    """In place: ``target <- momentum * target + (1 - momentum) * online``.

    Applied to parameters and to floating-point buffers alike. BatchNorm's
    running mean and variance are estimates of the activation statistics of
    the weights they belong to; since the target's weights are an average of
    the online weights, the consistent estimate is the same average of the
    online statistics (copying them would pair averaged weights with current
    statistics; leaving them alone would let them drift with whatever the
    target's own forward passes saw). The training forward of the target runs
    in train mode and normalises with batch statistics, so this matters when
    the target is used in eval mode (monitoring, a teacher at inference).
    Integer buffers such as ``num_batches_tracked`` are copied.

    Parameters
    ----------
    target, online : nn.Module
        Networks of identical structure; ``online`` is not modified.
    momentum : float in [0, 1]
        1 keeps the target unchanged, 0 copies the online network.
    """
    momentum = float(momentum)
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum}.")
    t_params, o_params = _pairs(target, online, "parameters")
    t_bufs, o_bufs = _pairs(target, online, "buffers")
    floats = [(t, o) for t, o in zip(t_bufs, o_bufs) if t.is_floating_point()]
    t_float = t_params + [t for t, _ in floats]
    o_float = o_params + [o for _, o in floats]
    if t_float:
        # lerp_(end, w): t + w * (o - t) = momentum * t + (1 - momentum) * o, one fused kernel per dtype/device group.
        torch._foreach_lerp_(t_float, [o.to(t.dtype) for t, o in zip(t_float, o_float)], 1.0 - momentum)
    for t, o in zip(t_bufs, o_bufs):
        if not t.is_floating_point():
            t.copy_(o)


def cosine_momentum(step, total_steps, base):
    """BYOL's schedule: ``1 - (1 - base) * (cos(pi * step / total_steps) + 1) / 2``.

    Rises from ``base`` at step 0 to 1 at ``total_steps`` (Grill et al. 2020,
    section 3.2); steps past the end stay at 1.

    Parameters
    ----------
    step : int
        Optimiser steps done so far (``k``).
    total_steps : int
        Steps in the whole training run (``K``), at least 1.
    base : float in [0, 1]
        Starting momentum (``tau_base``).

    Returns
    -------
    float
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}.")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}.")
    if not 0.0 <= base <= 1.0:
        raise ValueError(f"base momentum must be in [0, 1], got {base}.")
    progress = min(step / total_steps, 1.0)
    return 1.0 - (1.0 - base) * (math.cos(math.pi * progress) + 1.0) / 2.0
