"""DINO on vit_tiny, probed along one fit: how many optimiser steps until it passes the untrained ViT.

One DINO fit on ``--n-train`` Fashion-MNIST training images (a seeded
sample) for ``--epochs`` epochs; before each epoch in ``--at`` (0 is the
untrained ViT) and after the last, a copy of the networks is probed: a
linear probe (StandardScaler + LogisticRegression) and a kNN classifier,
trained on those images' embeddings with their labels and scored on the
first 2,000 test images. Each probe is appended to
results/dino_steps_fashion.jsonl as one row with the run's name and
parameters. ``--params`` are DINO's (JSON), e.g. a smaller batch or
learning rate than the defaults.

    python benchmarks/dino_steps.py lr1e-3 --params '{"n_local_crops": 2, "batch_size": 64}'
    python benchmarks/dino_steps.py lr2.5e-4 --params '{"n_local_crops": 2, "batch_size": 64, "lr": 0.00025}'
"""

import argparse
import copy
import json
import os
import time

import numpy as np
import torch

import skssl
from skssl import knn_score, linear_probe_score

RESULTS = os.path.join(os.path.dirname(__file__), "results")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name")
    parser.add_argument("--params", default="{}", help="DINO parameters as JSON")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--at", type=int, nargs="*", default=[0, 1, 3, 6])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    params = json.loads(args.params)
    X, y = skssl.load_fashion_mnist(subset="train", return_X_y=True)
    X_test, y_test = skssl.load_fashion_mnist(subset="test", return_X_y=True)
    idx = np.random.RandomState(0).permutation(len(X))[:args.n_train]
    X, y, X_test, y_test = X[idx], y[idx], X_test[:2000], y_test[:2000]
    os.makedirs(RESULTS, exist_ok=True)
    out = open(os.path.join(RESULTS, "dino_steps_fashion.jsonl"), "a")
    start = time.perf_counter()

    def probe(model, epoch, steps):
        row = {"name": args.name, "params": params, "n_train": args.n_train, "epoch": epoch, "steps": steps,
               "seconds": round(time.perf_counter() - start),
               "linear_probe": round(linear_probe_score(model, X, y, X_test=X_test, y_test=y_test), 4),
               "knn": round(knn_score(model, X, y, X_test=X_test, y_test=y_test), 4)}
        print(row, flush=True)
        out.write(json.dumps(row) + "\n")
        out.flush()

    class Probed(skssl.DINO):
        def _before_epoch(self, images, epoch):
            super()._before_epoch(images, epoch)
            if epoch in args.at:  # a copy, so probing leaves the fit's networks and modes as they were
                model = copy.copy(self)
                model.networks_ = copy.deepcopy(self.networks_)
                probe(model, epoch, self._step)

    model = Probed(random_state=0, max_epochs=args.epochs, **params).fit(X)
    probe(model, args.epochs, args.epochs * (args.n_train // model.batch_size))


if __name__ == "__main__":
    main()
