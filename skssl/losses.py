"""Self-supervised losses as small pure functions, testable on their own."""

import functools

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
