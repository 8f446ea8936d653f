"""Stores of past embeddings: NPID/PIRL's memory bank and MoCo's queue of keys.

Both are ``nn.Module`` s holding their state in buffers, so that they live in
an estimator's ``networks_`` and move, pickle and checkpoint with it. Both
keep the training-set index of every row they hold: with small data sets the
same image comes back soon, and a method must be able to leave an image's own
stored embedding out of its negatives.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from .._distributed import mean_over_ranks


class MemoryBank(nn.Module):
    """One L2-normalised embedding per training image (Wu et al. 2018).

    Parameters
    ----------
    n_rows : int
        Number of training images.
    dim : int
        Embedding width.

    Attributes
    ----------
    features : Tensor of shape (n_rows, dim)
        Unit rows, initialised at random directions (the global torch RNG,
        which the estimator seeds).
    log_z : Tensor, scalar
        NCE's normalising constant ``log Z``, estimated once from the first
        batch (:meth:`log_normaliser`); 0 until then.
    log_z_known : BoolTensor, scalar
        Whether ``log_z`` has been estimated. (A NaN placeholder would keep
        the fit from ever recording its last finite weights.)
    """

    def __init__(self, n_rows, dim):
        super().__init__()
        if n_rows < 1 or dim < 1:
            raise ValueError(f"MemoryBank needs n_rows >= 1 and dim >= 1; got {n_rows}, {dim}.")
        self.register_buffer("features", F.normalize(torch.randn(n_rows, dim), dim=1))
        self.register_buffer("log_z", torch.tensor(0.0))
        self.register_buffer("log_z_known", torch.tensor(False))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Files written before log_z_known existed marked an unknown log Z as NaN.
        if prefix + "log_z" in state_dict and prefix + "log_z_known" not in state_dict:
            log_z = state_dict[prefix + "log_z"]
            state_dict[prefix + "log_z_known"] = torch.isfinite(log_z)
            state_dict[prefix + "log_z"] = torch.nan_to_num(log_z, nan=0.0)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def __len__(self):
        return self.features.shape[0]

    @torch.no_grad()
    def fill(self, features):
        """Replace every row (re-normalised), resizing the bank to ``features``."""
        self.features = F.normalize(features.float(), dim=1).to(self.features.device)

    @torch.no_grad()
    def update(self, index, features, momentum):
        """``bank[i] <- normalise(momentum * bank[i] + (1 - momentum) * f_i)`` for the rows ``index``.

        ``index`` must not repeat (a batch is a slice of a permutation).
        """
        if index.shape[0] != features.shape[0]:
            raise ValueError(f"update got {index.shape[0]} indices for {features.shape[0]} feature rows.")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}.")
        old = self.features.index_select(0, index)
        new = F.normalize(torch.lerp(features.detach().to(old.dtype), old, momentum), dim=1)
        self.features.index_copy_(0, index, new)

    def sample_negatives(self, k, generator):
        """``k`` row indices drawn uniformly with replacement (NCE's noise distribution).

        One draw serves the whole batch: a (B, d) x (d, k) product instead of
        gathering B x k rows. Callers leave out the draws that hit an
        anchor's own row.
        """
        return torch.randint(0, len(self), (k,), generator=generator, device=self.features.device)

    def log_normaliser(self, logits):
        """``log Z``: set once to ``log(n) + log(mean(exp(logits)))`` of the first call, then fixed.

        As in NPID's reference code (and VISSL's PIRL), Z is estimated from
        the first batch's scores and kept as a constant; computed without a
        host sync, so it is cheap every step.
        """
        logits = logits.detach().float()
        estimate = math.log(len(self)) + torch.logsumexp(logits.flatten(), 0) - math.log(logits.numel())
        estimate = mean_over_ranks(estimate)  # one Z for every torchrun process
        self.log_z.copy_(torch.where(self.log_z_known, self.log_z, estimate))
        self.log_z_known.fill_(True)
        return self.log_z


class Queue(nn.Module):
    """MoCo's first-in first-out queue of keys (He et al. 2020).

    Parameters
    ----------
    size : int
        Number of keys held.
    dim : int
        Key width.

    Attributes
    ----------
    keys : Tensor of shape (size, dim)
        Unit rows; initialised at random directions, as in MoCo.
    index : LongTensor of shape (size,)
        Training-set index of the image each key came from (-1: initial).
    pointer : LongTensor, scalar
        Row the next key is written to.
    """

    def __init__(self, size, dim):
        super().__init__()
        if size < 1 or dim < 1:
            raise ValueError(f"Queue needs size >= 1 and dim >= 1; got {size}, {dim}.")
        self.register_buffer("keys", F.normalize(torch.randn(size, dim), dim=1))
        self.register_buffer("index", torch.full((size,), -1, dtype=torch.long))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))

    def __len__(self):
        return self.keys.shape[0]

    @torch.no_grad()
    def enqueue(self, keys, index):
        """Write ``keys`` (and their image indices) over the oldest rows, wrapping around.

        Any batch size works (MoCo's code needs ``size % batch == 0``); of a
        batch larger than the queue only its last ``size`` keys are kept.
        """
        size = len(self)
        keys, index = keys.detach()[-size:], index[-size:]
        rows = (self.pointer + torch.arange(keys.shape[0], device=keys.device)) % size
        self.keys.index_copy_(0, rows, keys.to(self.keys.dtype))
        self.index.index_copy_(0, rows, index.to(self.index.device))
        self.pointer.copy_((self.pointer + keys.shape[0]) % size)
