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

from .._distributed import all_reduce


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
        """``log Z``: set once to ``log(n) + log(mean(exp(logits)))`` of the first batch, then fixed.

        As in NPID's reference code (and VISSL's PIRL), Z is estimated from
        the first batch's scores and kept as a constant. Under torchrun the
        mean runs over the global batch (all-reduced maximum, sum of
        exponentials and count), so every process holds the one-process Z.
        Whether Z is known is read from the buffer once and then cached, so
        later steps cost neither a host sync nor a collective.
        """
        if self.__dict__.get("_known") is None:
            self._known = bool(self.log_z_known)
        if self._known:
            return self.log_z
        logits = logits.detach().float().flatten()
        top = all_reduce(logits.max(), "max")
        sums = all_reduce(torch.stack([(logits - top).exp().sum(), torch.tensor(float(logits.numel()), device=logits.device)]))
        self.log_z.copy_(math.log(len(self)) + top + sums[0].log() - sums[1].log())
        self.log_z_known.fill_(True)
        self._known = True
        return self.log_z

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Files written before log_z_known existed marked an unknown log Z as NaN.
        if prefix + "log_z" in state_dict and prefix + "log_z_known" not in state_dict:
            log_z = state_dict[prefix + "log_z"]
            state_dict[prefix + "log_z_known"] = torch.isfinite(log_z)
            state_dict[prefix + "log_z"] = torch.nan_to_num(log_z, nan=0.0)
        self._known = None  # read the loaded flag again
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


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
