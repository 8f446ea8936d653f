"""Self-supervised losses as small pure functions, testable on their own."""

import torch
import torch.nn.functional as F


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
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(logits, targets)
