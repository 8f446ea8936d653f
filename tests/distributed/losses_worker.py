"""Run under torchrun with 2 processes: cross-sample losses on half batches vs the whole batch.

Writes ``{loss: {"loss": |dist - single|, "grad": max |dist - single|}}`` to argv[1] (rank 0).
"""

import copy
import json
import os
import sys

import torch
import torch.distributed as dist
from torch import nn

from skssl import _distributed
from skssl.contrastive._memory import MemoryBank
from skssl.contrastive.barlow_twins import barlow_twins_loss
from skssl.contrastive.moco import info_nce
from skssl.contrastive.vicreg import vicreg_loss
from skssl.losses import nt_xent

torch.set_num_threads(1)
rank, world = _distributed.init(torch.device("cpu"))
g = torch.Generator().manual_seed(0)
x1, x2 = torch.randn(16, 6, generator=g), torch.randn(16, 6, generator=g)
queue = nn.functional.normalize(torch.randn(40, 8, generator=g), dim=1)
net = nn.Linear(6, 8)
with torch.no_grad():
    net.weight.copy_(torch.randn(8, 6, generator=g))
    net.bias.copy_(torch.randn(8, generator=g))


class Pair(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, a, b):
        return self.net(a), self.net(b)


LOSSES = {  # (loss of two embeddings, whether it compares samples across the batch)
    "nt_xent": (lambda z1, z2: nt_xent(z1, z2, 0.2), True),
    "barlow_twins": (lambda z1, z2: barlow_twins_loss(z1, z2, 5e-3), True),
    "vicreg": (lambda z1, z2: vicreg_loss(z1, z2), True),
    "moco_info_nce": (lambda q, k: info_nce(q, k, queue, 0.2), False),
}
results = {}
for name, (loss_fn, global_batch) in LOSSES.items():
    single = copy.deepcopy(net)
    reference = loss_fn(single(x1), single(x2))
    reference.backward()
    model = nn.parallel.DistributedDataParallel(Pair(copy.deepcopy(net)))
    z1, z2 = model(x1.chunk(world)[rank], x2.chunk(world)[rank])
    if global_batch:
        loss = loss_fn(_distributed.gather(z1), _distributed.gather(z2))
        value = loss.detach()
    else:  # a mean of per-query terms: DDP's gradient average is the global mean
        loss = loss_fn(z1, z2)
        value = _distributed.mean_over_ranks(loss.detach())
    loss.backward()
    grads = [p.grad for p in model.module.net.parameters()]
    results[name] = {
        "loss": abs(value.item() - reference.item()),
        "grad": max((a - b).abs().max().item() for a, b in zip(grads, [p.grad for p in single.parameters()])),
        "reference": reference.item(),
    }
    # lightly's bug, for contrast: a raw all_gather drops the other ranks' gradients.
    if name == "barlow_twins":
        model.zero_grad()
        z1, z2 = model(x1.chunk(world)[rank], x2.chunk(world)[rank])
        parts1, parts2 = [torch.empty_like(z1) for _ in range(world)], [torch.empty_like(z2) for _ in range(world)]
        dist.all_gather(parts1, z1.detach())
        dist.all_gather(parts2, z2.detach())
        parts1[rank], parts2[rank] = z1, z2
        loss_fn(torch.cat(parts1), torch.cat(parts2)).backward()
        raw = [p.grad for p in model.module.net.parameters()]
        results["raw_all_gather_barlow"] = {
            "grad": max((a - b).abs().max().item() for a, b in zip(raw, [p.grad for p in single.parameters()]))}
# NCE's normalising constant: half batches with very different scores on the two ranks.
scores = torch.cat([torch.randn(8, 5, generator=g), 3 + torch.randn(8, 5, generator=g)])
single_bank, bank = MemoryBank(100, 4), MemoryBank(100, 4)
reference = single_bank.log_normaliser(scores)
results["memory_bank_log_z"] = {"loss": abs(bank.log_normaliser(scores.chunk(world)[rank]).item() - reference.item())}
if rank == 0:
    with open(sys.argv[1], "w") as f:
        json.dump(results, f)
# DDP's reducer holds the process group: free it, and let both ranks finish, before the group goes
# (without this, gloo aborted a rank at exit about one run in four on a loaded machine).
del model
dist.barrier()
dist.destroy_process_group()
# The work is done and written. Leave without the interpreter's teardown, where gloo's threads can
# still abort a rank ("terminate called without an active exception", a few runs in a hundred).
sys.stdout.flush()
sys.stderr.flush()
os._exit(0)
