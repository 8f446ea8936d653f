"""NCE's normalising constant, as NPID and PIRL must estimate it."""

import math

import torch

from skssl.contrastive._memory import MemoryBank


def record_first_normaliser_logits(monkeypatch):
    """Logits of the first ``log_normaliser`` call of a fit, from which NCE's Z must be estimated."""
    first = []
    real = MemoryBank.log_normaliser

    def recording(bank, logits):
        if not first:
            first.append(logits.detach().clone())
        return real(bank, logits)

    monkeypatch.setattr(MemoryBank, "log_normaliser", recording)
    return first


def z_estimate(logits, n_data):
    """log Z = log(n * mean(exp(logits))) (NPID's estimate from the first batch)."""
    return math.log(n_data) + (torch.logsumexp(logits.flatten(), 0) - math.log(logits.numel())).item()
