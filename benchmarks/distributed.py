"""Data-parallel speed: the same SimCLR fit in 1 process and in 2 torchrun processes on this CPU.

Both runs use the machine's cores: one process with all torch threads, or
two processes with half of them each (gloo all-reduce between them). Fashion-MNIST
training images when installed (else the digits), 28 px, small CNN, global
batch 256. What a GPU run needs to be measured: ``--device cuda`` on a
machine with 2+ GPUs (nccl), where each process owns one GPU.

    python benchmarks/distributed.py [--images 12000] [--epochs 2] [--device cpu]

Results go to benchmarks/results/distributed_<device>.json.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import torch

RESULTS = os.path.join(os.path.dirname(__file__), "results")


def worker(args):
    import skssl

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if args.device == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    try:
        X = skssl.load_fashion_mnist(subset="train", return_X_y=True, download=False)[0][:args.images]
    except (OSError, ValueError):
        X = skssl.load_digits_images(return_X_y=True)[0]
    est = skssl.SimCLR(max_epochs=args.epochs, batch_size=256, random_state=0, device=args.device,
                       backbone="small_cnn", sync_batchnorm=True)
    start = time.perf_counter()
    est.fit(X)
    seconds = time.perf_counter() - start
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({"processes": world, "images": len(X), "seconds": round(seconds, 1),
                          "images_per_s": round(args.epochs * len(X) / seconds, 1),
                          "last_loss": round(est.history_[-1]["loss"], 4)}), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # not "--n": torchrun would read it as an abbreviation of its own --nnodes/--nproc-per-node
    parser.add_argument("--images", type=int, default=12_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--worker", action="store_true")
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    common = [__file__, "--worker", "--images", str(args.images), "--epochs", str(args.epochs), "--device", args.device]
    rows = []
    for nproc in (1, 2):
        cmd = [sys.executable, *common] if nproc == 1 else [
            sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *common]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"{nproc}-process run failed:\n{done.stderr[-3000:]}")
        out = done.stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    result = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "torch": torch.__version__, "device": args.device,
              "setting": f"SimCLR, small_cnn, global batch 256, {args.epochs} epochs", "rows": rows,
              "speedup_2_over_1": round(rows[1]["images_per_s"] / rows[0]["images_per_s"], 2)}
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"distributed_{args.device}.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    print("wrote", path)


if __name__ == "__main__":
    main()
