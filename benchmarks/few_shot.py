"""Few-shot transfer to unseen classes: 5-way 1-shot and 5-shot accuracy on Fashion-MNIST.

Every method in ``skssl.IMAGE_ESTIMATORS`` (and the untrained backbone,
``RandomInit``, and raw pixels) trains without labels on ``--n-train``
Fashion-MNIST training images of classes 0-4 (T-shirt, trouser, pullover,
dress, coat) for ``--epochs`` epochs or ``--minutes`` minutes, whichever ends
first (the estimators' ``max_time``), with its default parameters and
``random_state=0``. Its embeddings of the 5,000 Fashion-MNIST *test* images
of classes 5-9 (sandal, shirt, sneaker, bag, ankle boot), classes it never
saw, are then scored by :func:`skssl.evaluation.few_shot_score`: 600
episodes of 5 ways, 1 or 5 support images per class and 15 queries, nearest
prototype by Euclidean distance on L2-normalised embeddings; each figure
comes with the half-width of its 95% confidence interval.

Results go to benchmarks/results/few_shot_fashion.json (rows written after
every method; with ``--methods`` those rows replace theirs in the existing
file); ``python benchmarks/report.py`` renders them into docs/benchmarks.md.

    python benchmarks/few_shot.py --threads 1                     # the table: 5,000 images, 5 epochs or 1 minute
    python benchmarks/few_shot.py --threads 1 --methods UnsupervisedMetaSSL
"""

import argparse
import json
import os
import platform
import time

import numpy as np
import torch

import skssl
from skssl.evaluation import few_shot_score

from quality import RESULTS, methods

SEEN, UNSEEN = (0, 1, 2, 3, 4), (5, 6, 7, 8, 9)
SHOTS = (1, 5)


def data(n_train):
    """``--n-train`` training images of the seen classes; every test image of the unseen ones, with labels."""
    X, y = skssl.load_fashion_mnist(subset="train", return_X_y=True)
    X_test, y_test = skssl.load_fashion_mnist(subset="test", return_X_y=True)
    seen = np.flatnonzero(np.isin(y, SEEN))
    train = np.random.RandomState(0).permutation(seen)[:n_train]
    unseen = np.isin(y_test, UNSEEN)
    return X[train], X_test[unseen], y_test[unseen]


def scores(Z, y):
    out = {}
    for k in SHOTS:
        result = few_shot_score(Z, y, n_way=5, k_shot=k, n_query=15, n_episodes=600, random_state=0)
        out[f"{k}_shot"], out[f"{k}_shot_ci95"] = round(result.mean, 4), round(result.ci95, 4)
    return out


def run(names, n_train, epochs, minutes, device, save, previous=None):
    X, X_test, y_test = data(n_train)
    rows = []
    result = {
        "dataset": "fashion",
        "protocol": "5-way episodes (15 queries per class, 600 episodes, nearest prototype on L2-normalised "
                    "embeddings) on the 5,000 test images of classes 5-9",
        "budget": f"{epochs} epochs on {len(X):,} training images of classes 0-4, at most {minutes:g} "
                  f"minute{'s' if minutes != 1 else ''} of training per method",
        "device": device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"),
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
        "torch": torch.__version__,
        "rows": rows,
    }
    kept = [r for r in (previous or {}).get("rows", []) if names and r["method"] not in names]
    done = {r["method"] for r in kept}
    order = {name: i for i, (name, _) in enumerate(methods(None))}

    def record(row):  # written after every method, so a long run that stops keeps its rows
        rows.append(row)
        print(row, flush=True)
        rows.sort(key=lambda r: -1 if r["method"] == "raw pixels" else order.get(r["method"], 99))
        save(result)

    rows.extend(kept)
    if "raw pixels" not in done:
        record({"method": "raw pixels", "seconds": 0.0, **scores(X_test.reshape(len(X_test), -1), y_test)})
    for name, cls in methods(names):
        if name in done:
            continue
        start = time.perf_counter()
        try:
            model = cls(random_state=0, device=device, max_epochs=epochs, max_time=60 * minutes).fit(X)
        except ValueError as exc:  # e.g. colorization on grayscale images
            record({"method": name, "skipped": str(exc)})
            continue
        row = {"method": name, "seconds": round(time.perf_counter() - start, 1), "epochs": len(model.history_),
               **scores(model.transform(X_test), y_test)}
        if model.history_ and model.history_[-1].get("stopped"):
            row["stopped_at_batch"] = model.history_[-1]["batches"]
        record(row)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="*", help="class names (default: all)")
    parser.add_argument("--n-train", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--minutes", type=float, default=1.0, help="training-time budget per method")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's, i.e. the machine's cores)")
    parser.add_argument("--out", default="few_shot_fashion", help="result file name without .json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"{args.out}.json")
    previous = json.load(open(path)) if args.methods and os.path.exists(path) else None

    def save(result):
        with open(path, "w") as f:
            json.dump(result, f, indent=1)

    run(args.methods, args.n_train, args.epochs, args.minutes, args.device, save, previous)
    print("wrote", path)


if __name__ == "__main__":
    main()
