"""Run under torchrun with 2 processes: SwAV's Sinkhorn-Knopp and DINO's centre on half batches.

Each quantity is first computed on the whole batch before the process group
exists (one process), then on this rank's half inside the group. Rank 0
writes ``{name: max |two processes - one process|}`` to argv[1].
"""

import json
import os
import sys

import torch
from torch import nn

from skssl import _distributed
from skssl.contrastive.dino import DINO, _Center
from skssl.losses import sinkhorn_knopp

torch.set_num_threads(1)
g = torch.Generator().manual_seed(0)
scores = torch.nn.functional.normalize(torch.randn(24, 8, generator=g), dim=1) @ \
    torch.nn.functional.normalize(torch.randn(10, 8, generator=g), dim=1).T
teacher = torch.randn(24, 10, generator=g)


def centred(batches):
    est = DINO(center_momentum=0.9)
    est.networks_ = nn.ModuleDict({"center": _Center(10)})
    for t in batches:
        est._update_center(t)
    return est.networks_["center"].center.clone()


# One process, whole batch (no group yet: every helper is the identity of a world of one).
codes_one = sinkhorn_knopp(scores, epsilon=0.05, n_iters=3)
codes_tiny_eps_one = sinkhorn_knopp(scores, epsilon=0.002, n_iters=3)
center_one = centred([teacher, teacher.flip(0) * 2])
# What two processes would get from per-process sums (no collectives): other codes and centres.
codes_halves = torch.cat([sinkhorn_knopp(s, epsilon=0.05, n_iters=3) for s in scores.chunk(2)])
center_halves = centred([teacher[:12], (teacher.flip(0) * 2)[:12]])

rank, world = _distributed.init(torch.device("cpu"))
mine = slice(rank * 24 // world, (rank + 1) * 24 // world)
codes = _distributed.gather(sinkhorn_knopp(scores[mine], epsilon=0.05, n_iters=3))
codes_tiny_eps = _distributed.gather(sinkhorn_knopp(scores[mine], epsilon=0.002, n_iters=3))
center = centred([teacher[mine], (teacher.flip(0) * 2)[mine]])
centers = _distributed.gather(center[None])

if rank == 0:
    results = {
        "sinkhorn_per_process_sums": float((codes_halves - codes_one).abs().max()),
        "center_per_process_sums": float((center_halves - center_one).abs().max()),
        "sinkhorn": float((codes - codes_one).abs().max()),
        "sinkhorn_tiny_epsilon": float((codes_tiny_eps - codes_tiny_eps_one).abs().max()),
        "center": float((centers[0] - center_one).abs().max()),
        "center_ranks_equal": float((centers[0] - centers[1]).abs().max()),
    }
    with open(sys.argv[1], "w") as f:
        json.dump(results, f)
torch.distributed.destroy_process_group()
# The work is done and written. Leave without the interpreter's teardown, where gloo's threads can
# still abort a rank ("terminate called without an active exception", a few runs in a hundred).
sys.stdout.flush()
sys.stderr.flush()
os._exit(0)
