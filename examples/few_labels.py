"""
Few labels, many images
=======================

Linear probe, fine-tuning, distillation and Noisy Student side by side.

The digits (1,300 training images, 497 held out) with 10 labels per class and
every other training image unlabelled (y == -1):

- a small CNN trained on the 100 labels alone;
- a linear probe on RotationSSL embeddings (pretrained on all 1,300 images);
- FineTuneClassifier: the same RotationSSL backbone fine-tuned end to end;
- DistilledClassifier: the fine-tuned network distilled into a fresh small CNN
  on every training image;
- NoisyStudentClassifier from the labels-alone teacher, and from the
  fine-tuned one (SSL + Noisy Student).

Run: python examples/few_labels.py [--threads N]. Takes a few minutes on one
CPU core; prints a table of held-out accuracies and draws it. The
documentation site runs it at small settings (``SKSSL_EXAMPLE_SIZE=small``:
1 to 3 epochs per network, 400 training and 200 held-out digits), whose
accuracies say nothing about the methods.
"""

import argparse
import os
import time

import numpy as np
import torch

from skssl import (DistilledClassifier, FineTuneClassifier, NoisyStudentClassifier, RotationSSL,
                   linear_probe_score)
from skssl.datasets import load_digits_images


def digits_few_labels(per_class=10, seed=0):
    X, y = load_digits_images(return_X_y=True)
    order = np.random.RandomState(seed).permutation(len(X))
    X, y = X[order], y[order]
    X_train, y_train, X_test, y_test = X[:1300], y[:1300], X[1300:], y[1300:]
    labelled = np.concatenate([np.flatnonzero(y_train == c)[:per_class] for c in np.unique(y_train)])
    y_few = np.full(len(y_train), -1)
    y_few[labelled] = y_train[labelled]
    return X_train, y_few, X_test, y_test


# The docs gallery runs every example at small settings (docs/conf.py sets this).
SMALL = os.environ.get("SKSSL_EXAMPLE_SIZE") == "small"


def epochs(n):
    return max(1, n // 10) if SMALL else n


def main():
    parser = argparse.ArgumentParser(description="Few labels: probe, fine-tuning, distillation, Noisy Student.")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    X, y, X_test, y_test = digits_few_labels()
    if SMALL:  # every labelled row and 300 unlabelled ones
        keep = np.sort(np.concatenate([np.flatnonzero(y >= 0), np.flatnonzero(y < 0)[:300]]))
        X, y, X_test, y_test = X[keep], y[keep], X_test[:200], y_test[:200]
    labelled = y >= 0
    rows = []

    def timed(name, make):
        start = time.process_time()
        score = make()
        rows.append((name, "-" if score is None else f"{score:.3f}", time.process_time() - start))
        print(f"{name:<45} {rows[-1][1]}  ({rows[-1][2]:.0f} s CPU)", flush=True)

    sup = FineTuneClassifier(ssl=None, max_epochs=epochs(30), batch_size=32, random_state=0)
    timed("small CNN on the labels alone", lambda: sup.fit(X, y).score(X_test, y_test))
    ssl = RotationSSL(max_epochs=epochs(3), batch_size=128, random_state=0)
    timed("RotationSSL pretraining (no labels)", lambda: ssl.fit(X) and None)
    timed("linear probe on RotationSSL embeddings",
          lambda: linear_probe_score(ssl, X[labelled], y[labelled], X_test=X_test, y_test=y_test))
    fine = FineTuneClassifier(ssl=ssl, max_epochs=epochs(30), batch_size=32, random_state=0)
    timed("RotationSSL + fine-tune", lambda: fine.fit(X, y).score(X_test, y_test))
    distilled = DistilledClassifier(teacher=fine, max_epochs=epochs(10), random_state=0)
    timed("RotationSSL + fine-tune + distillation", lambda: distilled.fit(X, y).score(X_test, y_test))
    noisy = NoisyStudentClassifier(teacher=sup, max_epochs=epochs(10), random_state=0)
    timed("Noisy Student from the labels-alone teacher", lambda: noisy.fit(X, y).score(X_test, y_test))
    ssl_noisy = NoisyStudentClassifier(teacher=fine, max_epochs=epochs(10), random_state=0)
    timed("RotationSSL + fine-tune + Noisy Student", lambda: ssl_noisy.fit(X, y).score(X_test, y_test))

    print("\n| method | held-out accuracy | CPU seconds |\n|---|---|---|")
    for name, score, seconds in rows:
        print(f"| {name} | {score} | {seconds:.0f} |")

    try:
        import matplotlib.pyplot as plt
    except ImportError:
        return
    scored = [(name, float(score)) for name, score, _ in rows if score != "-"]
    fig, ax = plt.subplots(figsize=(7, 3.2), layout="constrained")
    ax.barh([name for name, _ in scored][::-1], [score for _, score in scored][::-1], color="C0")
    ax.set(xlabel="held-out accuracy", xlim=(0, 1), title="Digits, 10 labels per class")
    ax.grid(axis="x", alpha=0.3)


if __name__ == "__main__":
    main()
