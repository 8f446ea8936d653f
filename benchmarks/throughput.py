"""Training throughput: skssl's fit loop against a minimal hand-written PyTorch loop.

Both sides do the same work per step with the same pieces (data as one
tensor, the same augmentation, backbone, heads, loss and AdamW), so the ratio
shows the framework's overhead: validation, scheduling, hooks, bookkeeping.
Images/s counts source images (each makes 2 views in SimCLR/MoCo/BYOL, 4
rotations in RotationSSL, 2 global and 6 local crops in SwAV and DINO at 32 px,
one synthetic scene each in SyntheticTransferSSL, whose renders are made once per fit, before the timed epochs). The first epoch is a warm-up and is not timed.

    python benchmarks/throughput.py                 # CPU, batch 256, 32x32 RGB, small CNN
    python benchmarks/throughput.py --device cuda --backbone resnet18

MAE and BEiT need a ViT: they are timed with vit_tiny whatever ``--backbone``
says (BEiT's tokenizer trains in the untimed first epoch).

Results go to benchmarks/results/<--out>.json (default throughput_<device>);
with ``--methods`` the rows of those methods replace theirs in an existing file.
"""

import argparse
import json
import os
import platform
import time

import numpy as np
import torch
import torch.nn.functional as F

import skssl
from skssl._images import unit_range
from skssl.augment import Augment
from skssl.backbones import build_backbone
from skssl.contrastive._momentum import cosine_momentum, ema_update_, frozen_copy
from skssl.contrastive.byol import byol_loss
from skssl.contrastive.moco import info_nce
from skssl.heads import mlp
from skssl.losses import nt_xent
from skssl.pretext.rotation import rotate_all

HAND_WRITTEN = ("RotationSSL", "SimCLR", "MoCo", "BYOL")
# Timed in the framework only: the work per step is the method itself.
FRAMEWORK_ONLY = ("InstanceDiscriminationSSL", "PIRL", "SimSiam", "BarlowTwins", "VICReg", "MAE", "BEiT", "SwAV", "DINO",
                  "SyntheticTransferSSL", "UnsupervisedMetaSSL")
VIT_ONLY = ("MAE", "BEiT")
RESULTS = os.path.join(os.path.dirname(__file__), "results")


def hand_written(method, images, batch_size, epochs, backbone_name, device):
    """The same training as ``method`` in a plain loop; returns seconds per timed epoch."""
    torch.manual_seed(0)
    c, size = images.shape[1], images.shape[-2:]
    backbone = build_backbone(backbone_name, c, size).to(device)
    dim = backbone.stage_dims(c, size)[-1]
    mean = images.float().div(255).mean(dim=(0, 2, 3)).view(1, -1, 1, 1).to(device)
    std = images.float().div(255).std(dim=(0, 2, 3)).view(1, -1, 1, 1).to(device)
    augment = Augment.simclr(size[0], c)
    g = torch.Generator(device=device).manual_seed(0)
    if method == "RotationSSL":
        heads = {"head": mlp(dim, dim, 4)}
        augment = Augment(crop_scale=(0.6, 1.0), flip_p=0.5, jitter_p=0.0, grayscale_p=0.0)
    elif method == "BYOL":
        heads = {"projector": mlp(dim, 512, 128), "predictor": mlp(128, 512, 128)}
    else:  # SimCLR, MoCo
        heads = {"projector": mlp(dim, dim, 128)} if method == "SimCLR" else {"projector": torch.nn.Sequential(torch.nn.Linear(dim, dim), torch.nn.ReLU(), torch.nn.Linear(dim, 128))}
    heads = {k: v.to(device) for k, v in heads.items()}
    params = list(backbone.parameters()) + [p for h in heads.values() for p in h.parameters()]
    optimizer = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-4)
    if method in ("BYOL", "MoCo"):
        target = frozen_copy(backbone), frozen_copy(heads["projector"])
    queue = F.normalize(torch.randn(4096, 128, device=device), dim=1)
    n, steps, step = images.shape[0], images.shape[0] // batch_size, 0
    times = []
    for epoch in range(epochs):
        start = time.perf_counter()
        order = torch.randperm(n)
        for i in range(steps):
            x = unit_range(images[order[i * batch_size:(i + 1) * batch_size]].to(device))
            encode = lambda v: backbone((v - mean) / std)  # noqa: E731
            if method == "RotationSSL":
                rotated, labels = rotate_all(augment(x, g))
                loss = F.cross_entropy(heads["head"](encode(rotated)), labels)
            elif method == "SimCLR":
                z1, z2 = heads["projector"](encode(torch.cat([augment(x, g), augment(x, g)]))).chunk(2)
                loss = nt_xent(z1, z2, 0.5)
            elif method == "MoCo":
                x_q, x_k = augment(x, g), augment(x, g)
                q = heads["projector"](encode(x_q))
                with torch.no_grad():
                    k = F.normalize(target[1](target[0]((x_k - mean) / std)), dim=1)
                loss = info_nce(q, k, queue, 0.2)
            else:  # BYOL
                views = torch.cat([augment(x, g), augment(x, g)])
                p1, p2 = heads["predictor"](heads["projector"](encode(views))).chunk(2)
                with torch.no_grad():
                    z1, z2 = target[1](target[0]((views - mean) / std)).chunk(2)
                loss = byol_loss(p1, z2) + byol_loss(p2, z1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if method == "MoCo":
                queue = torch.cat([k.detach(), queue[:-batch_size]])
                ema_update_(target[0], backbone, 0.99)
                ema_update_(target[1], heads["projector"], 0.99)
            elif method == "BYOL":
                m = cosine_momentum(step - 1, steps * epochs, 0.99)
                ema_update_(target[0], backbone, m)
                ema_update_(target[1], heads["projector"], m)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times[1:]


def framework(method, images_nhwc, batch_size, epochs, backbone_name, device):
    cls = getattr(skssl, method)
    backbone_name = "vit_tiny" if method in VIT_ONLY else backbone_name
    est = cls(backbone=backbone_name, batch_size=batch_size, max_epochs=epochs, random_state=0, device=str(device))
    est.fit(images_nhwc)
    return [h["seconds"] for h in est.history_[1:]]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="*", default=list(HAND_WRITTEN) + list(FRAMEWORK_ONLY))
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--n-images", type=int, default=2048)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--backbone", default="small_cnn")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=2, help="alternate skssl and hand-written runs this many times")
    parser.add_argument("--out", help="result file name without .json (default throughput_<device>)")
    args = parser.parse_args()
    explicit = args.methods != parser.get_default("methods")
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    rng = np.random.RandomState(0)
    nhwc = rng.randint(0, 256, (args.n_images, args.size, args.size, 3)).astype(np.uint8)
    nchw = torch.from_numpy(nhwc).permute(0, 3, 1, 2).contiguous()
    steps = args.n_images // args.batch_size
    rows = []
    for method in args.methods:
        # Alternate the two sides so that a slow spell of the machine hits both.
        fw_times, hand_times = [], []
        for _ in range(args.repeats):
            fw_times += framework(method, nhwc, args.batch_size, args.epochs, args.backbone, device)
            if method in HAND_WRITTEN:
                hand_times += hand_written(method, nchw, args.batch_size, args.epochs, args.backbone, device)
        fw = float(np.median(fw_times))
        row = {"method": method + (" (vit_tiny)" if method in VIT_ONLY else ""),
               "skssl_images_per_s": round(steps * args.batch_size / fw, 1)}
        if hand_times:
            hand = float(np.median(hand_times))
            row.update(hand_images_per_s=round(steps * args.batch_size / hand, 1), ratio=round(hand / fw, 3))
        rows.append(row)
        print(row, flush=True)
    result = {
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
        "torch": torch.__version__,
        "setup": f"batch {args.batch_size}, {args.n_images} random {args.size}x{args.size} RGB uint8 images, backbone {args.backbone}, "
                 f"median of {args.repeats} x {args.epochs - 1} timed epochs, skssl and hand-written runs alternated",
        "rows": rows,
    }
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"{args.out or 'throughput_' + device.type}.json")
    if explicit and os.path.exists(path):  # keep the other methods' rows, in their order
        with open(path) as f:
            previous = json.load(f)["rows"]
        new = {r["method"]: r for r in rows}
        rows[:] = [new.pop(r["method"], r) for r in previous] + list(new.values())
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    print("wrote", path)


if __name__ == "__main__":
    main()
