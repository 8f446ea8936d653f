"""Few labels on Fashion-MNIST: labels alone, linear probe, fine-tuning, distillation, Noisy Student.

The seeds' question, "what do I do with few labels?", on Fashion-MNIST with
10 labels per class (100) and with 600 labels (1% of the training set), the
other training images unlabelled (y == -1):

- a small CNN trained on the labels alone (FineTuneClassifier, ssl=None);
- a linear probe on SimCLR embeddings (pretrained on every training image used);
- SimCLR + fine-tune (FineTuneClassifier on the same pretrained SimCLR);
- SimCLR + fine-tune + distillation into a fresh small CNN (DistilledClassifier);
- Noisy Student from the labels-alone teacher;
- SimCLR + fine-tune + Noisy Student.

CPU budget: ``--n-train`` training images (default 6,000, not 60,000: one CPU
thread), SimCLR ``--ssl-epochs`` epochs, the classifiers' epochs as below;
accuracy on the 10,000 test images. Writes benchmarks/results/semi_fashion.json
and docs/images/semi_fashion.png.

    python benchmarks/semi.py [--n-train 6000] [--threads 1]
"""

import argparse
import json
import os
import platform
import time

import numpy as np
import torch

import skssl
from skssl import DistilledClassifier, FineTuneClassifier, NoisyStudentClassifier, SimCLR, linear_probe_score

HERE = os.path.dirname(os.path.abspath(__file__))


def few_labels(y, n_labels, seed=0):
    """``y`` with all but ``n_labels`` rows (as many per class as possible) set to -1."""
    per_class = n_labels // len(np.unique(y))
    rng = np.random.RandomState(seed)
    keep = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per_class] for c in np.unique(y)])
    out = np.full(len(y), -1)
    out[keep] = y[keep]
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=6000)
    parser.add_argument("--labels", type=int, nargs="*", default=[100, 600])
    parser.add_argument("--ssl-epochs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--ssl-cache", help="a saved SimCLR (skssl.load) to use if the file exists, else where to save it")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    X, y = skssl.load_fashion_mnist(subset="train", return_X_y=True)
    X_test, y_test = skssl.load_fashion_mnist(subset="test", return_X_y=True)
    index = np.random.RandomState(0).permutation(len(X))[:args.n_train]
    X, y = X[index], y[index]
    common = dict(batch_size=64, random_state=0)
    rows = []
    result = {"setup": f"Fashion-MNIST, {len(X):,} training images ({args.labels} of them labelled), accuracy on the "
                       f"{len(X_test):,} test images; SimCLR {args.ssl_epochs} epochs; small CNN backbone; "
                       "classifiers: fine-tune max_epochs='auto' (at least 300 steps), distillation 10 epochs, "
                       "Noisy Student 10 epochs (1 iteration)",
              "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
              "torch": torch.__version__, "rows": rows}

    def record(labels, name, make):
        start = time.perf_counter()
        score = make()
        rows.append({"labels": labels, "method": name, "accuracy": round(float(score), 4),
                     "seconds": round(time.perf_counter() - start, 1)})
        print(rows[-1], flush=True)
        with open(os.path.join(HERE, "results", "semi_fashion.json"), "w") as f:
            json.dump(result, f, indent=1)

    start = time.perf_counter()
    if args.ssl_cache and os.path.exists(args.ssl_cache):
        ssl = skssl.load(args.ssl_cache)
        result["ssl_seconds"] = "trained earlier, loaded from --ssl-cache"
        if ssl.max_epochs != args.ssl_epochs or ssl.n_features_in_ != X[0].size:
            raise SystemExit(f"{args.ssl_cache} holds another SimCLR (max_epochs={ssl.max_epochs})")
    else:
        ssl = SimCLR(max_epochs=args.ssl_epochs, random_state=0).fit(X)
        result["ssl_seconds"] = round(time.perf_counter() - start, 1)
        if args.ssl_cache:
            ssl.save(args.ssl_cache)
    for n_labels in args.labels:
        y_few = few_labels(y, n_labels)
        labelled = y_few >= 0
        supervised = FineTuneClassifier(ssl=None, **common)
        record(n_labels, "labels alone (small CNN)", lambda: supervised.fit(X, y_few).score(X_test, y_test))
        record(n_labels, "linear probe on SimCLR", lambda: linear_probe_score(ssl, X[labelled], y_few[labelled],
                                                                              X_test=X_test, y_test=y_test))
        fine = FineTuneClassifier(ssl=ssl, **common)
        record(n_labels, "SimCLR + fine-tune", lambda: fine.fit(X, y_few).score(X_test, y_test))
        distilled = DistilledClassifier(teacher=fine, student_backbone="small_cnn", max_epochs=10, **common)
        record(n_labels, "SimCLR + fine-tune + distillation", lambda: distilled.fit(X, y_few).score(X_test, y_test))
        noisy = NoisyStudentClassifier(teacher=supervised, max_epochs=10, **common)
        record(n_labels, "Noisy Student (labels-alone teacher)", lambda: noisy.fit(X, y_few).score(X_test, y_test))
        ssl_noisy = NoisyStudentClassifier(teacher=fine, max_epochs=10, **common)
        record(n_labels, "SimCLR + fine-tune + Noisy Student", lambda: ssl_noisy.fit(X, y_few).score(X_test, y_test))
    plot(rows, args.labels)


def plot(rows, label_counts):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    methods = list(dict.fromkeys(r["method"] for r in rows))
    fig, ax = plt.subplots(figsize=(8, 3.6))
    width = 0.8 / len(label_counts)
    for i, n in enumerate(label_counts):
        scores = [next((r["accuracy"] for r in rows if r["method"] == m and r["labels"] == n), np.nan) for m in methods]
        ax.barh(np.arange(len(methods)) + i * width, scores, height=width, label=f"{n} labels")
    ax.set_yticks(np.arange(len(methods)) + width * (len(label_counts) - 1) / 2, methods)
    ax.invert_yaxis()
    ax.set_xlabel("test accuracy")
    ax.set_xlim(0.5, 1.0)
    ax.legend(loc="lower right")
    ax.set_title("Fashion-MNIST with few labels (CPU budget: docs/semi.md)", fontsize=10)
    fig.tight_layout()
    fig.savefig(os.path.join(HERE, "..", "docs", "images", "semi_fashion.png"), dpi=110)


if __name__ == "__main__":
    main()
