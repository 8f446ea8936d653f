"""Real-data benchmarks: a memmap larger than we copy, a folder of PNGs, the ResNet stems.

memmap  : a 200,000-image uint8 memmap (Fashion-MNIST training images,
          shifted and flipped into new ones) fits one epoch of RotationSSL;
          resident memory is sampled every 20 ms during the fit and its peak
          growth is compared with the array's size, split into anonymous
          memory (what the process allocates) and file-backed pages (the
          memmap's page cache mapped into the process, which the kernel
          drops under memory pressure). The same fit on the first 20,000
          rows gives what any fit costs (activations, torch's allocations);
          the goal is on the growth beyond it.
folder  : training images/s of SimCLR on a folder of PNGs with
          ``num_workers=2``, as a ratio of the same images held in memory.
stems   : training images/s of ResNet-18 at 96 px with the ImageNet stem
          (7x7 stride-2 conv and max-pool) and the CIFAR stem (3x3 stride 1).

    python benchmarks/data_sources.py memmap folder stems

Results go to benchmarks/results/data_sources_<device>.json (merged by part).
"""

import argparse
import json
import os
import platform
import tempfile
import threading
import time

import numpy as np
import torch

RESULTS = os.path.join(os.path.dirname(__file__), "results")


def _status():
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                fields[key] = int(value.split()[0]) * 1024
    return fields


class PeakMemory:
    """Peak of VmRSS, RssAnon and RssFile, sampled every ``interval`` seconds."""

    def __init__(self, interval=0.02):
        self.interval, self.peak, self._stop = interval, {}, threading.Event()

    def __enter__(self):
        self.start = _status()
        self.peak = dict(self.start)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(self.interval):
            for k, v in _status().items():
                self.peak[k] = max(self.peak[k], v)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def growth(self):
        return {k: self.peak[k] - self.start[k] for k in self.start}


def fashion_train():
    from skssl.datasets import load_fashion_mnist

    return load_fashion_mnist(subset="train", return_X_y=True)


def memmap_part(n=200_000):
    from skssl import RotationSSL

    X, _ = fashion_train()
    path = os.path.join(tempfile.mkdtemp(), "fashion200k.npy")
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, 28, 28))
    rng = np.random.default_rng(0)
    for start in range(0, n, 10_000):  # new images: shifted by up to 3 px and flipped at random
        idx = rng.integers(0, len(X), 10_000)
        block = X[idx]
        dy, dx = rng.integers(-3, 4, 2)
        block = np.roll(block, (dy, dx), axis=(1, 2))
        flip = rng.random(10_000) < 0.5
        block[flip] = block[flip, :, ::-1]
        mm[start:start + 10_000] = block[: n - start]
    mm.flush()
    del mm, X
    mm = np.load(path, mmap_mode="r")
    # Every 28 px row is read from the memmap; image_size=8 shrinks the batch on the device so that
    # one epoch of 200,000 images fits a CPU budget (the data path is the same at any size).
    def make():
        return RotationSSL(max_epochs=1, batch_size=512, image_size=8, random_state=0)

    # What a fit costs whatever the data size (activations of 4 x 512 rotated images, torch's
    # allocations, the statistics sample) is not memory that grows with the array: it is measured
    # by the same fit on the first 20,000 rows, after a warm-up fit that pays torch's start-up.
    make().fit(mm[:2000])
    with PeakMemory() as small:
        make().fit(mm[:20_000])
    start = time.perf_counter()
    with PeakMemory() as memory:
        make().fit(mm)
    seconds = time.perf_counter() - start
    growth, base = memory.growth(), small.growth()
    size, added = mm.nbytes, mm.nbytes - mm[:20_000].nbytes
    del mm
    os.remove(path)
    extra = growth["RssAnon"] - base["RssAnon"]
    return {
        "images": n, "model": "RotationSSL, small_cnn, batch 512, image_size=8 (28 px rows read)",
        "array_MB": round(size / 2**20, 1), "fit_seconds": round(seconds, 1),
        "images_per_s": round(n / seconds, 1),
        "peak_growth_MB": {k: round(v / 2**20, 1) for k, v in growth.items()},
        "same_fit_on_20000_rows_MB": {k: round(v / 2**20, 1) for k, v in base.items()},
        "anon_growth_fraction_of_the_array": round(growth["RssAnon"] / size, 3),
        "anon_growth_per_added_array_byte": round(extra / added, 3),
        "goal": "anonymous memory that grows with the array < 0.25 x its size (file-backed pages are "
                "the kernel's page cache of the memmap, dropped under memory pressure)",
        "met": extra < 0.25 * added,
    }


def _timed_fit(make, X, repeats=2):
    best = None
    for _ in range(repeats):
        est = make()
        start = time.perf_counter()
        est.fit(X)
        seconds = time.perf_counter() - start
        best = seconds if best is None else min(best, seconds)
    return best


def folder_part(n=6_000, size=28):
    from PIL import Image

    from skssl import SimCLR
    from skssl.datasets import ImageFolder

    X, y = fashion_train()
    X, y = X[:n], y[:n]
    root = tempfile.mkdtemp()
    for i, (image, label) in enumerate(zip(X, y)):
        folder = os.path.join(root, str(label))
        os.makedirs(folder, exist_ok=True)
        Image.fromarray(image).save(os.path.join(folder, f"{i:05d}.png"))
    folder = ImageFolder(root)
    params = dict(max_epochs=2, batch_size=256, random_state=0, backbone="small_cnn")
    memory_s = _timed_fit(lambda: SimCLR(**params), X)
    folder_s = _timed_fit(lambda: SimCLR(**params, num_workers=2), folder)
    workers0_s = _timed_fit(lambda: SimCLR(**params, num_workers=0), folder, repeats=1)
    from skssl._sources import DatasetSource

    source = DatasetSource(folder, folder.image_shape, (0.0, 255.0))
    start = time.perf_counter()
    for _ in source.batches(torch.arange(n).split(256), 0):
        pass
    decode_s = time.perf_counter() - start
    epochs = params["max_epochs"]
    return {
        "images": n, "size": size, "model": "SimCLR, small_cnn, batch 256, 2 epochs",
        "in_memory_images_per_s": round(epochs * n / memory_s, 1),
        "folder_workers2_images_per_s": round(epochs * n / folder_s, 1),
        "folder_workers0_images_per_s": round(epochs * n / workers0_s, 1),
        "decode_only_images_per_s_one_process": round(n / decode_s, 1),
        "ratio": round(memory_s / folder_s, 3),
        "goal": ">= 0.7",
    }


def stems_part(size=96, batch=32, steps=6):
    from skssl.backbones import build_backbone

    out = {}
    for name in ("resnet18", "resnet18_cifar"):
        net = build_backbone(name, 3, (size, size))
        opt = torch.optim.SGD(net.parameters(), lr=0.01)
        x = torch.rand(batch, 3, size, size)
        times = []
        for step in range(steps + 1):
            start = time.perf_counter()
            loss = net(x).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step:  # the first step is a warm-up
                times.append(time.perf_counter() - start)
        out[name] = round(batch / float(np.median(times)), 1)
    out["speedup_imagenet_over_cifar"] = round(out["resnet18"] / out["resnet18_cifar"], 2)
    out["setting"] = f"{size} px RGB, batch {batch}, forward+backward+SGD step, median of {steps} steps"
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("parts", nargs="+", choices=["memmap", "folder", "stems"])
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    path = os.path.join(RESULTS, f"data_sources_{device}.json")
    result = json.load(open(path)) if os.path.exists(path) else {}
    result.update(machine=f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                          f"{torch.get_num_threads()} torch threads", torch=torch.__version__)
    for part in args.parts:
        result[part] = {"memmap": memmap_part, "folder": folder_part, "stems": stems_part}[part]()
        print(part, json.dumps(result[part], indent=1), flush=True)
        os.makedirs(RESULTS, exist_ok=True)
        with open(path, "w") as f:
            json.dump(result, f, indent=1)
    print("wrote", path)


if __name__ == "__main__":
    main()
