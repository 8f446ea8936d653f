"""
Which pretext should I use?
===========================

Every method on the digits, with the diagnostics.

1. Pretrain every skssl method (default parameters, a few epochs) on 1,200
   digits without labels, plus the random-label baselines of the three
   classification pretexts (rotation, jigsaw, relative position: the same
   induced images with meaningless targets, Wallace & Hariharan 2020).
2. One table: few-label accuracy (1, 5, 10 labels per class), kNN and linear
   probe on the 597 held-out digits, effective rank, implicit dimensionality
   and fitting time.
3. Pretext generalisation (the pretext's own loss and accuracy on training
   vs held-out digits) and alignment/uniformity under a digit-safe
   augmentation.
4. The same table on Fashion-MNIST at the quick budget, if its files are
   found (``skssl.load_fashion_mnist(download=False)``).
5. Figures in examples/output/: few-label curves, t-SNE maps, training
   curves and augmented views; the tables in examples/output/compare_pretexts.md.

Run it with::

    python examples/compare_pretexts.py            # digits at 10 epochs, Fashion-MNIST at 1 (11 min on 2 CPU cores)
    python examples/compare_pretexts.py --quick    # 1 epoch on fewer images (3-7 min)

The documentation site runs it at small settings (``SKSSL_EXAMPLE_SIZE=small``:
three methods and the random-label RotationSSL, 1 epoch, 300 digits, PCA maps
instead of t-SNE, no Fashion-MNIST), which show the figures
but not the comparison; the measured tables are in docs/diagnostics.md.
"""

import argparse
import os
import sys
import time

import numpy as np
import torch
from threadpoolctl import threadpool_limits

import skssl
from skssl import compare_pretexts, load_digits_images, pretext_generalization
from skssl.augment import Augment
from skssl.baselines import RandomInit
from skssl.diagnostics import alignment_uniformity

# The script's folder (sphinx-gallery, which runs the examples for the docs, defines no __file__).
OUT = os.path.join(os.path.dirname(os.path.abspath(sys.argv[0])), "output")

# What keeps a digit a digit (checked with plot_augmentations): mild crops and
# small rotations, no flips (a flipped 2 is no digit). Used to measure
# alignment, and shown next to SimCLR's recipe.
DIGITS_AUGMENT = Augment(crop_scale=(0.6, 1.0), flip_p=0.0, degrees=10, saturation=0.0, grayscale_p=0.0)


# The docs gallery runs every example at small settings (docs/conf.py sets this).
SMALL = os.environ.get("SKSSL_EXAMPLE_SIZE") == "small"
SMALL_METHODS = (skssl.RotationSSL, skssl.SimCLR, skssl.DeepClusterSSL)


def estimators(epochs):
    """Every method with its default parameters at ``epochs`` epochs, and the two floors."""
    models = {"raw pixels": None, "RandomInit": RandomInit(random_state=0)}
    for cls in skssl.IMAGE_ESTIMATORS:
        if cls is skssl.ColorizationSSL:  # it needs colour images; both data sets are grayscale
            continue
        if SMALL and cls not in SMALL_METHODS:
            continue
        models[cls.__name__] = cls(max_epochs=epochs, random_state=0)
    return models


def markdown_generalization(rows):
    def f(v, digits=3):
        return "" if v is None else f"{v:.{digits}f}"

    lines = ["| method | train loss | held-out loss | train accuracy | held-out accuracy | alignment | uniformity |",
             "|:---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['method']} | {f(r['train_loss'])} | {f(r['test_loss'])} | {f(r['train_accuracy'])} | "
                     f"{f(r['test_accuracy'])} | {f(r['alignment'])} | {f(r['uniformity'])} |")
    return "\n".join(lines)


def save(fig, name):
    path = os.path.join(OUT, name)
    fig.savefig(path, dpi=110)
    print("saved", os.path.relpath(path))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 epoch on 600 digits and 500 Fashion-MNIST images")
    parser.add_argument("--epochs", type=int, default=10, help="digits epochs per method (default 10)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(OUT, exist_ok=True)
    epochs = 1 if args.quick or SMALL else args.epochs
    report = [f"# compare_pretexts.py ({'--quick' if args.quick else f'{epochs} epochs'}, "
              f"{torch.get_num_threads()} torch threads, torch {torch.__version__})\n"]

    # ------------------------------------------------------------------ digits
    X, y = load_digits_images(return_X_y=True)
    order = np.random.RandomState(0).permutation(len(X))
    n_train = 300 if SMALL else 600 if args.quick else 1200
    train, held_out = order[:n_train], order[n_train:n_train + 200 if SMALL else None]
    X_train, y_train, X_held, y_held = X[train], y[train], X[held_out], y[held_out]
    print(f"digits: {len(X_train)} training images (no labels for pretraining), {len(X_held)} held out; "
          f"{epochs} epoch(s) per method\n")
    start = time.perf_counter()
    digits = compare_pretexts(estimators(epochs), X_train, y_train, X_test=X_held, y_test=y_held,
                              n_per_class=(1, 5, 10), random_labels=True, verbose=True)
    minutes = (time.perf_counter() - start) / 60
    print(f"\n{digits.to_markdown()}\n({minutes:.1f} minutes)\n")
    report += [f"## Digits: {epochs} epoch(s), {len(X_train)} training images, kNN and linear probe tested on "
               f"{len(X_held)} held-out digits ({minutes:.1f} minutes)\n", digits.to_markdown(), ""]

    rows = []
    for name, model in digits.estimators.items():
        if model is None or name == "RandomInit":
            continue
        g = pretext_generalization(model, X_train, X_held)
        g.update(method=name, **alignment_uniformity(model, X_held, augment=DIGITS_AUGMENT))
        rows.append(g)
    print(markdown_generalization(rows), "\n")
    report += ["## Pretext generalisation on the digits (training vs held-out images); alignment and uniformity "
               "of held-out digits under mild crops and small rotations\n", markdown_generalization(rows), "",
               "Notes: " + "; ".join(f"{r['method']}: {r['note']}" for r in rows if r["note"]), ""]

    # ------------------------------------------------------------- Fashion-MNIST
    fashion = None
    try:
        if SMALL:
            raise FileNotFoundError("not at the docs' small settings")
        Xf, yf = skssl.load_fashion_mnist(subset="train", return_X_y=True, download=False)
        Xf_test, yf_test = skssl.load_fashion_mnist(subset="test", return_X_y=True, download=False)
    except FileNotFoundError as exc:
        print(f"Fashion-MNIST skipped: {str(exc).splitlines()[0]}")
    else:
        n_fashion = 500 if args.quick else 1000
        pick = np.random.RandomState(0).permutation(len(Xf))[:n_fashion]
        test = np.random.RandomState(1).permutation(len(Xf_test))[:2000]
        print(f"\nFashion-MNIST (quick budget): {n_fashion} training images, 1 epoch per method, "
              f"kNN and linear probe tested on {len(test)} test images\n")
        start = time.perf_counter()
        fashion = compare_pretexts(estimators(1), Xf[pick], yf[pick], X_test=Xf_test[test], y_test=yf_test[test],
                                   n_per_class=(1, 5, 10), random_labels=True, verbose=True)
        minutes = (time.perf_counter() - start) / 60
        print(f"\n{fashion.to_markdown()}\n({minutes:.1f} minutes)\n")
        report += [f"## Fashion-MNIST: 1 epoch, {n_fashion} training images, kNN and linear probe tested on "
                   f"{len(test)} test images ({minutes:.1f} minutes)\n", fashion.to_markdown(), ""]

    with open(os.path.join(OUT, "compare_pretexts.md"), "w") as f:
        f.write("\n".join(report) + "\n")
    print("saved", os.path.relpath(os.path.join(OUT, "compare_pretexts.md")))

    # ------------------------------------------------------------------ figures
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("install matplotlib (pip install skssl[plots]) for the figures")
        return
    from skssl.plotting import plot_augmentations, plot_comparison, plot_embedding, plot_history

    save(plot_comparison(digits, title=f"Digits: few-label linear probe ({epochs} epochs per method)"),
         "digits_few_label.png")
    if fashion is not None:
        save(plot_comparison(fashion, title="Fashion-MNIST: few-label linear probe (1 epoch per method)"),
             "fashion_few_label.png")

    accuracy = dict(zip(digits.columns["method"], digits.columns["few_label_10"]))
    best = max((m for m in accuracy if m not in ("raw pixels", "RandomInit")), key=accuracy.get)
    maps = ["raw pixels", "RotationSSL", "RotationSSL (random labels)", best]
    fig, axes = plt.subplots(2, 2, figsize=(11, 9.5), layout="constrained")
    for ax, name in zip(axes.flat, maps):
        plot_embedding(digits.estimators[name], X_held, y_held, ax=ax, method="pca" if SMALL else "tsne",
                       title=f"{name} (10 labels/class: {accuracy[name]:.2f})")
    for ax in axes.flat[:-1]:  # one legend is enough
        ax.get_legend().remove()
    fig.suptitle(f"{'PCA' if SMALL else 't-SNE'} of the held-out digits' embeddings, coloured by digit")
    save(fig, "digits_tsne.png")

    trained = {name: m for name, m in digits.estimators.items() if m is not None and getattr(m, "history_", None)}
    save(plot_history(trained, ncols=5), "digits_history.png")
    save(plot_history(digits.estimators["DeepClusterSSL"]), "digits_history_deepcluster.png")

    examples = X_held[[list(y_held).index(d) for d in (2, 4, 6, 7)]]
    fig = plot_augmentations(Augment.simclr(8, 1), examples, n_views=7)
    fig.suptitle("SimCLR's default recipe on digits: flips and 8-100% crops change what a digit is")
    save(fig, "augment_simclr_digits.png")
    fig = plot_augmentations(DIGITS_AUGMENT, examples, n_views=7)
    fig.suptitle("Crops of 60-100% and rotations up to 10 degrees, no flips: most views stay readable")
    save(fig, "augment_digit_safe.png")


if __name__ == "__main__":
    # The probes and SVDs are small: one BLAS thread each. On a machine whose
    # cores are shared, OpenBLAS's spinning threads made them 100x slower.
    with threadpool_limits(limits=1, user_api="blas"):
        main()
