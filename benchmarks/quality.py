"""Quality of every method's embedding, next to raw pixels and an untrained backbone.

digits   : pretrain on all 1,797 images (no labels) with each method's default
           parameters, then the few-label protocol: 1, 5 and 10 labelled images
           per class, linear probe tested on all the others, mean of 5 draws.
fashion  : pretrain on ``--n-train`` Fashion-MNIST training images for
           ``--epochs`` epochs, then a linear probe (StandardScaler +
           LogisticRegression) trained on those images' labels and tested on
           the 10,000 test images.

fashion with ``--minutes M``: each method trains for ``--epochs`` epochs or
           ``M`` minutes, whichever ends first (the estimators' ``max_time``:
           the fit stops and keeps what it learned); the row records the
           epochs and batches it got.

Results go to benchmarks/results/<--out>.json (default quality_<dataset>);
with ``--methods`` the rows of those methods replace theirs in an existing
file (baselines already there are kept, not re-run). ``python
benchmarks/report.py`` turns every result file into docs/benchmarks.md,
with the value of results/before/<same file> next to it.

    python benchmarks/quality.py digits
    python benchmarks/quality.py fashion --n-train 4000 --epochs 3 --threads 1     # the quick table
    python benchmarks/quality.py fashion --n-train 4000 --epochs 3 --threads 1 --methods DINO \
        --params '{"batch_size": 64, "lr": 0.000125}' --out quality_fashion_vit   # a variant beside the default row
    python benchmarks/quality.py fashion --n-train 60000 --epochs 1 --minutes 3 --out quality_fashion_full
"""

import argparse
import json
import os
import platform
import time

import numpy as np
import torch

import skssl
from skssl import few_label_score, knn_score, linear_probe_score
from skssl.baselines import RandomInit

RESULTS = os.path.join(os.path.dirname(__file__), "results")


def methods(names):
    chosen = [cls for cls in skssl.IMAGE_ESTIMATORS if not names or cls.__name__ in names]
    baselines = [("RandomInit", RandomInit)]
    if {cls.__name__ for cls in chosen} & {"MAE", "BEiT", "DINO"}:  # a ViT backbone (DINO's from 28 px): its own untrained floor
        baselines.append(("RandomInit (vit_tiny)", lambda **params: RandomInit(backbone="vit_tiny", **params)))
    return baselines + [(cls.__name__, cls) for cls in chosen]


def run(dataset, names, n_train, epochs, device, save, minutes=None, previous=None, extra=None):
    if dataset == "digits":
        X, y = skssl.load_digits_images(return_X_y=True)
        X_test = y_test = None
        budget = "each method's default max_epochs, all 1,797 images"
    else:
        X, y = skssl.load_fashion_mnist(subset="train", return_X_y=True)
        X_test, y_test = skssl.load_fashion_mnist(subset="test", return_X_y=True)
        idx = np.random.RandomState(0).permutation(len(X))[:n_train]
        X, y = X[idx], y[idx]
        budget = f"{epochs} epoch{'s' if epochs > 1 else ''} on {len(X):,} training images"
        if minutes:
            budget += f", at most {minutes:g} minutes of training per method"

    def score(model):
        if dataset == "digits":
            return {str(k): v for k, v in few_label_score(model, X, y, n_per_class=(1, 5, 10)).items()}
        # kNN too: MAE's features are known to be weak for a linear probe (He et al. 2022).
        return {"linear_probe": linear_probe_score(model, X, y, X_test=X_test, y_test=y_test),
                "knn": knn_score(model, X, y, X_test=X_test, y_test=y_test)}

    rows = []
    result = {
        "dataset": dataset,
        "budget": budget,
        "device": device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"),
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
        "torch": torch.__version__,
        "rows": rows,
    }
    # With --methods, those methods' rows are replaced; the other rows (baselines included) are kept.
    # Non-default parameters name their rows, so a default row and a variant can stand side by side.
    suffix = f" ({', '.join(f'{k}={v!r}' for k, v in extra.items())})" if extra else ""
    kept = [r for r in (previous or {}).get("rows", []) if names and r["method"] not in {n + suffix for n in names}]
    done = {r["method"] for r in kept}

    def record(row):  # written after every method, so a long run that stops keeps its rows
        rows.append(row)
        print(row, flush=True)
        order = {cls.__name__: i for i, cls in enumerate((RandomInit,) + tuple(skssl.IMAGE_ESTIMATORS))}
        rows.sort(key=lambda r: -1 if r["method"] == "raw pixels" else order.get(r["method"], 99))
        save(result)

    for row in kept:
        rows.append(row)
    if "raw pixels" not in done:
        record({"method": "raw pixels", "seconds": 0.0, **score(None)})
    for name, cls in methods(names):
        variant = bool(extra and names and name in names)
        name += suffix if variant else ""
        if name in done:  # a baseline kept from the previous run
            continue
        params = dict(random_state=0, device=device, **(extra if variant else {}))
        if dataset == "fashion":
            params["max_epochs"] = epochs
        if minutes:  # the training-time budget: the fit stops there and keeps what it learned
            params["max_time"] = 60 * minutes
        start = time.perf_counter()
        try:
            model = cls(**params).fit(X)
        except ValueError as exc:  # e.g. colorization on grayscale images
            record({"method": name, "skipped": str(exc)})
            continue
        seconds = time.perf_counter() - start
        row = {"method": name, "seconds": round(seconds, 1), "epochs": len(model.history_), **score(model)}
        if model.history_ and model.history_[-1].get("stopped"):
            row["stopped_at_batch"] = model.history_[-1]["batches"]
        record(row)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", choices=["digits", "fashion"])
    parser.add_argument("--methods", nargs="*", help="class names (default: all)")
    parser.add_argument("--n-train", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--minutes", type=float, help="training-time budget per method (fashion)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's, i.e. the machine's cores)")
    parser.add_argument("--params", help="extra parameters (JSON) of the --methods; their rows are named with them")
    parser.add_argument("--out", help="result file name without .json (default quality_<dataset>)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"{args.out or 'quality_' + args.dataset}.json")
    previous = json.load(open(path)) if args.methods and os.path.exists(path) else None

    def save(result):
        with open(path, "w") as f:
            json.dump(result, f, indent=1)

    run(args.dataset, args.methods, args.n_train, args.epochs, args.device, save, args.minutes, previous,
        json.loads(args.params) if args.params else None)
    print("wrote", path)


if __name__ == "__main__":
    main()
