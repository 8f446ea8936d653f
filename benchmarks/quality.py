"""Quality of every method's embedding, next to raw pixels and an untrained backbone.

digits   : pretrain on all 1,797 images (no labels) with each method's default
           parameters, then the few-label protocol: 1, 5 and 10 labelled images
           per class, linear probe tested on all the others, mean of 5 draws.
fashion  : pretrain on ``--n-train`` Fashion-MNIST training images for
           ``--epochs`` epochs, then a linear probe (StandardScaler +
           LogisticRegression) trained on those images' labels and tested on
           the 10,000 test images.

Results go to benchmarks/results/quality_<dataset>.json; ``python
benchmarks/report.py`` turns every result file into docs/benchmarks.md.

    python benchmarks/quality.py digits
    python benchmarks/quality.py fashion --n-train 10000 --epochs 5
"""

import argparse
import json
import os
import platform
import time

import numpy as np
import torch

import skssl
from skssl import few_label_score, linear_probe_score
from skssl.baselines import RandomInit

RESULTS = os.path.join(os.path.dirname(__file__), "results")


def methods(names):
    chosen = [cls for cls in skssl.ESTIMATORS if not names or cls.__name__ in names]
    return [("RandomInit", RandomInit)] + [(cls.__name__, cls) for cls in chosen]


def run(dataset, names, n_train, epochs, device, save):
    if dataset == "digits":
        X, y = skssl.load_digits_images(return_X_y=True)
        X_test = y_test = None
        budget = "each method's default max_epochs, all 1,797 images"
    else:
        X, y = skssl.load_fashion_mnist(subset="train", return_X_y=True)
        X_test, y_test = skssl.load_fashion_mnist(subset="test", return_X_y=True)
        idx = np.random.RandomState(0).permutation(len(X))[:n_train]
        X, y = X[idx], y[idx]
        budget = f"{epochs} epochs on {n_train} training images"

    def score(model):
        if dataset == "digits":
            return {str(k): v for k, v in few_label_score(model, X, y, n_per_class=(1, 5, 10)).items()}
        return {"linear_probe": linear_probe_score(model, X, y, X_test=X_test, y_test=y_test)}

    rows = []
    result = {
        "dataset": dataset,
        "budget": budget,
        "device": device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"),
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
        "torch": torch.__version__,
        "rows": rows,
    }

    def record(row):  # written after every method, so a long run that stops keeps its rows
        rows.append(row)
        print(row, flush=True)
        save(result)

    record({"method": "raw pixels", "seconds": 0.0, **score(None)})
    for name, cls in methods(names):
        params = dict(random_state=0, device=device)
        if dataset == "fashion":
            params["max_epochs"] = epochs
        start = time.perf_counter()
        try:
            model = cls(**params).fit(X)
        except ValueError as exc:  # e.g. colorization on grayscale images
            record({"method": name, "skipped": str(exc)})
            continue
        seconds = time.perf_counter() - start
        record({"method": name, "seconds": round(seconds, 1), "epochs": len(model.history_), **score(model)})
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", choices=["digits", "fashion"])
    parser.add_argument("--methods", nargs="*", help="class names (default: all)")
    parser.add_argument("--n-train", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"quality_{args.dataset}.json")

    def save(result):
        with open(path, "w") as f:
            json.dump(result, f, indent=1)

    run(args.dataset, args.methods, args.n_train, args.epochs, args.device, save)
    print("wrote", path)


if __name__ == "__main__":
    main()
